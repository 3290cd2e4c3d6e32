"""Where lepton-ci keeps its working state: one table of `.lepton/` paths and one slug.

Everything lepton-ci writes into a repository lives under `.lepton/` (runs, report bundles,
deploy state, run-cache, layer index); model names with `/` become one path segment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE = ".lepton"
DEPLOY_STATE = f"{STATE}/deploy"  # default of `deploy.state_dir`
RUN_CACHE = f"{STATE}/cache"  # default of `cache.dir`


def slug(model: str) -> str:
    """A model name as one file-name segment (`team/clf` -> `team--clf`)."""
    return model.replace("/", "--")


@dataclass(frozen=True)
class StatePaths:
    """The `.lepton/` paths of one repository."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE

    def run_record(self, model: str) -> Path:
        """The evidence record of the model's last run."""
        return self.state / "runs" / f"{slug(model)}.json"

    def run_lock(self, model: str) -> Path:
        """Held while a run of the model uses the work tree."""
        return self.state / "locks" / f"{slug(model)}.lock"

    @property
    def reports(self) -> Path:
        return self.state / "report"

    def report_bundle(self, model: str) -> Path:
        """The report bundle `run` writes for the PR comment (fork-safe upload)."""
        return self.reports / slug(model)

    def deploy_state(self, state_dir: str, model: str, env_name: str) -> Path:
        return self.root / state_dir / slug(model) / env_name


def enter(directory: str) -> None:
    """`-C DIR`: work from DIR from here on, or say plainly that it cannot be entered."""
    from lepton_ci.core.errors import LeptonError

    try:
        os.chdir(directory)
    except OSError as e:
        raise LeptonError(
            f"-C {directory}: {e.strerror}", hint="give an existing directory"
        ) from None
