"""A realistic evidence record for the benches: what a real registry or comment holds."""

from __future__ import annotations

from lepton_ci.core import record as r


def record(i: int, version: str, previous: str, sha: str) -> r.Record:
    """The record `lepton-ci run` writes for run i of the digits model (40 code files)."""

    entry = r.FileEntry(hash=f"blake3:{i:064x}", size=1000 + i)
    files = {f"src/module_{k}.py": entry for k in range(40)}
    acc = 0.9 + (i % 100) / 1000
    return r.Record(
        model="digits",
        candidate_version=version,
        created_at="2026-01-01T00:00:00+00:00",
        git=r.GitInfo(sha=sha, branch="main", commit_time=1_767_000_000 + i),
        params={"lr": 0.01, "epochs": 10 + i % 7, "depth": 6},
        metrics={"accuracy": acc, "f1": acc - 0.01, "latency_ms": 3.2},
        lineage=r.Lineage(code=files, data={"data/train.csv": entry}, code_digest=entry.hash),
        environment=r.Environment(
            python="3.11.7", platform="linux-x86_64", packages_digest=entry.hash,
            packages_source="uv.lock",
        ),
        steps=[r.Step(name="train", command="python train.py", exit_code=0, duration_s=12.5)],
        cache=r.CacheInfo(key=f"{i:012x}"),
        baseline=r.Baseline(version=previous, tag=f"digits@{previous}", sha="0" * 40),
        gates=[
            r.GateResult(metric="accuracy", candidate=acc, baseline=acc - 0.001, status="improved",
                         verdict="pass", key=True),
        ],
    )  # fmt: skip
