"""Keys and trust policies for the signing tests: real key pairs, written as PEM files."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import commit_all


def key_pair(folder: Path, name: str, kind: str = "p256") -> tuple[Path, Path]:
    """(private, public) PEM files of a new key: p256, ed25519 or rsa."""
    if kind == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def trust_repo(repo: Path, public: Path, *, require: bool = False, extra: str = "") -> None:
    """Commit `public` into the repository and name it in lepton.yaml's `trust:`."""
    (repo / "keys").mkdir(exist_ok=True)
    (repo / "keys" / public.name).write_bytes(public.read_bytes())
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text()
        + f"trust:\n  require: {str(require).lower()}\n  keys: [keys/{public.name}]\n"
        + extra
    )
    commit_all(repo, "chore: trust the release key")


def uncertified_keyless_bundle(payload: bytes, san: str) -> str:
    """A Sigstore bundle shaped as a keyless one (a leaf certificate naming `san`, a log
    entry), but certified by no Fulcio and logged by no Rekor: what a forger can make."""
    import base64
    import datetime
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-fulcio")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .sign(key, hashes.SHA256())
    )
    kind = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %b %d %b" % (len(kind), kind.encode(), len(payload), payload)
    sig = key.sign(pae, ec.ECDSA(hashes.SHA256()))

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    entry = {
        "logIndex": "1",
        "logId": {"keyId": b64(b"x" * 32)},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": str(int(now.timestamp())),
        "inclusionPromise": {"signedEntryTimestamp": b64(b"s")},
        "inclusionProof": {
            "logIndex": "1",
            "rootHash": b64(b"r" * 32),
            "treeSize": "2",
            "hashes": [b64(b"h" * 32)],
            "checkpoint": {"envelope": "x"},
        },
        "canonicalizedBody": b64(json.dumps({"kind": "dsse", "spec": {}}).encode()),
    }
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry],
            },
            "dsseEnvelope": {
                "payload": b64(payload),
                "payloadType": kind,
                "signatures": [{"sig": b64(sig)}],
            },
        }
    )


def push_tiny_base(host: str, repo: str) -> str:
    """A one-layer image (a single file), pushed with the registry API: the build's base."""
    import gzip
    import hashlib
    import io
    import json
    import tarfile

    from lepton_ci.core.oci_client import MANIFEST_OCI, OCIClient

    client = OCIClient(host)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"base\n"
        info = tarfile.TarInfo("etc/base-release")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    for blob in (layer, config):
        client.upload_blob(repo, "sha256:" + hashlib.sha256(blob).hexdigest(), blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_OCI,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                "size": len(layer),
            }
        ],
    }
    client.put_manifest(repo, "1", json.dumps(manifest).encode(), MANIFEST_OCI)
    return f"{host}/{repo}:1"
