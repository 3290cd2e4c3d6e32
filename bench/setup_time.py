"""The setup action's cost on this machine, against issue #16's numbers.

- cold: an empty RUNNER_TEMP, an empty uv cache and no uv on PATH (a fresh runner): the uv
  wheel is downloaded, the venv created, the core installed with --require-hashes.
  Target <= 3 s; the old install.sh (pip, every extra, from the source) took 17-18 s.
- warm: the second setup step of the same job (check + install on a ready venv): <= 0.5 s.
- restored: a new job whose venv came back from actions/cache (moved to another RUNNER_TEMP).
- wall-clock and CPU seconds: on a shared, loaded machine the wall-clock inflates; the CPU
  time is what the step costs on an idle runner (plus the download).
- refused: Python 3.10 (ubuntu-22.04's python3), which used to hang in pip for over a minute.
- the old way, measured here too unless --no-baseline: venv + pip install from a copy of
  the source, with no pip cache. Like with like: the core against the old install of the
  core, and the core with the `image` and `deploy` extras (what `build deploy` steps add)
  against the old `pip install .[image,deploy]`; interleaved, best of N (3) each.

    python bench/setup_time.py [--no-baseline] [--rounds N]
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


EXTRAS_CONFIG = """\
models:
  k8s:
    train: python3 train.py
    metrics: [m.json]
    image: {name: 127.0.0.1:5000/a, base: 127.0.0.1:5000/py:1}
    deploy: {target: kubernetes, environments: {staging: {url: "http://a"}}}
  docker:
    train: python3 train.py
    metrics: [m.json]
    image: {name: 127.0.0.1:5000/b}
"""


def cold_setup(tmp: Path, name: str, repo: Path | None) -> tuple[float, float]:
    """One setup step on a fresh runner: no venv, no uv cache. With `repo`, the steps
    `build deploy` of a config that needs both extras (the `image` and `deploy` sets)."""
    env = env_for(tmp / name, tmp / f"{name}-cache")
    if repo is not None:
        env = {
            **env,
            "LEPTON_SETUP_STEP": "build deploy",
            "LEPTON_INPUT_WORKING_DIRECTORY": str(repo),
        }
    return step_cpu(env)


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    baseline = "--no-baseline" not in sys.argv
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        repo = tmp / "repo"
        repo.mkdir()
        (repo / "lepton.yaml").write_text(EXTRAS_CONFIG)
        # Like with like: the core against the old install of the core, every extra against
        # the old install of every extra; interleaved, best of 3 each (wall and CPU apart).
        sides = {
            "setup, core": lambda i: cold_setup(tmp, f"core{i}", None),
            "setup, core + image + deploy": lambda i: cold_setup(tmp, f"all{i}", repo),
        }
        if baseline:
            sides["old pip install ., core"] = lambda i: old_way(tmp, f"old-core{i}", "")
            sides["old pip install .[image,deploy]"] = lambda i: old_way(
                tmp, f"old-all{i}", "[image,deploy]"
            )
        walls: dict[str, list[float]] = {k: [] for k in sides}
        cpus: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(rounds):
            for name, fn in sides.items():
                wall, cpu = fn(i)
                walls[name].append(wall)
                cpus[name].append(cpu)
        env = env_for(tmp / "core0", tmp / "core0-cache")
        warms = [step_cpu(env) for _ in range(5)]
        warm = min(w for w, _ in warms)
        moved = tmp / "job2"
        moved.mkdir()
        shutil.copytree(tmp / "core0" / "lepton-ci-venv", moved / "lepton-ci-venv", symlinks=True)
        restored = setup_step(env_for(moved, tmp / "cache-empty"))
        size, dists = venv_size(tmp / "core0" / "lepton-ci-venv")
        load = os.getloadavg()[0]
        print(f"machine load average {load:.1f} on {os.cpu_count()} cores (shared)")
        print(f"cold: a fresh runner (no venv, no package cache); best of {rounds}, interleaved")
        for name in sides:
            print(
                f"  {name}: {min(walls[name]):.2f} s "
                f"({', '.join(f'{w:.2f}' for w in walls[name])}); CPU {min(cpus[name]):.2f} s"
            )
        print(f"setup venv (core): {size:.0f} MB, {dists} distributions")
        print(f"warm setup: best {warm:.2f} s of 5, CPU {min(c for _, c in warms):.2f} s")
        cold = min(walls["setup, core"])
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
        if baseline:
            for new, old in (
                ("setup, core", "old pip install ., core"),
                ("setup, core + image + deploy", "old pip install .[image,deploy]"),
            ):
                print(
                    f"{new} {min(walls[new]):.2f} s vs {old} {min(walls[old]):.2f} s -> "
                    f"{min(walls[old]) / min(walls[new]):.1f}x faster"
                )


def old_way(tmp: Path, name: str, extras: str) -> tuple[float, float]:
    """The old install.sh: a venv and `pip install` of the source, no pip cache."""
    src = tmp / "src"  # a copy: pip writes build/ and egg-info into the source it builds
    if not src.exists():
        shutil.copytree(
            ROOT / "lepton_ci", src / "lepton_ci", ignore=shutil.ignore_patterns("__py*")
        )
        for f in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / f, src / f)
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    pip = [str(tmp / name / "bin" / "python"), "-m", "pip", "install", "-q"]
    del CPU[:]
    wall = timed([PYTHON, "-m", "venv", str(tmp / name)], env) + timed(
        [*pip, "--disable-pip-version-check", f"{src}{extras}"], env
    )
    for made in [src / "build", *src.glob("*.egg-info")]:  # each round builds from clean
        shutil.rmtree(made, ignore_errors=True)
    return wall, sum(CPU)


if __name__ == "__main__":
    main()
