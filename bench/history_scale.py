"""10,000 (and 100,000) registered versions with real records: what each command costs.

Issue #12's targets with 10,000 versions whose tags carry real evidence records (~2 KB):
`run` overhead over the bare train + evaluate commands <= 0.3 s, a run-cache hit <= 0.3 s,
`versions` / `history` / `show` <= 0.2 s, peak RSS <= 80 MB. 100,000 versions show the slope.
Every version sits on its own commit; the records are copies of a real run's record with the
version, commit and metrics changed; every tenth version was promoted to staging and every
fiftieth to prod (stage tags `toy#staging#N`, as a team promoting from main would have).
Usage: python bench/history_scale.py [N ...]
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import best_of, best_of_each, installed_cli, report

from lepton_ci.versions.message import BEGIN, CACHE_KEY_TRAILER, END

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "tests" / "fixtures" / "toy"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=b@x"]


def sh(cmd, cwd, env=None, stdin=None):
    return subprocess.run(
        cmd, cwd=cwd, env=env, input=stdin, check=True, capture_output=True
    ).stdout


def make_repo(root: Path, n: int) -> None:
    shutil.copytree(TOY, root)
    (root / ".gitignore").write_text(".lepton/\nmodel.bin\nmetrics.json\ntrain_count.txt\n")
    sh([*GIT, "init", "-q", "-b", "main"], root)
    sh([*GIT, "add", "-A"], root)
    sh([*GIT, "commit", "-q", "-m", "feat: toy"], root)
    sh([*CLI, "run"], root)
    sh([*CLI, "register"], root)  # one real record, the template for the others
    body = sh(["git", "cat-file", "tag", "toy@v0.1.0"], root).decode()
    template = json.loads(body.split(BEGIN + "\n", 1)[1].split(END, 1)[0])
    sh(["git", "tag", "-d", "toy@v0.1.0"], root)
    head = sh(["git", "rev-parse", "HEAD"], root).decode().strip()
    # One fast-import stream: n commits on a side branch, each with its version tag, then main
    # on top of them so every version is reachable (as after n registered pushes to main).
    now = int(time.time()) - 10 * n
    out = [f"reset refs/heads/main\nfrom {head}\n\n".encode()]
    for i in range(n):
        version = f"v0.{i // 1000}.{i % 1000}"
        note = f"step {i}\n"
        out.append(
            f"commit refs/heads/main\nmark :{i + 1}\ncommitter bench <b@x> {now + 10 * i} +0000\n"
            f"data {len(note)}\n{note}\n".encode()
        )
        rec = dict(template, candidate_version=version)
        rec["git"] = dict(template["git"], commit_time=now + 10 * i)
        rec["metrics"] = dict(template["metrics"], accuracy=0.8 + (i % 100) / 1000)
        # The newest version was registered from a run of today's inputs (the commits change no
        # file): its key is the real one, so a clone without a local cache hits it by trailer.
        key = template["cache"]["key"] if i == n - 1 else f"blake3:{i:064x}"
        rec["cache"] = dict(template["cache"], key=key)
        msg = (
            f"Register toy@{version}: gates: pass\n\n{BEGIN}\n{json.dumps(rec, indent=2)}\n"
            f"{END}\n\n{CACHE_KEY_TRAILER}: {rec['cache']['key']}\n"
        ).encode()
        out.append(
            f"tag toy@{version}\nfrom :{i + 1}\ntagger bench <b@x> {now + 10 * i + 1} +0000\n"
            f"data {len(msg)}\n".encode()
            + msg
        )
        if i % 10 == 9:  # every tenth version promoted to staging, every fiftieth to prod
            for stage in ("staging", "prod") if i % 50 == 49 else ("staging",):
                counter = i // 10 + 1 if stage == "staging" else i // 50 + 1
                note = f"Promote toy@{version} to {stage}\n"
                out.append(
                    f"tag toy#{stage}#{counter}\nfrom :{i + 1}\n"
                    f"tagger bench <b@x> {now + 10 * i + 2} +0000\n"
                    f"data {len(note)}\n{note}".encode()
                )
    sh(["git", "fast-import", "--quiet", "--force"], root, stdin=b"".join(out))
    sh(["git", "reset", "-q", "--hard", "main"], root)
    sh([*GIT, "commit", "-q", "--allow-empty", "-m", "fix: on top"], root)
    sh(["git", "pack-refs", "--all"], root)
    sh(["git", "gc", "-q"], root)


CLI: list[str] = []  # lepton-ci as the action installs it (main() sets it up)


def peak_rss_mb(cmd, cwd) -> float:
    """Peak RSS of one child (this process's children's max, measured alone)."""
    code = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[2:], cwd=sys.argv[1], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cwd), *cmd], check=True, capture_output=True, text=True
    )
    return int(out.stdout) / 1024


def measure(n: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        repo = Path(d) / "repo"
        t0 = time.perf_counter()
        make_repo(repo, n)
        print(f"--- {n} versions with real records (made in {time.perf_counter() - t0:.1f} s)")
        env = dict(os.environ)
        cache = repo / ".lepton" / "cache"
        sh([*CLI, "run"], repo)  # the first read after the tags were made keeps the view
        t = best_of_each(
            5,
            {
                "bare": lambda: (
                    sh([sys.executable, "train.py"], repo, env),
                    sh([sys.executable, "evaluate.py"], repo, env),
                ),
                "cold": lambda: sh([*CLI, "run", "--no-cache"], repo),
                "hit": lambda: sh([*CLI, "run"], repo),
                "versions toy": lambda: sh([*CLI, "versions", "toy"], repo),
                "history toy": lambda: sh([*CLI, "history", "toy"], repo),
                "show toy": lambda: sh([*CLI, "show", "toy"], repo),
            },
        )
        # A fresh clone has no local run-cache: the hit comes from a version tag's record. The
        # first such lookup keeps the view's cache-key part, later ones read it.
        sh(["git", "checkout", "-q", "HEAD~1"], repo)
        shutil.rmtree(cache, ignore_errors=True)
        t0 = time.perf_counter()
        said = subprocess.run([*CLI, "run"], cwd=repo, capture_output=True, text=True, check=True)
        tag_hits = [time.perf_counter() - t0]
        if "run-cache hit" not in said.stdout + said.stderr:  # a miss would time training
            raise SystemExit(f"expected a run-cache hit from a version tag:\n{said.stdout}")
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)
            tag_hits.append(best_of(1, lambda: sh([*CLI, "run"], repo)))
        sh(["git", "checkout", "-q", "main"], repo)
        print(f"bare train + evaluate: {t['bare']:.3f} s; run --no-cache: {t['cold']:.3f} s")
        report(f"[{n}] run overhead over the bare commands", t["cold"] - t["bare"], 0.3)
        report(f"[{n}] run-cache hit (local cache)", t["hit"], 0.3)
        report(f"[{n}] run-cache hit from a version tag (fresh clone)", min(tag_hits[1:]), 0.3)
        print(f"[{n}] the first of those, keeping the cache-key part: {tag_hits[0]:.3f} s")
        for name in ("versions toy", "history toy", "show toy"):
            report(f"[{n}] {name}", t[name], 0.2)
        # The first read after a new tag derives the model's view again (later reads load it).
        firsts = []
        for i in range(3):
            head = sh(["git", "rev-parse", "HEAD"], repo).decode().strip()
            sh([*GIT, "tag", "-a", "-m", "Register: gates: pass", f"toy@v9.0.{i}", head], repo)
            firsts.append(best_of(1, lambda: sh([*CLI, "versions", "toy"], repo)))
        print(f"[{n}] versions, first read after a new tag (derives the view): {min(firsts):.3f} s")
        # A clone without the tag index and views (.git/lepton-ci; the workflows carry it in
        # actions/cache) opens every tag object once, to build them.
        index = repo / ".git" / "lepton-ci"
        cold = best_of(
            3,
            lambda: (shutil.rmtree(index, ignore_errors=True), sh([*CLI, "versions", "toy"], repo)),
        )
        print(f"[{n}] versions with no tag index yet (a fresh clone, first command): {cold:.3f} s")
        rss = max(
            peak_rss_mb([*CLI, *a], repo)
            for a in (["run", "--no-cache"], ["run"], ["versions", "toy"], ["history", "toy"])
        )
        report(f"[{n}] peak RSS of run/versions/history", rss, 80, unit="MB")
        head = sh(["git", "rev-parse", "HEAD"], repo).decode().strip()
        sh([*GIT, "tag", "-a", "-m", "Register: gates: pass", "toy@v9.1.0", head], repo)
        rss = peak_rss_mb([*CLI, "history", "toy"], repo)
        print(f"[{n}] peak RSS of the first history after a new tag (derives it all): {rss:.1f} MB")


def main() -> None:
    # An installed lepton-ci has its bytecode (pip compiles it); with PYTHONDONTWRITEBYTECODE
    # set, as on these machines, every module of a checkout would be compiled at every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        CLI[:] = installed_cli(Path(d))
        for n in [int(a) for a in sys.argv[1:]] or [1, 10_000, 100_000]:
            measure(n)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    main()
