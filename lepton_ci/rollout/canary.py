"""The canary loop: give the candidate each step's share of requests, let it serve for the
interval, judge it, and go on or stop.

A step is judged by the deploy checks run against the candidate alone and by the watch SLOs
evaluated per revision (the candidate against the serving revision, from the same Prometheus
series). The loop only decides; the deployer applies, records and undoes. Like Argo Rollouts'
steps, the strategy is data (`rollout.steps`, `rollout.interval`) read by this one small loop,
and an abort is a result with a reason, recorded on the revision like anything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from lepton_ci.core.revisions import SloResult as SloResult
from lepton_ci.core.revisions import Step as Step


class Weights(Protocol):
    """What the loop asks of a target (the deploy contract's `Tracks`)."""

    def set_weight(self, name: str, percent: int, *, mirror: bool = False) -> int: ...
    def canary_url(self, name: str) -> str | None: ...
    def served(self, name: str) -> dict[str, int] | None: ...


Check = Callable[[str], tuple[bool, str]]  # the candidate's base URL -> (ok, summary)
Judge = Callable[[], list[SloResult]]  # the SLOs, candidate against stable, now


@dataclass
class Canary:
    tracks: Weights
    name: str
    steps: list[int]
    interval: float
    check: Check
    judge: Judge | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = print
    results: list[Step] = field(default_factory=list)
    # Called with each step as it is judged: the deployer records it at once, so a step an
    # interruption follows stays on the revision.
    on_step: Callable[[Step], None] | None = None
    # When the step that aborted started (the clock's reading): the deployer measures from
    # it to "stable serves everything".
    aborted_step_start: float | None = None

    def run(self) -> bool:
        """Every step in turn; False at the first one judged bad (its reason on `results`)."""
        for weight in self.steps:
            step = self._step(weight)
            self.results.append(step)
            if self.on_step is not None:
                self.on_step(step)
            self.log(f"{self.name}: canary {step.text()}")
            if step.verdict == "aborted":
                return False
        return True

    def _step(self, weight: int) -> Step:
        t0 = self.clock()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        effective = self.tracks.set_weight(self.name, weight)
        # Counted from here: `set_weight` returns once the previous split's last requests
        # are answered, so what follows was split by this step's weight alone.
        before = self.tracks.served(self.name) or {}
        self.sleep(self.interval)
        url = self.tracks.canary_url(self.name)
        ok, summary = self.check(url) if url else (True, "no address of the canary alone")
        slos = self.judge() if self.judge is not None else []
        after = self.tracks.served(self.name)
        served = (
            {k: after.get(k, 0) - before.get(k, 0) for k in ("stable", "canary")}
            if after is not None
            else {}
        )
        total = sum(served.values())
        reasons = [] if ok else [f"deploy checks against the canary failed: {summary}"]
        reasons += [f"SLO {s.text()}" for s in slos if s.status == "breach"]
        step = Step(
            weight=weight,
            effective=effective,
            started_at=started,
            seconds=round(self.clock() - t0, 3),
            served=served,
            share=round(served.get("canary", 0) / total, 4) if total else None,
            checks_ok=ok if url else None,
            checks=summary,
            slos=slos,
            verdict="aborted" if reasons else "passed",
            reason="; ".join(reasons),
        )
        if reasons:
            self.aborted_step_start = t0
        return step
