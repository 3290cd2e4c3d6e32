"""What every operation needs: the config, the git client, the environment and the runtime."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lepton_ci.core import config as config_mod
from lepton_ci.core.gha import Runtime
from lepton_ci.core.git import Git
from lepton_ci.core.paths import StatePaths


@dataclass
class Context:
    cfg: config_mod.LoadedConfig
    git: Git
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    rt: Runtime = field(default_factory=Runtime)

    @classmethod
    def load(
        cls,
        config_path: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        rt: Runtime | None = None,
    ) -> Context:
        cfg = config_mod.load_from(config_path, cwd)
        e = dict(os.environ if env is None else env)
        return cls(cfg=cfg, git=Git(cfg.root), env=e, rt=rt or Runtime(e))

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.cfg.root)

    def record_path(self, model: str) -> Path:
        return self.paths.run_record(model)

    def run_url(self) -> str | None:
        e = self.env
        if e.get("GITHUB_RUN_ID") and e.get("GITHUB_REPOSITORY"):
            server = e.get("GITHUB_SERVER_URL", "https://github.com")
            return f"{server}/{e['GITHUB_REPOSITORY']}/actions/runs/{e['GITHUB_RUN_ID']}"
        return None
