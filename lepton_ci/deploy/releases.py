"""Release history per environment, like Helm's: every deploy or rollback is a NEW revision.

A revision keeps the rendered manifests, version, image digest, status, who, when, the run
and every health probe's result. Statuses: pending (in progress; left behind by a killed job,
repaired by the next command), deployed, failed, superseded, rolled-back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lepton_ci.core import atomic
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.filelock import exclusive
from lepton_ci.rollout.canary import Step

Status = Literal["pending", "deployed", "failed", "superseded", "rolled-back"]
HEALTHY: tuple[str, ...] = ("deployed", "superseded", "rolled-back")


class DeployError(LeptonError):
    """A deploy or rollback failed, or could not start."""


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: str
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class Breach(BaseModel):
    """A live SLO found out of bounds while this revision served (`lepton-ci watch`)."""

    model_config = ConfigDict(extra="forbid")
    slo: str
    value: float | str | None
    bound: str
    at: str
    action: Literal["rollback", "alert"]
    detail: str = ""


class Revision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int
    env: str
    model: str
    version: str
    image: str
    record_digest: str
    manifests: str
    status: Status = "pending"
    description: str = ""
    reason: str = ""
    rollback_of: int | None = None
    who: str = ""
    run_url: str = ""
    created_at: str = ""
    finished_at: str | None = None
    probes: list[Probe] = []
    breaches: list[Breach] = []
    strategy: str = "all-at-once"
    steps: list[Step] = []  # canary: each step's share, checks and SLOs, as judged


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FileStore:
    """Revisions as JSON files in a state directory, with a file lock per environment."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def list(self) -> list[Revision]:
        if not self.dir.is_dir():
            return []
        revs = [
            Revision.model_validate_json(p.read_text()) for p in self.dir.glob("revision-*.json")
        ]
        return sorted(revs, key=lambda r: r.number)

    def save(self, rev: Revision) -> None:
        atomic.write_text(
            self.dir / f"revision-{rev.number:05d}.json", rev.model_dump_json(indent=2)
        )

    @contextmanager
    def lock(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        def busy(holder: str) -> DeployError:
            return DeployError(
                f"another deploy of this environment is running ({holder})",
                hint="wait for it, or raise `deploy.lock_timeout`",
            )

        with exclusive(
            self.dir / ".lock", timeout=timeout, what="lepton-ci deploy", busy=busy, waiting=on_wait
        ):
            yield


def next_number(revs: list[Revision]) -> int:
    return max((r.number for r in revs), default=0) + 1


def current(revs: list[Revision]) -> Revision | None:
    deployed = [r for r in revs if r.status == "deployed"]
    return deployed[-1] if deployed else None


def history_text(env_name: str, revs: list[Revision]) -> str:
    if not revs:
        return f"no revisions in {env_name}"
    return "\n".join(
        f"{r.number:>4}  {r.status:<11} {r.version:<10} {r.created_at}  {r.who:<12} "
        f"{r.description}"
        + (f"  ({r.reason})" if r.reason else "")
        + (f"  [SLO breached: {', '.join(b.slo for b in r.breaches)}]" if r.breaches else "")
        + "".join(f"\n{'':6}{s.text()}" for s in r.steps)
        for r in revs
    )
