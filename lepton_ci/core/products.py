"""The files a run writes, its metrics and outputs, which are products and not sources.

A version is a commit of its sources. A run that rewrote a committed metrics file (DVC
commits `metrics.json` next to the code) has changed no source, so those files do not make
the work tree dirty, neither in the run's record nor for `register`. A file that is also an
input of the model (its code, data or params) is never left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lepton_ci.core.config import LoadedConfig


def products(cfg: LoadedConfig, outputs: Iterable[Path], inputs: Iterable[Path]) -> list[Path]:
    """Every model's metrics files and this run's outputs, less the run's inputs."""
    files = {p.resolve() for p in outputs}
    for model in cfg.config.models.values():
        files.update((cfg.model_dir(model) / m).resolve() for m in model.metrics)
    return sorted(files - {p.resolve() for p in inputs})
