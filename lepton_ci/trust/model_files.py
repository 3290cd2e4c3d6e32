"""The model files signed with OpenSSF model-signing, so any verifier of that format (its CLI,
`model_signing verify key ...`) can check them without lepton-ci.

model-signing signs a folder: the version's artifacts are laid (hard-linked, else copied)
into an empty folder first, so the signed manifest names exactly the record's outputs, by
their paths in the model folder. Verify by hand with `--ignore_unsigned_files` over the model
folder, or over a folder holding just those files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lepton_ci.core.errors import TrustError


def sign_with_key(key: Path, model_dir: Path, names: Iterable[str], work: Path) -> bytes:
    return _sign(model_dir, names, work, lambda cfg: cfg.use_elliptic_key_signer(private_key=key))


def sign_keyless(
    token: str, trust_config: Path | None, model_dir: Path, names: Iterable[str], work: Path
) -> bytes:
    return _sign(
        model_dir,
        names,
        work,
        lambda cfg: cfg.use_sigstore_signer(identity_token=token, trust_config=trust_config),
    )


def _sign(model_dir: Path, names: Iterable[str], work: Path, use: object) -> bytes:
    from model_signing import signing

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="model-signing-") as tmp:
        staged = Path(tmp) / "model"
        for name in names:
            src, dst = model_dir / name, staged / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copyfile(src, dst)
        sig = Path(tmp) / "model.sig"
        config = signing.Config()  # type: ignore[no-untyped-call]
        try:
            use(config)  # type: ignore[operator]
            config.sign(staged, sig)
        except (ValueError, OSError) as e:
            raise TrustError(f"model-signing could not sign the model files: {e}") from None
        except Exception as e:  # sigstore's errors (an OIDC issuer, Fulcio or Rekor refusing)
            if not type(e).__module__.startswith("sigstore"):
                raise
            raise TrustError(
                f"model-signing could not sign the model files: {_sigstore_reason(e)}",
                hint="model-signing reads the OIDC issuer's configuration from the trust "
                "config's `oidcUrls` (and Fulcio, Rekor): check that they answer from the runner",
            ) from None
        return sig.read_bytes()


def _sigstore_reason(e: BaseException) -> str:
    """sigstore raises some errors with no message and the HTTP failure as their cause."""
    cause = e.__cause__
    detail = str(e) or (f"{type(cause).__name__}: {cause}" if cause else "no detail")
    return f"{type(e).__name__}: {detail}"
