"""Overhead of the all-in-one action over the user's own train + evaluate, on the example.

Both on this machine: `python3 train.py && python3 evaluate.py` alone, then a pull_request
workflow with one step of the all-in-one action (pinned as the templates pin it) under act
(host mode, lepton-ci already installed in its virtualenv, as on a runner with a warm cache).
Prints both and the ratio.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.act import act, action_repo, git, make_workspace  # noqa: E402
from tools import pin  # noqa: E402

WORKFLOW = """\
name: bench
on: pull_request
permissions: {}
jobs:
  model:
    runs-on: ubuntu-latest
    timeout-minutes: 10
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with: {persist-credentials: false}
      - uses: ACTION
"""
RUNS = 3


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        action = action_repo(tmp / "action")
        venv = tmp / "venv"
        plain, wrapped = [], []
        for i in range(RUNS):
            ws = make_workspace(tmp / f"ws{i}", [])
            (ws / ".github" / "workflows" / "bench.yml").write_text(
                WORKFLOW.replace("ACTION", f"{pin.ACTION}@{pin.current().ref()}")
            )
            git(ws, "add", "-A")
            git(ws, "commit", "-q", "-m", "ci: bench")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "train.py"], cwd=ws, check=True, capture_output=True)
            subprocess.run([sys.executable, "evaluate.py"], cwd=ws, check=True, capture_output=True)
            plain.append(time.perf_counter() - t0)
            home = tmp / f"home{i}"
            home.mkdir()
            payload = {
                "pull_request": {
                    "number": 1,
                    "head": {
                        "sha": git(ws, "rev-parse", "HEAD"),
                        "ref": "b",
                        "repo": {"full_name": "fork/x"},
                    },
                    "base": {"ref": "main", "repo": {"full_name": "acme/x"}},
                }
            }

            def run_act(home: Path, ws: Path = ws, payload: dict = payload):
                return act(
                    ws,
                    "pull_request",
                    payload,
                    "bench.yml",
                    home=home,
                    action=action,
                    env={"LEPTON_VENV": str(venv)},
                )

            if i == 0:  # the first run installs lepton-ci into the venv: not measured
                run_act(home)
                home = tmp / "home-warm"
                home.mkdir()
            t0 = time.perf_counter()
            proc = run_act(home)
            wrapped.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-3000:])
            if "run-cache miss" not in proc.stdout:
                raise RuntimeError("the action did not train: the comparison would be unfair")
        p, w = min(plain), min(wrapped)
        print(
            f"train + evaluate alone: {p:.2f} s; the all-in-one action under act "
            f"(checkout, run with lineage, gates, report bundle): {w:.2f} s; "
            f"ratio {w / p:.2f} (overhead {w - p:.2f} s), best of {RUNS}"
        )


if __name__ == "__main__":
    main()
