"""Release history per environment, like Helm's: every deploy or rollback is a NEW revision.

A revision keeps the rendered manifests, version, image digest, status, who, when, the run
and every health probe's result. Statuses: pending (in progress; left behind by a killed job,
repaired by the next command), deployed, failed, superseded, rolled-back, shadowed (a shadow
rollout's candidate that passed; it never served).

A revision that served says when it began (`finished_at`) and stopped (`ended_at`), and `watch`
keeps on it the SLO breaches it found and the requests it counted: the evidence a soak rule
(`stages.*.requires`) reads before a promotion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lepton_ci.core import atomic
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.filelock import exclusive

# The data lives in core (soak rules in `versions` read it too); re-exported for the deploy layer.
from lepton_ci.core.revisions import HEALTHY, Breach, Probe, Revision, Status, Step, now

__all__ = [
    "HEALTHY",
    "Breach",
    "DeployError",
    "FileStore",
    "Probe",
    "Revision",
    "Status",
    "Step",
    "current",
    "history_text",
    "next_number",
    "now",
]


class DeployError(LeptonError):
    """A deploy or rollback failed, or could not start."""


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
