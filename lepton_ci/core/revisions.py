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

Status = Literal["pending", "deployed", "failed", "superseded", "rolled-back"]
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
