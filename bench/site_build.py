"""`lepton-ci site` for 1,000 versions of one model and for 10 models x 100 versions:
build time against the 2 s target and total size against 5 MB.

The registries are real git repositories: one commit per version, annotated version tags
whose messages carry full evidence records and stage tags, their messages made by the
functions `register` and `promote` use (`lepton_ci.versions.message`), all written with one
`git fast-import` stream each. Each build is timed into a fresh directory, best of 3.

    python bench/site_build.py [VERSIONS]   (default 1000: 1 x 1000 and 10 x 100)
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import lepton_cli, report, run

from lepton_ci.core.record import (
    Baseline,
    CacheInfo,
    Environment,
    FileEntry,
    GateResult,
    GitInfo,
    Lineage,
    Record,
    Step,
)
from lepton_ci.core.semver import Version
from lepton_ci.versions import grammar, message

CONFIG = """\
models:
{models}
stages: [staging, prod]
"""
MODEL = """\
  {name}:
    train: python3 train.py
    metrics: [metrics.json]
    gates:
      accuracy: {{direction: higher, min: 0.8, max_regression: 0.02, key: true}}
      loss: {{direction: lower, max: 0.3}}
      f1: {{direction: higher}}
      latency_ms: {{direction: lower, informational: true}}
"""


def _h(i: int, salt: str) -> str:
    return "blake3:" + f"{salt}{i:08d}".encode().hex().ljust(64, "0")[:64]


def record(model: str, i: int, sha: str, prev: Record | None) -> Record:
    acc = 0.85 + 0.1 * ((i * 37) % 100) / 100
    metrics = {"accuracy": acc, "loss": 1 - acc, "f1": acc - 0.02, "latency_ms": 10 + i % 7}
    gates = []
    for name, value in metrics.items():
        base = prev.metrics.get(name) if prev else None
        delta = None if base is None else value - base
        gates.append(
            GateResult(
                metric=name,
                candidate=value,
                baseline=base,
                delta=delta,
                delta_pct=None if base in (None, 0) or delta is None else 100 * delta / base,
                direction="lower" if name in ("loss", "latency_ms") else "higher",
                status="new" if delta is None else "improved" if delta > 0 else "regressed",
                verdict="info" if name == "latency_ms" else "pass",
                key=name == "accuracy",
            )
        )
    files = {f"src/{n}.py": FileEntry(hash=_h(i // 10, n), size=2048) for n in "abcd"}
    lineage = Lineage(
        code=files,
        data={"data/train.csv": FileEntry(hash=_h(i // 50, "d"), size=1 << 20)},
        params_files={"params.yaml": FileEntry(hash=_h(i, "p"), size=120)},
        code_digest=_h(i // 10, "c"),
        data_digest=_h(i // 50, "D"),
    )
    env = Environment(
        python="3.11.7",
        platform="linux-x86_64",
        packages_digest=_h(1, "k"),
        packages_source="uv.lock",
    )
    return Record(
        model=model,
        candidate_version=version(i),
        created_at="2026-11-01T10:00:00+00:00",
        git=GitInfo(
            sha=sha,
            branch="main",
            commit_time=1_790_000_000 + i * 3600,
            author="Dev One",
            subject=f"fix: change {i}",
        ),
        params={
            "lr": 0.001 * (1 + i % 5),
            "epochs": 10 + i % 3,
            "batch": 64,
            "seed": 1,
            "model.depth": 4,
        },
        metrics=metrics,
        lineage=lineage,
        outputs={"model.pkl": FileEntry(hash=_h(i, "o"), size=300_000)},
        environment=env,
        steps=[
            Step(
                name="train",
                command="python3 train.py",
                exit_code=0,
                started_at="2026-11-01T10:00:00+00:00",
                duration_s=42.5,
            ),
            Step(
                name="evaluate",
                command="python3 evaluate.py",
                exit_code=0,
                started_at="2026-11-01T10:00:43+00:00",
                duration_s=3.2,
            ),
        ],
        cache=CacheInfo(key=_h(i, "K"), reason="no earlier run with the same inputs"),
        baseline=Baseline(
            version=prev.candidate_version or "",
            tag=f"{model}@{prev.candidate_version}",
            sha=prev.git.sha,
            metrics=prev.metrics,
            params=prev.params,
            lineage=prev.lineage,
            environment=prev.environment,
        )
        if prev
        else None,
        gates=gates,
        verdict="pass",
    )


def version(i: int) -> str:
    return f"v{i // 100}.{i % 100}.0"


def make_repo(root: Path, models: list[str], per_model: int) -> None:
    run(["git", "init", "-q", "-b", "main"], cwd=root)
    (root / "lepton.yaml").write_text(
        CONFIG.format(models="".join(MODEL.format(name=m) for m in models))
    )
    blob = (root / "lepton.yaml").read_bytes()
    t0 = 1_790_000_000
    n = len(models) * per_model
    commits = [
        b"blob\nmark :1\ndata %d\n%b\n" % (len(blob), blob),
    ]
    for c in range(n):
        msg = f"fix: change {c}\n".encode()
        commits.append(
            b"commit refs/heads/main\nmark :%d\ncommitter Dev One <dev@example.com> %d +0000\n"
            b"data %d\n%b%bM 100644 :1 lepton.yaml\n\n"
            % (c + 2, t0 + c * 3600, len(msg), msg, b"from :%d\n" % (c + 1) if c else b"")
        )
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(commits), check=True)
    shas = subprocess.check_output(
        ["git", "rev-list", "--reverse", "main"], cwd=root, text=True
    ).split()
    tags = []
    c = 0
    for m in models:
        prev = None
        counter = 0  # a model's stage tags are numbered in order, as `promote` numbers them
        for i in range(per_model):
            sha = shas[c]
            rec = record(m, i, sha, prev)
            name = grammar.version_tag(m, Version.parse(version(i)))
            msg = message.registration(name, rec).encode()  # what `register` writes
            tags.append(
                b"tag %s\nfrom %s\ntagger Dev One <dev@example.com> %d +0000\ndata %d\n%b\n"
                % (name.encode(), sha.encode(), t0 + c * 3600 + 60, len(msg), msg)
            )
            for k, stage in ((10, "staging"), (50, "prod")):
                if i % k == 0:
                    counter += 1
                    body = message.promotion(name, stage, promoted_by="rel-ease").encode()
                    tags.append(
                        b"tag %s\nfrom %s\n"
                        b"tagger Rel Ease <r@example.com> %d +0000\ndata %d\n%b\n"
                        % (
                            grammar.stage_tag(m, stage, counter).encode(),
                            sha.encode(),
                            t0 + c * 3600 + 120 + k,
                            len(body),
                            body,
                        )
                    )
            prev = rec
            c += 1
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(tags), check=True)
    run(["git", "pack-refs", "--all"], cwd=root)
    run(["git", "reset", "-q", "--hard", "main"], cwd=root)


def measure(name: str, models: list[str], per_model: int) -> bool:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "repo"
        root.mkdir()
        t = time.perf_counter()
        make_repo(root, models, per_model)
        print(f"({name}: repository made in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        out = Path(d) / "site"
        cli = [*lepton_cli(), "-C", str(root), "site", "--out", str(out), "--repo", "acme/m"]
        text = subprocess.check_output(cli, text=True)
        assert f"{len(models) * per_model} versions" in text, text
        walls, cpus = [], []
        for _ in range(3):  # each into a fresh directory, as a Pages job builds
            shutil.rmtree(out)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            run(cli)
            walls.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        files = sum(1 for p in out.rglob("*.html"))
        ok = report(f"site build, {name} ({files} pages), wall", min(walls), 2.0)
        report(f"site build, {name}, CPU time of the process", min(cpus), 2.0)
        return report(f"site size, {name}", size / 1e6, 5.0, unit="MB") and ok


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    ok = measure(f"1 model x {n} versions", ["digits"], n)
    ok = (
        measure(f"10 models x {n // 10} versions", [f"model-{i}" for i in range(10)], n // 10)
        and ok
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
