"""Verifying versions and images against the tag registry, and `trust.require`.

trust/ checks signatures and statements against what it is handed; this module hands it what
the registry says of a version (its tag, commit and record). With `trust.require: true`, the
steps that ship a version refuse one that does not verify: promote and accept-tag (before a
stage tag is kept), build --version (before an image is built) and deploy (the image too, by
digest; before anything is applied). Without `require` they do nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lepton_ci import __version__
from lepton_ci.core.errors import MissingExtra, TrustError
from lepton_ci.versions.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from lepton_ci.core.context import Context
    from lepton_ci.core.record import Record
    from lepton_ci.trust.verify import Claim, Verified
    from lepton_ci.versions.registry_state import VersionInfo


def claim(info: VersionInfo, rec: Record | None) -> Claim:
    from lepton_ci.trust.verify import Claim

    return Claim(info.tag, info.sha, rec)


def lookup(ctx: Context) -> Callable[[str, str], Claim | None]:
    """(model, tag) -> what this clone's registry says of that version, or None."""
    reg = Registry(ctx.git)

    def find(model: str, tag: str) -> Claim | None:
        info = next((v for v in reg.read(model).versions(model) if v.tag == tag), None)
        return None if info is None else claim(info, reg.record(tag))

    return find


def verify(ctx: Context, target: str, *, remote: str | None = "origin") -> Verified:
    """`lepton-ci verify`: REGISTRY/REPO@sha256:... is an image, anything else a version
    reference as `show` takes it (MODEL@vX.Y.Z, MODEL#STAGE, MODEL@latest)."""
    from lepton_ci.trust import verify as check
    from lepton_ci.versions import queries

    if "@sha256:" in target:
        return check.image(ctx, target, remote=remote, lookup=lookup(ctx))
    shown = queries.show(ctx.git, target)
    return check.version(ctx, claim(shown.info, shown.record), remote=remote)


def required(ctx: Context) -> bool:
    return ctx.cfg.config.trust.require


def _refused(e: TrustError, what: str) -> TrustError:
    e.message = f"{what} refused by `trust.require: true`: {e.message}"
    return e


def _unverifiable(e: ModuleNotFoundError, what: str) -> TrustError:
    """A verifier that cannot run is a refusal like any other (a stage tag is deleted), never
    an error that lets the step stop half-way."""
    return TrustError(
        f"{what} refused by `trust.require: true`: it cannot be verified here: the Python "
        f"package `{e.name}` is not installed",
        hint=f"pip install 'lepton-ci[trust]=={__version__}' (the lepton-ci actions add it "
        "when `trust.require` is set; with actions/setup, pass `steps: accept-tag`)",
    )


def require_version(ctx: Context, info: VersionInfo, rec: Record | None, what: str) -> None:
    if not required(ctx):
        return
    from lepton_ci.trust import verify as check

    try:
        check.version(ctx, claim(info, rec))
    except TrustError as e:
        raise _refused(e, what) from None
    except ModuleNotFoundError as e:
        raise _unverifiable(e, what) from None


def when_signed(
    ctx: Context, info: VersionInfo, rec: Record | None, what: str, *, remote: str | None
) -> Verified | None:
    """For a step that hands out a version's files (pull): the version verified when it is
    signed, or when `trust.require` asks for a signature; None for an unsigned version that
    nothing requires to be signed, and for a signed one when `trust:` lists no signer to
    check it against (a warning says so: it is then as good as unsigned)."""
    from lepton_ci.trust import policy as policy_mod
    from lepton_ci.trust import store

    signed = store.statement(ctx.git, info.tag, remote) is not None
    if not signed and not required(ctx):
        return None
    try:
        from lepton_ci.trust import verify as check

        policy = policy_mod.load(ctx.cfg, ctx.env)
        if policy.empty and not policy.require:
            ctx.rt.warning(
                f"{info.tag} is signed, but `trust:` in {ctx.cfg.path.name} lists no key or "
                "identity to check the signature against: it was not checked (add "
                "`trust: {keys: [release.pub]}` to check it)"
            )
            return None
        # An empty policy that `require`s: verify's own error says to list a signer.
        chosen = None if policy.empty else policy
        return check.version(ctx, claim(info, rec), remote=remote, policy=chosen)
    except TrustError as e:
        if required(ctx):
            raise _refused(e, what) from None
        e.message = f"{what} refused: {e.message}"
        raise
    except ModuleNotFoundError as e:
        if required(ctx):
            raise _unverifiable(e, what) from None
        raise MissingExtra.of(e) or e from None


def require_named(ctx: Context, model: str, version: str, what: str) -> None:
    """The same, for a version given by its number (build --version, deploy)."""
    if not required(ctx):
        return
    reg = Registry(ctx.git)
    info = reg.read(model).find(model, version)
    require_version(ctx, info, reg.record(info.tag), what)


def require_image(ctx: Context, image_ref: str, model: str, version: str, what: str) -> None:
    """The image (by digest) is attested, and as an image of this very version."""
    if not required(ctx):
        return
    from lepton_ci.trust import verify as check

    try:
        res = check.image(ctx, image_ref)
    except TrustError as e:
        raise _refused(e, what) from None
    except ModuleNotFoundError as e:
        raise _unverifiable(e, what) from None
    st = res.statement
    named = (st.params.get("model"), st.params.get("version")) if st else (None, None)
    if named != (model, version):
        raise TrustError(
            f"{what} refused by `trust.require: true`: {image_ref} is signed as an image of "
            f"{named[0]} {named[1]}, not of {model} {version}",
            hint="deploy the image built for this version (`lepton-ci build --version`)",
        )
