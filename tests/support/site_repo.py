"""A registry repository for the site tests, written with real git: commits, annotated version
tags whose messages carry evidence records (as `lepton-ci register` writes them), stage tags,
a deregistration, a model without records, and a podman deploy history. Names, subjects and
messages are hostile on purpose."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
from lepton_ci.deploy.releases import FileStore, Probe, Revision

HOSTILE_SUBJECT = 'fix: </script><script>alert("subject")</script> [x](javascript:alert(1))'
HOSTILE_METRIC = '<img src=x onerror=alert("metric")>'
HOSTILE_PARAM = '"><svg onload=alert("param")>'
HOSTILE_WHO = "Mallory \"&' @admin"

CONFIG = """\
models:
  toy:
    train: python3 train.py
    metrics: [metrics.json]
    gates:
      accuracy: {direction: higher, min: 0.5, key: true}
      loss: {direction: lower, max: 0.6}
      latency_ms: {direction: lower, informational: true}
    card:
      intended_use: Sorting toys <b>only</b>.
    image:
      name: 127.0.0.1:5000/toy
      base: 127.0.0.1:5000/pybase:bookworm
    deploy:
      target: podman
      environments:
        staging: {host_port: 18080}
        prod: {host_port: 18081}
stages: [staging, prod]
"""

HOSTILE_PACKAGE = '<img src=x onerror=alert("package")>==1.0'

# v0.1.0's record is as lepton-ci wrote it before it asked the training interpreter: no
# package list. The later ones list theirs; v0.3.0 on changed scikit-learn.
ENV = Environment(
    python="3.11.7",
    platform="linux-x86_64",
    packages_digest="blake3:" + "ab" * 32,
    packages_source="installed",
)
ENV_SKLEARN_19 = Environment(
    python="3.11.7",
    platform="linux-x86_64",
    packages_digest="blake3:" + "ac" * 32,
    packages_source="interpreter",
    interpreter="/work/.venv/bin/python",
    interpreter_source="named by the train command",
    packages=["numpy==2.2.6", "scikit-learn==1.9.1", "torch==2.13.0", HOSTILE_PACKAGE],
    os="Linux 6.1.0 (Debian GNU/Linux 12 (bookworm))",
)
ENV_SKLEARN_16 = ENV_SKLEARN_19.model_copy(
    update={
        "packages_digest": "blake3:" + "ad" * 32,
        "packages": ["numpy==2.2.6", "scikit-learn==1.6.1", "torch==2.13.0", HOSTILE_PACKAGE],
    }
)


def git(repo: Path, *args: str, input: str | None = None, who: str = "Dev One") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": who,
        "GIT_COMMITTER_NAME": who,
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, input=input, capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


def commit(repo: Path, name: str, subject: str, *, who: str = "Dev One") -> str:
    (repo / name).write_text(subject)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", subject, who=who)
    return git(repo, "rev-parse", "HEAD")


def record(
    version: str,
    sha: str,
    metrics: dict[str, float],
    prev: Record | None,
    *,
    params: dict[str, object] | None = None,
    verdict: str = "pass",
    author: str = "Dev One",
    run_url: str | None = None,
    env: Environment = ENV,
) -> Record:
    gates = []
    for name, value in metrics.items():
        base = prev.metrics.get(name) if prev else None
        gates.append(
            GateResult(
                metric=name,
                candidate=value,
                baseline=base,
                delta=None if base is None else value - base,
                status="new" if base is None else "improved",
                verdict="fail" if verdict == "fail" and name == "accuracy" else "pass",
                reasons=["below min 0.5"] if verdict == "fail" and name == "accuracy" else [],
                key=name == "accuracy",
            )
        )
    lineage = Lineage(
        code={"train.py": FileEntry(hash="blake3:" + sha[:40].ljust(64, "0"), size=100)},
        data={"data.csv": FileEntry(hash="blake3:" + "d" * 64, size=10)},
        code_digest="blake3:" + sha[:40].ljust(64, "1"),
        data_digest="blake3:" + "e" * 64,
    )
    return Record(
        model="toy",
        candidate_version=version,
        created_at="2026-11-01T10:00:00+00:00",
        git=GitInfo(sha=sha, commit_time=1_790_000_000, author=author, subject="x"),
        params=params or {"lr": 0.1},
        metrics=metrics,
        lineage=lineage,
        outputs={"model.bin": FileEntry(hash="blake3:" + "f" * 64, size=300)},
        environment=env,
        steps=[Step(name="train", command=["python3", "train.py"], exit_code=0, duration_s=1.5)],
        cache=CacheInfo(key="blake3:" + "c" * 64),
        baseline=Baseline(
            version=prev.candidate_version or "",
            tag=f"toy@{prev.candidate_version}",
            sha=prev.git.sha,
            metrics=prev.metrics,
            params=prev.params,
            lineage=prev.lineage,
            environment=prev.environment,
        )
        if prev
        else None,
        gates=gates,
        verdict="fail" if verdict == "fail" else "pass",
        run_url=run_url,
    )


def register(repo: Path, rec: Record, *, who: str = "Dev One") -> None:
    tag = f"{rec.model}@{rec.candidate_version}"
    message = f"Register {tag}: gates: {rec.verdict}\n\n{rec.to_json()}"
    git(
        repo, "tag", "-a", "--cleanup=verbatim", "-F", "-", tag, rec.git.sha, input=message, who=who
    )


def tag(repo: Path, name: str, sha: str, *, who: str = "Rel Ease") -> None:
    git(repo, "tag", "-a", "-m", f"{name}\n", name, sha, who=who)


def make(repo: Path, *, deploys: bool = True) -> dict[str, str]:
    """The repository; returns the commit of each version."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "lepton.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text(".lepton/\n_site/\n")
    shas = {"v0.1.0": commit(repo, "a.txt", "feat: first <b>model</b>")}
    r1 = record(
        "v0.1.0",
        shas["v0.1.0"],
        {"accuracy": 0.9, "loss": 0.1, "latency_ms": 12.0},
        None,
        run_url="https://github.com/acme/models/actions/runs/1",
    )
    register(repo, r1)
    shas["v0.2.0"] = commit(repo, "b.txt", HOSTILE_SUBJECT, who=HOSTILE_WHO)
    r2 = record(
        "v0.2.0",
        shas["v0.2.0"],
        {"accuracy": 0.93, "loss": 0.07, "latency_ms": 11.0, HOSTILE_METRIC: 1.0},
        r1,
        params={"lr": 0.2, HOSTILE_PARAM: "<b>x</b>"},
        author=HOSTILE_WHO,
        run_url="javascript:alert(1)",
        env=ENV_SKLEARN_19,
    )
    register(repo, r2, who=HOSTILE_WHO)
    shas["v0.3.0"] = commit(repo, "c.txt", "fix: worse")
    r3 = record(
        "v0.3.0",
        shas["v0.3.0"],
        {"accuracy": 0.4, "loss": 0.6},
        r2,
        verdict="fail",
        env=ENV_SKLEARN_16,
    )
    register(repo, r3)
    shas["v0.3.1"] = commit(repo, "d.txt", "fix: again")
    # compared with the last version that passed, not with the failed one before it
    r4 = record(
        "v0.3.1",
        shas["v0.3.1"],
        {"accuracy": 0.91, "loss": 0.09},
        r2,
        params={"lr": 0.3},
        env=ENV_SKLEARN_16,
    )
    register(repo, r4)
    tag(repo, "toy#staging#1", shas["v0.1.0"])
    tag(repo, "toy#staging#2", shas["v0.2.0"], who=HOSTILE_WHO)
    tag(repo, "toy#prod#3", shas["v0.2.0"])
    tag(repo, "toy@v0.3.1!#4", shas["v0.3.1"])  # deregistered, as GTO writes it
    # A model registered by hand (no record in the tag) whose name has a slash.
    tag(repo, "vision/resnet@v1.0.0", shas["v0.1.0"])
    tag(repo, "vision/resnet@deprecated#1", shas["v0.1.0"])
    tag(repo, "lonely#prod#1", shas["v0.1.0"])  # a stage tag and no version at all
    git(
        repo,
        "tag",
        "-a",
        "-m",
        'Register by hand\n\n{"model": "<b>x</b>"}',
        "toy@v0.0.1",
        shas["v0.1.0"],
    )
    if deploys:
        deploy_history(repo, shas)
    return shas


def deploy_history(repo: Path, shas: dict[str, str]) -> None:
    store = FileStore(repo / ".lepton" / "deploy" / "toy" / "staging")
    digest = "sha256:" + "1" * 64
    base = {"env": "staging", "model": "toy", "record_digest": "", "manifests": ""}
    store.save(
        Revision(
            number=1,
            version="v0.1.0",
            image=f"127.0.0.1:5000/toy@{digest}",
            status="superseded",
            who="dev",
            created_at="2026-11-01T10:00:00+00:00",
            probes=[Probe(check="http /healthz", ok=True)],
            **base,
        )
    )
    store.save(
        Revision(
            number=2,
            version="v0.2.0",
            image="127.0.0.1:5000/toy@sha256:" + "2" * 64,
            status="failed",
            reason='health check failed: <script>alert("reason")</script>',
            who=HOSTILE_WHO,
            created_at="2026-11-02T10:00:00+00:00",
            probes=[Probe(check="golden /predict", ok=False, detail="wrong")],
            **base,
        )
    )
    store.save(
        Revision(
            number=3,
            version="v0.1.0",
            image=f"127.0.0.1:5000/toy@{digest}",
            status="superseded",
            description="rollback to 1",
            rollback_of=1,
            who="lepton-ci",
            created_at="2026-11-02T10:01:00+00:00",
            **base,
        )
    )
    store.save(
        Revision(
            number=4,
            version="javascript:alert(1)//",
            image="x",
            status="failed",
            who="?",
            created_at="2026-11-03T10:00:00+00:00",
            **base,
        )
    )
    store.save(
        Revision(
            number=5,
            version="v0.2.0",
            image="127.0.0.1:5000/toy@sha256:" + "5" * 64,
            status="deployed",
            who="dev",
            created_at="2026-11-04T10:00:00+00:00",
            **base,
        )
    )
