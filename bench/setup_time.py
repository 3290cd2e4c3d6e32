"""The setup action's cost on this machine, against issue #16's numbers.

- cold: an empty RUNNER_TEMP, an empty uv cache and no uv on PATH (a fresh runner): the uv
  wheel is downloaded, the venv created, the core installed with --require-hashes.
  Target <= 3 s; the old install.sh (pip, every extra, from the source) took 17-18 s.
- warm: the second setup step of the same job (check + install on a ready venv): <= 0.5 s.
- restored: a new job whose venv came back from actions/cache (moved to another RUNNER_TEMP).
- wall-clock and CPU seconds: on a shared, loaded machine the wall-clock inflates; the CPU
  time is what the step costs on an idle runner (plus the download).
- refused: Python 3.10 (ubuntu-22.04's python3), which used to hang in pip for over a minute.
- the old way, measured here too unless --no-baseline: venv + pip install .[image,deploy]
  from a copy of the source, with no pip cache.

    python bench/setup_time.py [--no-baseline]
"""

import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "actions" / "setup" / "install.sh"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import report  # noqa: E402

# the interpreter itself, not a pyenv shim (a runner's python3 is a plain binary)
PYTHON = getattr(sys, "_base_executable", sys.executable)


def env_for(temp: Path, cache: Path) -> dict[str, str]:
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "uv").exists()]
    # as on a runner: bytecode is written on first import (and cached with the venv)
    drop = ("LEPTON_", "GITHUB_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {
        **env,
        "PATH": os.pathsep.join(path),
        "RUNNER_TEMP": str(temp),
        "UV_CACHE_DIR": str(cache / "uv"),
        "PIP_NO_CACHE_DIR": "1",
        "LEPTON_INPUT_PYTHON": PYTHON,
    }


CPU: list[float] = []  # CPU seconds (user + sys) of each timed command and its children


def timed(cmd: list[str], env: dict[str, str]) -> float:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    return took


def step_cpu(env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one setup step."""
    del CPU[:]
    wall = setup_step(env)
    return wall, sum(CPU)


def setup_step(env: dict[str, str]) -> float:
    """What one setup action costs besides actions/cache: check, then install."""
    return timed(["bash", str(INSTALL), "check"], env) + timed(["bash", str(INSTALL)], env)


def venv_size(venv: Path) -> tuple[float, int]:
    total = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    dists = len(list(venv.glob("lib/python*/site-packages/*.dist-info")))
    return total / 1e6, dists


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        colds, cold_cpu = [], []
        for i in range(3):
            wall, cpu = step_cpu(env_for(tmp / f"cold{i}", tmp / f"cache{i}"))
            colds.append(wall)
            cold_cpu.append(cpu)
        env = env_for(tmp / "cold0", tmp / "cache0")
        warms = [step_cpu(env) for _ in range(5)]
        warm = min(w for w, _ in warms)
        moved = tmp / "job2"
        moved.mkdir()
        shutil.copytree(tmp / "cold0" / "lepton-ci-venv", moved / "lepton-ci-venv", symlinks=True)
        restored = setup_step(env_for(moved, tmp / "cache-empty"))
        size, dists = venv_size(tmp / "cold0" / "lepton-ci-venv")
        cold = min(colds)
        load = os.getloadavg()[0]
        print(f"machine load average {load:.1f} on {os.cpu_count()} cores (shared)")
        print(
            f"cold setup: best {cold:.2f} s of {len(colds)} "
            f"({', '.join(f'{c:.2f}' for c in colds)}); CPU {min(cold_cpu):.2f} s; venv "
            f"{size:.0f} MB, {dists} distributions (was 193 MB, 36)"
        )
        print(f"warm setup: best {warm:.2f} s of 5, CPU {min(c for _, c in warms):.2f} s")
        report("cold setup (fresh runner, no package cache)", cold, 3.0)
        report("warm setup (same job, second step)", warm, 0.5)
        report("setup after actions/cache restored the venv", restored, 0.5)
        olds = glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))
        if olds:
            refuse_env = {**env_for(tmp / "old", tmp / "cache-old"), "LEPTON_INPUT_PYTHON": olds[0]}
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", str(INSTALL)], env=refuse_env, capture_output=True)
            refused = time.perf_counter() - t0
            assert proc.returncode == 1, proc
            report("Python 3.10 refused", refused, 1.0)
        if "--no-baseline" not in sys.argv:
            baseline = old_way(tmp)
            print(
                f"old install.sh (pip, every extra, no cache): {baseline:.2f} s; "
                f"cold setup now {cold:.2f} s -> {baseline / cold:.1f}x faster"
            )


def old_way(tmp: Path) -> float:
    src = tmp / "src"  # a copy: pip writes build/ and egg-info into the source it builds
    shutil.copytree(ROOT / "lepton_ci", src / "lepton_ci", ignore=shutil.ignore_patterns("__py*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-m", "venv", str(tmp / "old-venv")], check=True, env=env)
    pip = [str(tmp / "old-venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*pip, "--disable-pip-version-check", f"{src}[image,deploy]"],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
