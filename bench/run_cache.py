"""Run-cache hit on the digits example against a full run, and against hashing + 0.5 s.

Like with like: cold against cold, warm against warm. Cold: lepton-ci's stat cache
(`.lepton/cache/stat.json`) removed first, so every input and output is hashed (a fresh clone
with the run-cache restored); warm: the stat cache of the run before (a second run in one
work tree). The OS page cache is warm in both (the files were just read). Each of the four
(full and hit, cold and warm) and the hashing reference are best of N, interleaved.

    python bench/run_cache.py [N]   (default 3)
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from _timing import lepton_cli, report, run

from lepton_ci.core import config
from lepton_ci.core.hashing import StatCache
from lepton_ci.run import lineage

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
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
        cfg = config.load(repo / "lepton.yaml")
        stat = cfg.cache_dir() / "stat.json"
        record = repo / ".lepton" / "runs" / "digits.json"
        m = cfg.config.models["digits"]
        run([*cli, "run", "--no-cache"])  # the run-cache entry the hits restore
        files = lineage.expand(
            repo, [*m.code, *m.data, *m.params, *m.outputs], what="x", required=True
        )

        def timed(*args: str, cold: bool, hit: bool) -> float:
            if cold:
                stat.unlink(missing_ok=True)
            t0 = time.perf_counter()
            run([*cli, "run", *args])
            took = time.perf_counter() - t0
            assert ('"hit": true' in record.read_text()) == hit, f"run {args}: hit is not {hit}"
            return took

        def hashing(cache: Path | None) -> float:
            t0 = time.perf_counter()
            stats = StatCache(cache)
            for f in files:
                stats.hash(f)
            return time.perf_counter() - t0

        best: dict[str, float] = {}
        for _ in range(rounds):  # interleaved: a machine whose speed drifts drifts for all
            for name, took in (
                ("cold full", lambda: timed("--no-cache", cold=True, hit=False)),
                ("cold hit", lambda: timed(cold=True, hit=True)),
                ("cold hashing", lambda: hashing(None)),
                ("warm full", lambda: timed("--no-cache", cold=False, hit=False)),
                ("warm hit", lambda: timed(cold=False, hit=True)),
                ("warm hashing", lambda: hashing(stat)),
            ):
                best[name] = min(best.get(name, float("inf")), took())
        print(f"digits example, {len(files)} input and output files; best of {rounds}, interleaved")
        for kind in ("cold", "warm"):
            full, hit, hashed = best[f"{kind} full"], best[f"{kind} hit"], best[f"{kind} hashing"]
            print(
                f"{kind} stat cache: full run {full:.2f} s, cache-hit run {hit:.2f} s "
                f"({full / hit:.1f}x faster); hashing every file {hashed * 1000:.1f} ms"
            )
        report(
            "cold cache-hit run vs cold hashing + 0.5 s",
            best["cold hit"],
            best["cold hashing"] + 0.5,
        )
        report(
            "warm cache-hit run vs warm hashing + 0.5 s",
            best["warm hit"],
            best["warm hashing"] + 0.5,
        )


if __name__ == "__main__":
    main()
