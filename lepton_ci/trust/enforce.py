"""`trust.require: true`: the steps that ship a version refuse one that does not verify.

promote and accept-tag (before a stage tag is kept), build --version (before an image is
built) and deploy (before anything is applied; the image too, by digest) call these. Without
`require` they do nothing: verifying is then `lepton-ci verify`'s job alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lepton_ci.core.errors import TrustError

if TYPE_CHECKING:
    from lepton_ci.core.context import Context
    from lepton_ci.core.record import Record
    from lepton_ci.versions.registry_state import VersionInfo


def required(ctx: Context) -> bool:
    return ctx.cfg.config.trust.require


def _refused(e: TrustError, what: str) -> TrustError:
    e.message = f"{what} refused by `trust.require: true`: {e.message}"
    return e


def version(ctx: Context, info: VersionInfo, rec: Record | None, what: str) -> None:
    if not required(ctx):
        return
    from lepton_ci.trust import verify

    try:
        verify.version_info(ctx, info, rec)
    except TrustError as e:
        raise _refused(e, what) from None


def version_named(ctx: Context, model: str, version_text: str, what: str) -> None:
    """The same, for a version given by its number (build --version, deploy)."""
    if not required(ctx):
        return
    from lepton_ci.versions.registry import Registry

    reg = Registry(ctx.git)
    info = reg.read(model).find(model, version_text)
    version(ctx, info, reg.record(info.tag), what)


def image(ctx: Context, image_ref: str, model: str, version_text: str, what: str) -> None:
    """The image (by digest) is attested, and as an image of this very version."""
    if not required(ctx):
        return
    from lepton_ci.trust import verify

    try:
        res = verify.image(ctx, image_ref, version_check=False)
    except TrustError as e:
        raise _refused(e, what) from None
    st = res.statement
    named = (st.params.get("model"), st.params.get("version")) if st else (None, None)
    if named != (model, version_text):
        raise TrustError(
            f"{what} refused by `trust.require: true`: {image_ref} is signed as an image of "
            f"{named[0]} {named[1]}, not of {model} {version_text}",
            hint="deploy the image built for this version (`lepton-ci build --version`)",
        )
