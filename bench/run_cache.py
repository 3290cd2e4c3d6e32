"""Run-cache hit on the digits example vs the hashing time + 0.5 s budget and a full run."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _timing import lepton_cli, report, run

from lepton_ci.core import config
from lepton_ci.core.hashing import StatCache
from lepton_ci.run import lineage

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    run(cmd)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d)
        shutil.copytree(EXAMPLE, repo, dirs_exist_ok=True)
        for f in ("model.joblib", "predictions.json", "metrics.json"):
            (repo / f).unlink(missing_ok=True)
        g = ["git", "-C", d, "-c", "user.name=bench", "-c", "user.email=b@x"]
        run([*g, "init", "-q", "-b", "main"])
        run([*g, "add", "-A"])
        run([*g, "commit", "-q", "-m", "init"])
        cli = [*lepton_cli(), "-C", d]
        full = timed([*cli, "run", "--no-cache"])
        hit = min(timed([*cli, "run"]) for _ in range(3))
        rec = (repo / ".lepton" / "runs" / "digits.json").read_text()
        assert '"hit": true' in rec, "the second run was not a cache hit"
        # Hashing time: every input and output hashed from scratch, no stat cache.
        cfg = config.load(repo / "lepton.yaml")
        m = cfg.config.models["digits"]
        t0 = time.perf_counter()
        cold = StatCache(None)
        files = lineage.expand(
            repo, [*m.code, *m.data, *m.params, *m.outputs], what="x", required=True
        )
        for f in files:
            cold.hash(f)
        hashing = time.perf_counter() - t0
        print(
            f"full run: {full:.2f} s; cache-hit run: {hit:.2f} s "
            f"({full / hit:.1f}x faster); hashing all inputs: {hashing * 1000:.1f} ms"
        )
        report("cache-hit run vs hashing + 0.5 s", hit, hashing + 0.5)
        subprocess.run(["true"], check=True)


if __name__ == "__main__":
    main()
