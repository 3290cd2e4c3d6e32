"""A deploy environment's revisions, as data: what every layer that reads a release history
(the deployer, `watch`, soak rules of promotions, the site) shares.

A revision keeps the rendered manifests, version, image digest, status, who, when, the run
and every health probe's result. A revision that served says when it began (`finished_at`)
and stopped (`ended_at`), and `watch` keeps on it the SLO breaches it found and the requests it
counted. Where revisions are stored is the deploy layer's (lepton_ci/deploy/releases.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

# `shadowed`: a candidate that ran beside the serving revision on mirrored requests and
# passed its comparison; it never served a client, so it is not among the HEALTHY ones.
Status = Literal["pending", "deployed", "failed", "superseded", "rolled-back", "shadowed"]
HEALTHY: tuple[str, ...] = ("deployed", "superseded", "rolled-back")


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


# The detail of a drift SLO at a canary step: not judged then, by design (not worth a word
# at every step, unlike an SLO Prometheus could not answer).
DRIFT_LATER = "drift is judged by `watch` once the revision serves everything"


class SloResult(BaseModel):
    """One watch SLO at one step: the candidate's value against the serving revision's."""

    model_config = ConfigDict(extra="forbid")
    slo: str
    status: Literal["ok", "breach", "no-data", "error"]
    canary: float | str | None = None
    stable: float | str | None = None
    bound: str = ""
    detail: str = ""

    def text(self) -> str:
        def shown(v: float | str | None) -> str:
            return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

        extra = f"; {self.detail}" if self.detail else ""
        return (
            f"{self.slo} {self.status}: canary {shown(self.canary)} vs stable "
            f"{shown(self.stable)} (bound {self.bound or '—'}{extra})"
        )


class Step(BaseModel):
    """One canary step as it happened: recorded on the revision, shown by `history`."""

    model_config = ConfigDict(extra="forbid")
    weight: int
    effective: int
    started_at: str
    seconds: float
    served: dict[str, int] = {}
    share: float | None = None  # of the requests answered during the step, the canary's
    checks_ok: bool | None = None
    checks: str = ""
    slos: list[SloResult] = []
    verdict: Literal["passed", "aborted"] = "passed"
    reason: str = ""

    def text(self) -> str:
        share = "—" if self.share is None else f"{self.share:.1%}"
        head = (
            f"step {self.effective}%: {self.verdict} after {self.seconds:.1f}s, canary answered "
            f"{share} of {sum(self.served.values())} requests"
        )
        # an SLO that could not be judged (Prometheus down, no series yet) is said, so a
        # step that passed on the checks alone does not read as judged by its SLOs too
        unjudged = [
            f"{r.slo} {r.status}{f': {r.detail}' if r.detail else ''}"
            for r in self.slos
            if r.status in ("error", "no-data") and r.detail != DRIFT_LATER
        ]
        tail = f"; SLO not judged: {'; '.join(unjudged)}" if unjudged else ""
        return head + (f" ({self.reason})" if self.reason else "") + tail


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
    finished_at: str | None = None  # deployed: when it began to serve
    # When it stopped serving (superseded, rolled back, or failed by `watch`); None while it
    # serves, and on revisions written before lepton-ci recorded it.
    ended_at: str | None = None
    probes: list[Probe] = []
    breaches: list[Breach] = []
    # Requests it answered since it began to serve, as `watch` last counted them, and when.
    requests: float | None = None
    requests_at: str | None = None
    strategy: str = "all-at-once"
    steps: list[Step] = []  # canary: each step's share, checks and SLOs, as judged


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
