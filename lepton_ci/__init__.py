"""lepton-ci: version, gate and ship ML models from git, in CI, with evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lepton_ci.fetch.operation import Pulled

__version__ = "0.1.0"


def pull(ref: str, out: Any = None, **options: Any) -> Pulled:
    """A version's model files in a folder, each checked against the version's record (and
    its signature): `lepton_ci.pull("digits#prod").files["model.joblib"]`. `ref` is
    MODEL@vX.Y.Z, MODEL@latest or MODEL#STAGE; `out` a folder (default: the user's cache).
    Options: config (lepton.yaml's path), image, remote; see lepton_ci.fetch.operation.pull.
    Imported on the first call: `import lepton_ci` stays as quick as before."""
    from lepton_ci.fetch.operation import pull as run

    return run(ref, out, **options)
