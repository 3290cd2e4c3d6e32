"""Hashing a 1 GiB file: throughput against md5sum, and the stat-cache re-hash budget."""

import os
import subprocess
import tempfile
from pathlib import Path

from _timing import best_of, report

from lepton_ci.core.hashing import StatCache, hash_file

SIZE = 1 << 30


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as d:
        f = Path(d) / "big.bin"
        with f.open("wb") as out:
            for _ in range(SIZE // (64 << 20)):
                out.write(os.urandom(64 << 20))
        hash_file(f)  # both tools then read from the page cache
        md5 = best_of(
            3, lambda: subprocess.run(["md5sum", str(f)], check=True, stdout=subprocess.DEVNULL)
        )
        ours = best_of(3, lambda: hash_file(f))
        gib = SIZE / (1 << 30)
        print(f"md5sum: {gib / md5:.2f} GiB/s; lepton-ci (blake3): {gib / ours:.2f} GiB/s")
        report("throughput vs md5sum", md5 / ours, 2.0, unit="x", better="higher")
        cache_file = Path(d) / "stat.json"
        c = StatCache(cache_file)
        c.hash(f)
        c.save()
        rehash = best_of(5, lambda: StatCache(cache_file).hash(f))
        report("unchanged re-hash (stat cache)", rehash, 0.05)


if __name__ == "__main__":
    main()
