"""Optional dependency sets (pyproject extras): which a step needs, and a clear error without.

The setup action installs only the core; before `build` and `deploy` it asks `needed()` (through
`lepton-ci gha extras`) and adds the hash-pinned `image` or `deploy` requirements if the
config calls for them.
"""

from __future__ import annotations

import importlib.util

from lepton_ci import __version__
from lepton_ci.core.config import LoadedConfig
from lepton_ci.core.errors import MissingExtra

# extra -> (module it brings, what needs it)
EXTRAS = {
    "image": ("docker", "the `dockerfile` image builder"),
    "deploy": ("kubernetes", "the `kubernetes` deploy target"),
}
# steps that reach the deploy target
DEPLOY_STEPS = ("deploy", "rollback")


def needed(
    cfg: LoadedConfig, step: str, model: str | None = None, builder: str | None = None
) -> list[str]:
    """The extras `step` needs for `model` (every model when None)."""
    models = [cfg.model(model)[1]] if model else list(cfg.config.models.values())
    out = set()
    for m in models:
        if step == "build" and m.image and (builder or m.image.kind) == "dockerfile":
            out.add("image")
        if step in DEPLOY_STEPS and m.deploy and m.deploy.target == "kubernetes":
            out.add("deploy")
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
