"""`lepton-ci versions` over 10,000 version tags, against the 0.5 s budget."""

import subprocess
import tempfile
import time
from pathlib import Path

from _timing import best_of, lepton_cli, report, run

N = 10_000


def make_repo(root: Path) -> None:
    run(["git", "init", "-q", "-b", "main"], cwd=root)
    (root / "f").write_text("x")
    env = ["-c", "user.name=bench", "-c", "user.email=b@x"]
    run(["git", *env, "add", "f"], cwd=root)
    run(["git", *env, "commit", "-q", "-m", "init"], cwd=root)
    sha = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True).strip()
    # One fast-import stream writes all 10,000 annotated tags (git tag would take minutes).
    now = int(time.time())
    parts = []
    for i in range(N):
        msg = f"Register digits@v{i // 100}.{i % 100}.0: gates: pass\n\n{{}}\n".encode()
        parts.append(
            f"tag digits@v{i // 100}.{i % 100}.0\nfrom {sha}\n"
            f"tagger bench <b@x> {now + i} +0000\ndata {len(msg)}\n".encode()
            + msg
        )
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
