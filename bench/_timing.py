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


def best_of_each(n: int, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best of n for each, the calls interleaved: a machine whose speed drifts during the
    measurement (these VMs' does, by a third) drifts for all of them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(n):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
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


def installed_cli(tmp: Path) -> list[str]:
    """lepton-ci as the action installs it (actions/setup/bootstrap.py): the package copied
    into a venv's site-packages, started by a launcher as `python -P -m lepton_ci`; not this
    checkout's editable install, whose import hook costs every start ~10 ms no user pays. The
    dependencies are this venv's (a path line, so its .pth hooks stay out). Bytecode is written
    on the first start, as on a runner."""
    import subprocess
    import sysconfig

    venv = tmp / "lepton-ci-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(
        root / "lepton_ci", site / "lepton_ci", ignore=shutil.ignore_patterns("__pycache__")
    )
    (site / "lepton-ci-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    launcher = venv / "lepton-ci"
    launcher.write_text(f'#!/bin/sh\nexec {python} -P -m lepton_ci "$@"\n')
    launcher.chmod(0o755)
    return [str(launcher)]


def report(name: str, measured: float, target: float, unit: str = "s", better: str = "lower"):
    ratio = measured / target
    ok = ratio <= 1 if better == "lower" else ratio >= 1
    print(
        f"{name}: {measured:.4g} {unit} vs target {target:g} {unit} -> ratio {ratio:.3f} "
        f"({'OK' if ok else 'MISSED'})"
    )
    return ok
