"""`lepton-ci versions` over 10,000 version tags, against the 0.5 s budget.

Each tag is what `lepton-ci register` writes: an annotated tag on its own commit whose message
carries a full evidence record (metrics, params, lineage of 40 files, gates against the
previous version), so the reader parses what real registries hold.
"""

import subprocess
import tempfile
import time
from pathlib import Path

from _records import record
from _timing import best_of, lepton_cli, report, run

N = 10_000


def make_repo(root: Path) -> None:
    run(["git", "init", "-q", "-b", "main"], cwd=root)
    # One fast-import stream writes 10,000 commits and their annotated tags (git tag would
    # take minutes); each version is registered on its own commit, as in a real history.
    now = int(time.time())
    parts, previous = [], "v0.0.0"
    for i in range(N):
        version = f"v{i // 100}.{i % 100}.0"
        mark = i + 1
        body = f"train run {i}\n".encode()
        parts.append(
            f"commit refs/heads/main\nmark :{mark}\ncommitter bench <b@x> {now + i} +0000\n"
            f"data {len(body)}\n".encode()
            + body
            + f"M 644 inline model.txt\ndata {len(str(i))}\n{i}\n".encode()
        )
        rec = record(i, version, previous, f"{mark:040x}").to_json()
        data = f"Register digits@{version}: gates: pass\n\n{rec}".encode()
        parts.append(
            f"tag digits@{version}\nfrom :{mark}\n"
            f"tagger bench <b@x> {now + i} +0000\ndata {len(data)}\n".encode()
            + data
        )
        previous = version
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(parts), check=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        make_repo(root)
        cli = lepton_cli()
        out = subprocess.check_output([*cli, "-C", d, "versions", "digits", "--json"], text=True)
        assert out.count('"version"') == N, "not every tag was read"
        loose = best_of(5, lambda: run([*cli, "-C", d, "versions", "digits"]))
        run(["git", "pack-refs", "--all"], cwd=root)
        packed = best_of(5, lambda: run([*cli, "-C", d, "versions", "digits"]))
        report(f"versions with {N} loose tag refs", loose, 0.5)
        report(f"versions with {N} packed tag refs", packed, 0.5)


if __name__ == "__main__":
    main()
