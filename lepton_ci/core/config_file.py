"""Where `lepton.yaml` is (needed before, and without, validating it)."""

from __future__ import annotations

from pathlib import Path

from lepton_ci.core import docs
from lepton_ci.core.errors import ConfigError

CONFIG_NAME = "lepton.yaml"
MAX_BYTES = 1 << 20  # the largest real configs are a few kB


def find_config(explicit: str | None = None, cwd: Path | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found", hint="check the --config path")
        return p.resolve()
    start = (cwd or Path.cwd()).resolve()
    for d in (start, *start.parents):
        p = d / CONFIG_NAME
        if p.is_file():
            return p
        if (d / ".git").exists():
            break
    raise ConfigError(
        f"no {CONFIG_NAME} in {start} or its parents up to the repository root",
        hint=f"create {CONFIG_NAME} ({docs.page('reference/config')}) or pass --config PATH",
    )
