"""What register and build sign, with whichever signer the job has.

`register` signs the version's statement (and the model files with model-signing) after
checking that the files on disk are the record's artifacts: the release job signs what the
training job's run-cache entry produced, never a file that changed since. `build` signs the
pushed image's digest and attaches the bundle to it in the registry.
Without a key or an OIDC token nothing is signed, said once; with `trust.require: true` that
is a refusal, before anything is written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lepton_ci.core.errors import TrustError
from lepton_ci.trust import signer as signer_mod
from lepton_ci.trust import store
from lepton_ci.trust.statement import (
    RunFacts,
    Statement,
    image_statement,
    sha256_file,
    version_statement,
)

if TYPE_CHECKING:
    from lepton_ci.core.context import Context
    from lepton_ci.core.oci_client import OCIClient
    from lepton_ci.core.record import Record
    from lepton_ci.trust.signer import Signer

NO_SIGNER = (
    "not signed: no signing key (--signing-key, LEPTON_SIGNING_KEY or trust.signing_key) and no "
    "OIDC token for keyless signing (a GitHub Actions job with `id-token: write`)"
)


@dataclass
class Signed:
    files: dict[str, bytes]  # file name in the attestation commit -> bytes
    signer: str


def signer_for(
    ctx: Context, signing_key: str | None, what: str, *, refuse_unsigned: bool = False
) -> Signer | None:
    """The job's signer, or None after saying (once, where lepton.yaml declares a trust
    policy: a repository that signs nothing hears nothing of it) that nothing is signed. With
    `refuse_unsigned` (register under `trust.require`), no signer is a refusal: an unsigned
    version could never be promoted. An unsigned image is only a notice: under `require`,
    deploy refuses it, and a PR's image needs no signature."""
    signer = signer_mod.choose(ctx.cfg, ctx.env, signing_key)
    trust = ctx.cfg.config.trust
    if signer is None and (trust.keys or trust.identities or trust.require):
        if refuse_unsigned:
            raise TrustError(
                f"{what}: {NO_SIGNER}, and `trust.require: true` refuses unsigned versions; "
                "nothing was written",
                hint="give the release job the key (LEPTON_SIGNING_KEY) or `id-token: write`",
            )
        _notice(ctx, f"{what}: {NO_SIGNER}")
    if isinstance(signer, signer_mod.KeySigner) and (trust.keys or trust.identities):
        _check_listed(ctx, signer, what, refuse=refuse_unsigned)
    return signer


def _check_listed(ctx: Context, signer: signer_mod.KeySigner, what: str, *, refuse: bool) -> None:
    """A key `trust.keys` does not list signs a version that can never verify: under
    `trust.require` (register) a refusal before anything is written, else a notice."""
    from lepton_ci.trust import policy as policy_mod

    pol = policy_mod.load(ctx.cfg, ctx.env)
    if any(k.keyid == signer.keyid for k in pol.keys):
        return
    accepted = ", ".join(f"{k.path} ({k.keyid[:12]})" for k in pol.keys) or "no key"
    message = (
        f"{what}: the signing key {signer.keyid[:12]} ({signer.where}) is not one "
        f"`trust.keys` lists (accepted: {accepted}), so what it signs will not verify"
    )
    if refuse:
        raise TrustError(
            f"{message}; `trust.require: true` would refuse it, so nothing was written",
            hint="sign with the release key, or add this key's public half to `trust.keys` "
            "(`openssl pkey -in KEY.pem -pubout`)",
        )
    _notice(ctx, message)


def _notice(ctx: Context, message: str) -> None:
    """A notice in Actions; on a terminal, a line on stderr (stdout may be `--json`)."""
    from lepton_ci.core.gha import Runtime

    (ctx.rt if ctx.rt.actions else Runtime(ctx.env, stream=sys.stderr)).notice(message)


def sign_version(ctx: Context, rec: Record, tag: str, signer: Signer) -> Signed:
    """Sign the version `tag` of the record `rec` (as it will stand in the tag's message)."""
    from lepton_ci.core.hashing import hash_file

    _, cfg = ctx.cfg.model(rec.model)
    model_dir = ctx.cfg.model_dir(cfg)
    sha256s = {}
    for name, entry in sorted(rec.outputs.items()):
        path = model_dir / name
        if not path.is_file():
            raise TrustError(
                f"{tag}: artifact {name} is not on disk ({path}), so it cannot be signed",
                hint=f"restore the run's files first: `lepton-ci run --cached-only --model "
                f"{rec.model}`",
            )
        if hash_file(path) != entry.hash:
            raise TrustError(
                f"{tag}: artifact {name} on disk is not the one the record names "
                f"({entry.hash[:19]}..): it changed after the run, so it is not signed",
                hint=f"run again (`lepton-ci run --model {rec.model}`), then register",
            )
        sha256s[name] = sha256_file(path)
    statement = version_statement(rec, tag, sha256s, RunFacts.of(ctx.env, ctx.git))
    files = {store.STATEMENT: signer.sign(statement).encode()}
    model_sig = _sign_model_files(ctx, signer, model_dir, list(sha256s))
    if model_sig is not None:
        files[store.MODEL_SIG] = model_sig
    return Signed(files, signer.description)


def _sign_model_files(
    ctx: Context, signer: Signer, model_dir: Path, names: list[str]
) -> bytes | None:
    from lepton_ci.trust import model_files

    work = ctx.cfg.cache_dir() / "tmp"
    if isinstance(signer, signer_mod.KeySigner):
        if not signer.is_ec:
            _notice(
                ctx,
                "model files: model-signing signs with elliptic-curve keys only; an Ed25519 key "
                "signs the statement (which names every file's sha256), not model.sig",
            )
            return None
        return model_files.sign_with_key(signer.path, model_dir, names, work)
    if isinstance(signer, signer_mod.KeylessSigner):
        return model_files.sign_keyless(
            signer.raw_token, signer.trust_config, model_dir, names, work
        )
    return None


def sign_image(
    ctx: Context,
    client: OCIClient,
    image: str,
    digest: str,
    rec: Record,
    tag: str | None,
    signer: Signer,
) -> str:
    """Sign the image `image@digest` built from `rec` and attach the bundle to it; returns
    the referrer's digest. An image already attested (a rebuild that reused it) keeps its
    bundle: one that verifies under this policy is not signed again."""
    from lepton_ci.trust import referrers

    repo = image.split("/", 1)[1]
    held = _verifying_referrer(ctx, client, image, digest, tag)
    if held is not None:
        _notice(ctx, f"{image}@{digest[:19]}... is already signed ({held[:19]}...): not again")
        return held
    statement = image_statement(image, digest, rec, tag, RunFacts.of(ctx.env, ctx.git))
    return referrers.attach(client, repo, digest, signer.sign(statement))


def _verifying_referrer(
    ctx: Context, client: OCIClient, image: str, digest: str, tag: str | None
) -> str | None:
    """The digest of a referrer of `digest` that verifies under the trust policy as this
    version's image statement, or None (no policy: nothing can be judged, so sign)."""
    from lepton_ci.trust import policy as policy_mod
    from lepton_ci.trust import referrers, verify

    pol = policy_mod.load(ctx.cfg, ctx.env)
    if pol.empty:
        return None
    for ref_digest, text in referrers.bundles(client, image.split("/", 1)[1], digest):
        try:
            payload, _ = verify.check_bundle(text, pol, image)
            st = Statement.parse(payload, image)
            verify.check_image_statement(st, image, image, digest)
        except TrustError:
            continue
        if st.params.get("tag") == tag:
            return ref_digest
    return None
