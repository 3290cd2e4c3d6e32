"""`verify`: the chain from a signature to the version's record, its files and its image.

For a version (MODEL@vX.Y.Z): its bundle (fetched from the remote if this clone lacks it)
carries a valid signature by a signer `trust:` accepts; the signed statement is about this
tag, its commit and the record in the tag's message (same digest); its subjects are the
record's artifacts (and, when the checkout is the version's commit, the files on disk).
For an image (REGISTRY/REPO@sha256:...): a referrer bundle whose signed subject is that
digest, by an accepted signer, naming a version whose own chain holds.
Each check that fails raises one TrustError naming the link that broke.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import LeptonError, TrustError
from lepton_ci.trust import policy as policy_mod
from lepton_ci.trust import store
from lepton_ci.trust.signer import BUNDLE_MEDIA
from lepton_ci.trust.statement import (
    BUILD_TYPE,
    PAYLOAD_TYPE,
    REGISTER_TYPE,
    Statement,
    record_digests,
    sha256_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from lepton_ci.core.context import Context
    from lepton_ci.core.oci_client import ClientFactory
    from lepton_ci.core.record import Record
    from lepton_ci.trust.policy import Policy


@dataclass(frozen=True)
class Claim:
    """What the tag registry says about a version: its tag, commit and record (the caller
    reads them; this layer knows nothing of the registry)."""

    tag: str
    sha: str
    record: Record | None


@dataclass
class Verified:
    target: str
    signer: str
    links: list[str] = field(default_factory=list)  # what was checked, in order
    statement: Statement | None = None

    def text(self) -> str:
        lines = [f"{self.target}: verified, signed by {self.signer}"]
        lines += [f"  ok  {link}" for link in self.links]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "verified": True, "signer": self.signer, "links": self.links}


def check_bundle(text: str, policy: Policy, where: str) -> tuple[bytes, str]:
    """The signature holds and its signer is one `policy` accepts: returns the signed payload
    and who signed it."""
    try:
        bundle = json.loads(text)
        material = bundle["verificationMaterial"]
        media = bundle.get("mediaType", "")
    except (ValueError, KeyError, TypeError):
        raise TrustError(f"{where}: the signature bundle is not a Sigstore bundle") from None
    if not media.startswith("application/vnd.dev.sigstore.bundle"):
        raise TrustError(
            f"{where}: the signature bundle's mediaType is {media!r}, not a Sigstore one"
        )
    if "publicKey" in material:
        return _check_key_bundle(bundle, policy, where)
    return _check_keyless_bundle(text, policy, where)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding (DSSE v1): the bytes a signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _check_key_bundle(bundle: dict[str, Any], policy: Policy, where: str) -> tuple[bytes, str]:
    """The DSSE envelope verified with `cryptography` against the listed keys (a signature's
    keyid, when given, picks the key; DSSE does not require one). Signing goes through
    securesystemslib: the two implementations check each other in the tests, and verifying
    needs no more than `cryptography`, which keeps `verify` quick."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        kind = str(envelope["payloadType"])
        signatures = [
            (str(s.get("keyid") or ""), base64.b64decode(s["sig"], validate=True))
            for s in envelope["signatures"]
        ]
    except (KeyError, TypeError, ValueError):
        raise TrustError(f"{where}: the signature bundle holds no valid DSSE envelope") from None
    if kind != PAYLOAD_TYPE:
        raise TrustError(f"{where}: the envelope's payload is {kind}, not in-toto")
    listed = {k.keyid: k for k in policy.keys}
    named = [keyid for keyid, _ in signatures if keyid]
    if named and not any(k in listed for k in named):
        accepted = ", ".join(f"{k.path} ({k.keyid[:12]})" for k in policy.keys) or "none"
        raise TrustError(
            f"{where}: signature: signed with key {', '.join(k[:12] for k in named)}, "
            f"which `trust.keys` does not list (accepted: {accepted})",
            hint="the version was signed by another key: re-register it in CI with the "
            "release key, or add that key's public half to `trust.keys` if you trust it",
        )
    message = pae(kind, payload)
    for keyid, sig in signatures:
        for key in [listed[keyid]] if keyid in listed else policy.keys:
            try:
                if isinstance(key.public, ec.EllipticCurvePublicKey):
                    key.public.verify(sig, message, ec.ECDSA(hashes.SHA256()))
                else:
                    key.public.verify(sig, message)
            except InvalidSignature:
                continue
            return payload, f"key {key.path}"
    which = listed[named[0]].path if named and named[0] in listed else "any listed key"
    raise TrustError(
        f"{where}: signature: the signature does not verify with {which}: the signed "
        "statement was changed after signing",
        hint="never edit attestations; re-register the version",
    )


def _check_keyless_bundle(text: str, policy: Policy, where: str) -> tuple[bytes, str]:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    try:
        bundle = Bundle.from_json(text)
    except Exception as e:  # sigstore's own parse errors: name them, stop here
        raise TrustError(f"{where}: the Sigstore bundle does not parse ({e})") from None
    san = _san(bundle)
    if not policy.identities:
        raise TrustError(
            f"{where}: signer: signed keyless by {san}, but `trust.identities` lists no "
            "keyless signer",
            hint="add the release workflow under `trust.identities` (issuer, repository, "
            "workflow, ref) if you trust it",
        )
    try:
        verifier = Verifier(trusted_root=policy_mod.trusted_root(policy))
        payload_type, payload = verifier.verify_dsse(
            bundle, policy_mod.identity_policy(policy.identities)
        )
    except SigstoreError as e:
        accepted = ", ".join(i.subject for i in policy.identities)
        raise TrustError(
            f"{where}: signature or signer: Sigstore refused the bundle signed by {san}: {e} "
            f"(accepted: {accepted})"
        ) from None
    if payload_type != PAYLOAD_TYPE:
        raise TrustError(f"{where}: the envelope's payload is {payload_type}, not in-toto")
    return payload, san


def _san(bundle: object) -> str:
    try:
        from cryptography import x509

        cert = bundle.signing_certificate  # type: ignore[attr-defined]
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in ext]
        return names[0] if names else "an unnamed certificate"
    except Exception:  # best effort, only for the message
        return "a certificate"


# -- versions -------------------------------------------------------------------------------


def version(
    ctx: Context,
    claim: Claim,
    *,
    remote: str | None = "origin",
    policy: Policy | None = None,
) -> Verified:
    """Verify the version `claim` describes (its bundles fetched from `remote` if need be)."""
    policy = policy or _policy(ctx)
    tag, rec = claim.tag, claim.record
    if rec is None:
        raise TrustError(
            f"{tag}: record: the tag carries no evidence record, so nothing links it to a run",
            hint="register versions with `lepton-ci register`",
        )
    bundle = store.statement(ctx.git, tag, remote)
    if bundle is None:
        ref = store.ref_of(tag)
        if ctx.git.ok("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
            raise TrustError(
                f"{tag}: signature: {ref} holds no {store.STATEMENT}",
                hint="the attestations were edited; re-register the version",
            )
        if remote is None:
            where = ""
        elif remote in ctx.git.remotes():
            where = f" here or on `{remote}`"
        else:
            where = f" here, and there is no remote `{remote}` to fetch it from"
        raise TrustError(
            f"{tag}: signature: the version is not signed (no {ref}{where})",
            hint="register it where a signing key (LEPTON_SIGNING_KEY) or keyless identity "
            "is available; a tag pushed by hand is never signed",
        )
    payload, signer = check_bundle(bundle.decode(), policy, tag)
    links = [f"signature by {signer}, accepted by trust policy"]
    st = Statement.parse(payload, tag)
    _check_version_statement(st, tag, claim.sha, rec)
    links.append(f"signed statement is about {tag} at commit {claim.sha[:12]}")
    links.append(f"record digest {rec.digest()[:19]}... matches the tag's record")
    links.append(f"{len(rec.outputs)} artifact(s) match the record")
    checked = _check_local_files(ctx, st, tag, claim.sha, rec)
    if checked:
        links.append(f"{checked} file(s) on disk match the signed sha256")
    return Verified(tag, signer, links, st)


def _check_version_statement(st: Statement, tag: str, sha: str, rec: Record) -> None:
    if st.build_type != REGISTER_TYPE:
        raise TrustError(f"{tag}: statement: signed as {st.build_type}, not a version's statement")
    if st.params.get("tag") != tag:
        raise TrustError(
            f"{tag}: statement: the signed statement is about {st.params.get('tag')}, not {tag}",
            hint="attestations were copied from another version; re-register",
        )
    if st.commit != sha:
        raise TrustError(
            f"{tag}: commit: the tag points at {sha[:12]}, the signed statement names "
            f"{(st.commit or 'none')[:12]}",
            hint="the tag was moved or made by hand after signing; delete it and re-register",
        )
    want = record_digests(rec)
    for algo in ("blake3", "sha256"):
        if st.record.get(algo) != want[algo]:
            raise TrustError(
                f"{tag}: record: the tag's record has {algo} {want[algo][:16]}.., the signed "
                f"statement {str(st.record.get(algo))[:16]}..: the record in the tag's message "
                "is not the one that was signed",
                hint="a tag with a copied or edited record is refused; register a new version",
            )
    signed = {s.name: s for s in st.subjects}
    for name, entry in sorted(rec.outputs.items()):
        subject = signed.get(name)
        if subject is None:
            raise TrustError(
                f"{tag}: artifact {name}: in the tag's record, not in the signed statement"
            )
        if subject.record_hash != entry.hash:
            raise TrustError(
                f"{tag}: artifact {name}: {_short(entry.hash)} in the tag's record, "
                f"{_short(subject.record_hash)} in the signed statement"
            )
    extra = sorted(set(signed) - set(rec.outputs))
    if extra:
        raise TrustError(f"{tag}: artifact {extra[0]}: signed, but not in the tag's record")


def _check_local_files(ctx: Context, st: Statement, tag: str, sha: str, rec: Record) -> int:
    """The files on disk, when this checkout is the version's commit and holds them."""
    try:
        _, cfg = ctx.cfg.model(rec.model)
        head = ctx.git.head()
    except LeptonError:  # a model no longer in lepton.yaml, an unborn HEAD: nothing on disk
        return 0
    if head != sha:
        return 0
    model_dir = ctx.cfg.model_dir(cfg)
    n = 0
    for subject in st.subjects:
        path = model_dir / subject.name
        if not path.is_file():
            continue
        have = sha256_file(path)
        if have != subject.sha256:
            raise TrustError(
                f"{tag}: artifact {subject.name}: sha256 {have[:16]}.. on disk, "
                f"{(subject.sha256 or '')[:16]}.. in the signed statement",
                hint="the file was replaced after the version was registered; restore it "
                f"(`lepton-ci run --cached-only --model {rec.model}`)",
            )
        n += 1
    return n


def _short(h: str | None) -> str:
    if not h:
        return "nothing"
    algo, _, hexpart = h.partition(":")
    return f"{algo} {hexpart[:12]}.." if hexpart else f"{h[:12]}.."


# -- images ---------------------------------------------------------------------------------


def image(
    ctx: Context,
    ref_text: str,
    *,
    remote: str | None = "origin",
    policy: Policy | None = None,
    clients: ClientFactory | None = None,
    lookup: Callable[[str, str], Claim | None] | None = None,
) -> Verified:
    """Verify an image by digest: its attached statement, signer and subject, then (given
    `lookup`) the version it names, when this repository has that tag."""
    from lepton_ci.core.oci_client import Ref, client_factory  # only images need a registry
    from lepton_ci.trust import referrers

    policy = policy or _policy(ctx)
    ref = Ref.parse(ref_text)
    if ref.digest is None or not re.fullmatch(r"sha256:[0-9a-f]{64}", ref.digest):
        raise TrustError(
            f"{ref_text}: an image is verified by its full digest (sha256: and 64 hex digits)",
            hint="write REGISTRY/REPO@sha256:... (`lepton-ci image inspect` shows the digest)",
        )
    client = (clients or client_factory(ctx.env, ctx.rt, None))(ref.registry)
    name = f"{ref.registry}/{ref.repository}"
    target = f"{name}@{ref.digest}"
    if client.manifest_digest(ref.repository, ref.digest) is None:
        raise TrustError(f"{target}: image: not found in the registry")
    found = referrers.bundles(client, ref.repository, ref.digest)
    if not found:
        raise TrustError(
            f"{target}: signature: no signed statement is attached to this image (no referrer "
            f"of type {BUNDLE_MEDIA})",
            hint="images are signed by `lepton-ci build`; an image pushed or re-tagged by hand "
            "is not",
        )
    errors: list[TrustError] = []
    for _, text in found:
        try:
            payload, signer = check_bundle(text, policy, target)
            st = Statement.parse(payload, target)
            check_image_statement(st, target, name, ref.digest)
        except TrustError as e:
            errors.append(e)
            continue
        links = [
            f"signature by {signer}, accepted by trust policy",
            f"signed subject is {ref.digest[:19]}... in {name}",
        ]
        tag = st.params.get("tag")
        if lookup is not None and tag:
            claim = lookup(str(st.params.get("model")), str(tag))
            if claim is None:
                links.append(f"names {tag}, which this clone does not have (not checked)")
            else:
                rec = claim.record
                if rec is None or record_digests(rec)["blake3"] != st.record.get("blake3"):
                    raise TrustError(
                        f"{target}: record: the image was built from a record whose blake3 is "
                        f"{str(st.record.get('blake3'))[:16]}.., not the record of {tag}",
                        hint="build the image again from the registered version",
                    )
                inner = version(ctx, claim, remote=remote, policy=policy)
                links.append(f"built from {tag}, whose own chain holds ({inner.signer})")
        return Verified(target, signer, links, st)
    raise errors[0]


def check_image_statement(st: Statement, target: str, name: str, digest: str) -> None:
    if st.build_type != BUILD_TYPE:
        raise TrustError(
            f"{target}: statement: signed as {st.build_type}, not an image's statement"
        )
    hexpart = digest.split(":", 1)[1]
    subject = next((s for s in st.subjects if s.sha256 == hexpart), None)
    if subject is None:
        named = ", ".join(f"sha256:{(s.sha256 or '')[:12]}.." for s in st.subjects)
        raise TrustError(
            f"{target}: subject: the signed statement is about {named}, not this image",
            hint="an attestation copied onto another image is refused; build it with lepton-ci",
        )
    if subject.name != name:
        raise TrustError(
            f"{target}: subject: the signed statement names {subject.name}, not {name}",
            hint="verify the image in the repository it was built for",
        )


def _policy(ctx: Context) -> Policy:
    pol = policy_mod.load(ctx.cfg, ctx.env)
    if pol.empty:
        raise TrustError(
            f"{ctx.cfg.path.name}: `trust:` accepts no signer, so nothing can verify",
            hint="add `trust: {keys: [release.pub]}` (or `identities:`) to lepton.yaml",
        )
    return pol
