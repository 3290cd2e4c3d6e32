"""Optional dependency sets (pyproject extras): which a step needs, and a clear error without.

The setup action installs only the core; before `register`, `build`, `promote` and `deploy` it
asks `needed()` (through `lepton-ci gha extras`) and adds the hash-pinned `image`, `deploy` or
`trust` requirements if the config (or, for signing, the job's key or OIDC token) calls for
them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from lepton_ci import __version__
from lepton_ci.core.config import LoadedConfig
from lepton_ci.core.errors import MissingExtra

# extra -> (module it brings, what needs it)
EXTRAS = {
    "image": ("docker", "the `dockerfile` image builder"),
    "deploy": ("kubernetes", "the `kubernetes` deploy target"),
    "trust": ("sigstore", "signing and verifying versions and images"),
}
# steps that reach the deploy target
DEPLOY_STEPS = ("deploy", "rollback")
SIGNING_STEPS = ("register", "build")  # they sign when the job has a key or an OIDC token
REQUIRE_STEPS = ("promote", "accept-tag", "build", "deploy")  # they verify under trust.require
VERIFY_STEPS = ("pull",)  # it verifies a signed version whenever `trust:` names a signer
# what tells that a job can sign: a key's path, an OIDC token (`id-token: write`), or the
# actions saying they were given a key (LEPTON_SIGNS=true: the key itself stays out of setup)
SIGNER_ENV = ("LEPTON_SIGNING_KEY", "ACTIONS_ID_TOKEN_REQUEST_URL")


def needed(
    cfg: LoadedConfig,
    step: str,
    model: str | None = None,
    builder: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The extras `step` needs for `model` (every model when None)."""
    models = [cfg.model(model)[1]] if model else list(cfg.config.models.values())
    out = set()
    for m in models:
        if step == "build" and m.image and (builder or m.image.kind) == "dockerfile":
            out.add("image")
        if step in DEPLOY_STEPS and m.deploy and m.deploy.target == "kubernetes":
            out.add("deploy")
    trust = cfg.config.trust
    if step in REQUIRE_STEPS and trust.require:
        out.add("trust")
    if step in VERIFY_STEPS and (trust.require or trust.keys or trust.identities):
        out.add("trust")
    e = env or {}
    can_sign = (
        trust.signing_key or any(e.get(k) for k in SIGNER_ENV) or e.get("LEPTON_SIGNS") == "true"
    )
    if step in SIGNING_STEPS and can_sign:
        out.add("trust")
    return sorted(out)


def require(extra: str) -> None:
    """Raise a MissingExtra that says how to install `extra` when its module is absent."""
    module, what = EXTRAS[extra]
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"{what} needs the Python package `{module}`, which is not installed",
            hint=f"pip install 'lepton-ci[{extra}]=={__version__}' (the lepton-ci actions add it "
            "by themselves)",
        )
