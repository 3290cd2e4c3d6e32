"""`lepton-ci versions` over 10,000 version tags, against the 0.5 s budget.

Each tag is what `lepton-ci register` writes (its message is made by the same function,
`lepton_ci.versions.message.registration`): an annotated tag on its own commit whose message
carries a full evidence record (metrics, params, lineage of 40 files, gates against the
previous version) between its fences and the run-cache key as a trailer, so the reader parses
what real registries hold. Loose and packed refs are timed interleaved, best of 5 each.

    python bench/registry_read.py [N]
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _records import record
from _timing import best_of_each, lepton_cli, report, run

from lepton_ci.core.semver import Version
from lepton_ci.versions import grammar, message

N = 10_000


def make_repo(root: Path, n: int = N) -> None:
    run(["git", "init", "-q", "-b", "main"], cwd=root)
    # One fast-import stream writes n commits and their annotated tags (git tag would
    # take minutes); each version is registered on its own commit, as in a real history.
    now = int(time.time())
    parts, previous = [], "v0.0.0"
    for i in range(n):
        version = f"v{i // 100}.{i % 100}.0"
        mark = i + 1
        body = f"train run {i}\n".encode()
        parts.append(
            f"commit refs/heads/main\nmark :{mark}\ncommitter bench <b@x> {now + i} +0000\n"
            f"data {len(body)}\n".encode()
            + body
            + f"M 644 inline model.txt\ndata {len(str(i))}\n{i}\n".encode()
        )
        name = grammar.version_tag("digits", Version.parse(version))
        data = message.registration(name, record(i, version, previous, f"{mark:040x}")).encode()
        parts.append(
            f"tag {name}\nfrom :{mark}\ntagger bench <b@x> {now + i} +0000\n"
            f"data {len(data)}\n".encode()
            + data
        )
        previous = version
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(parts), check=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    with tempfile.TemporaryDirectory() as loose_dir, tempfile.TemporaryDirectory() as packed_dir:
        for d in (loose_dir, packed_dir):
            make_repo(Path(d), n)
        run(["git", "pack-refs", "--all"], cwd=Path(packed_dir))
        cli = lepton_cli()
        for d in (loose_dir, packed_dir):
            out = subprocess.check_output(
                [*cli, "-C", d, "versions", "digits", "--json"], text=True
            )
            assert out.count('"version"') == n, "not every tag was read"
        # the first read above derived and kept each repository's view: both are timed warm
        best = best_of_each(
            5,
            {
                "loose": lambda: run([*cli, "-C", loose_dir, "versions", "digits"]),
                "packed": lambda: run([*cli, "-C", packed_dir, "versions", "digits"]),
            },
        )
        print(f"{n} version tags written as `register` writes them; best of 5, interleaved")
        report(f"versions with {n} loose tag refs", best["loose"], 0.5)
        report(f"versions with {n} packed tag refs", best["packed"], 0.5)


if __name__ == "__main__":
    main()
