"""Shared timing helpers for the bench scripts (best of N wall-clock runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def best_of(n: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(cmd: list[str], cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def lepton_cli() -> list[str]:
    """The installed console script, next to this interpreter (no pyenv shim in the way)."""
    script = Path(sys.executable).with_name("lepton-ci")
    if script.exists():
        return [str(script)]
    found = shutil.which("lepton-ci")
    return [found] if found else [sys.executable, "-m", "lepton_ci"]


def report(name: str, measured: float, target: float, unit: str = "s", better: str = "lower"):
    ratio = measured / target
    ok = ratio <= 1 if better == "lower" else ratio >= 1
    print(
        f"{name}: {measured:.4g} {unit} vs target {target:g} {unit} -> ratio {ratio:.3f} "
        f"({'OK' if ok else 'MISSED'})"
    )
    return ok
