"""An image's signed statement in the registry, attached to the image as an OCI 1.1 referrer.

The referrer is an artifact manifest the way cosign's bundle format writes it: artifactType
and its one layer are a Sigstore bundle (v0.3), the config is the empty descriptor, and
`subject` is the image manifest. A registry with the referrers API lists it there; for one
without (the CNCF registry), the client keeps the spec's fallback index tag `sha256-<hex>`.
"""

from __future__ import annotations

import json
from typing import Any

from lepton_ci.core.oci_client import MANIFEST_OCI, OCIClient, sha256
from lepton_ci.trust.signer import BUNDLE_MEDIA
from lepton_ci.trust.statement import SLSA_PROVENANCE

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"  # as cosign annotates bundles


def attach(client: OCIClient, repo: str, subject: str, bundle: str) -> str:
    """Push `bundle` as a referrer of the image manifest `subject`; returns its digest."""
    _, media, size = _manifest_of(client, repo, subject)
    layer = bundle.encode()
    for blob in (EMPTY, layer):
        if not client.blob_exists(repo, sha256(blob)):
            client.upload_blob(repo, sha256(blob), blob)
    annotations = {PREDICATE_ANNOTATION: SLSA_PROVENANCE}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_OCI,
        "artifactType": BUNDLE_MEDIA,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": BUNDLE_MEDIA, "digest": sha256(layer), "size": len(layer)}],
        "subject": {"mediaType": media or MANIFEST_OCI, "digest": subject, "size": size},
        "annotations": annotations,
    }
    body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    descriptor = {
        "mediaType": MANIFEST_OCI,
        "artifactType": BUNDLE_MEDIA,
        "annotations": annotations,
    }
    return client.put_referrer(repo, body, descriptor)


def bundles(client: OCIClient, repo: str, subject: str) -> list[tuple[str, str]]:
    """(referrer digest, bundle JSON) of every Sigstore bundle attached to `subject`."""
    out = []
    for d in client.referrers(repo, subject, BUNDLE_MEDIA):
        body, _, _ = client.get_manifest(repo, d["digest"])
        doc: dict[str, Any] = json.loads(body)
        if (doc.get("subject") or {}).get("digest") != subject:
            continue  # an index entry that lies about its manifest
        for layer in doc.get("layers") or []:
            if layer.get("mediaType") == BUNDLE_MEDIA:
                out.append((d["digest"], client.get_blob(repo, layer["digest"]).decode()))
    return out


def _manifest_of(client: OCIClient, repo: str, digest: str) -> tuple[bytes, str, int]:
    body, media, _ = client.get_manifest(repo, digest)
    return body, media, len(body)
