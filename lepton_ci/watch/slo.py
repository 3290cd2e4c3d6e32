"""Evaluating one SLO against Prometheus: a query within bounds, or class drift by PSI.

Each evaluation ends in one of four states. `breach` is the only one that can lead to an
action; `no-data` (no traffic yet, 0/0) and `error` (Prometheus down, a bad query, no reference
distribution) are reported as what they are and never count as a breach.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lepton_ci.core.config import SLO, DriftSLO
from lepton_ci.core.errors import WatchError
from lepton_ci.core.prometheus import Prometheus

Status = Literal["ok", "breach", "no-data", "error"]
EPSILON = 1e-4  # share given to a class seen on one side only, so PSI stays finite


@dataclass
class Evaluation:
    slo: str
    status: Status
    value: float | None = None
    bound: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        shown: float | str | None = value
        if value is not None and math.isinf(value):
            shown = "+Inf" if value > 0 else "-Inf"  # JSON has no infinity
        return {
            "slo": self.slo,
            "status": self.status,
            "value": shown,
            "bound": self.bound,
            "detail": self.detail,
        }

    def text(self) -> str:
        value = "—" if self.value is None else f"{self.value:.6g}"
        extra = f" ({one_line(self.detail)})" if self.detail else ""
        return f"{self.slo}: {self.status} {value} (bound {self.bound or '—'}){extra}"


def one_line(text: str) -> str:
    """`text` as one printable line: the detail carries label values and error text from
    Prometheus, and a newline in it would start a line such as `::error::` (a workflow command)
    on stdout; a bidi override (U+202E) would reorder what the terminal shows."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def psi(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """Population stability index of `live` against `reference` (both any non-negative weights)."""
    classes = sorted(set(reference) | set(live))
    ref_total = sum(reference.values())
    live_total = sum(live.values())
    if ref_total <= 0 or live_total <= 0:
        raise ValueError("both distributions need a positive total")
    out = 0.0
    for c in classes:
        e = max(reference.get(c, 0.0) / ref_total, EPSILON)
        a = max(live.get(c, 0.0) / live_total, EPSILON)
        out += (a - e) * math.log(a / e)
    return out


def reference_shares(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The evaluated distribution from a record's metrics: `<prefix>.<class>` -> share."""
    head = prefix + "."
    return {
        k[len(head) :]: v
        for k, v in metrics.items()
        if k.startswith(head) and math.isfinite(v) and v >= 0
    }


_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(?::[^\]]*)?\]")  # [5m], [1h:1m]
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A PromQL duration (`5m`, `1h30m`) in seconds."""
    return sum(int(n) * _UNIT[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


def lookback(slo: SLO) -> tuple[float, str]:
    """How far back the SLO's query reads (its longest range), in seconds and as written."""
    ranges = [slo.drift.window] if slo.drift is not None else _RANGE.findall(slo.query or "")
    return max(((seconds(r), r) for r in ranges), default=(0.0, ""))


def drift_query(d: DriftSLO) -> str:
    return f"sum by ({d.label}) (increase({d.metric}[{d.window}]))"


def evaluate(
    prom: Prometheus, slo: SLO, reference: Mapping[str, float] | None = None
) -> Evaluation:
    try:
        if slo.drift is not None:
            return _drift(prom, slo.name, slo.drift, reference)
        return _bounded(prom, slo)
    except WatchError as e:
        return Evaluation(slo.name, "error", detail=e.message)


def _bounded(prom: Prometheus, slo: SLO) -> Evaluation:
    bound = " ".join(
        part
        for part in (
            f">= {slo.min:g}" if slo.min is not None else "",
            f"<= {slo.max:g}" if slo.max is not None else "",
        )
        if part
    )
    samples = prom.query(str(slo.query))
    if not samples:
        return Evaluation(slo.name, "no-data", bound=bound, detail="the query returned no value")
    # With several series, the one furthest out of bounds speaks for the SLO.
    values = [s.value for s in samples]
    worst = max(values) if slo.max is not None else min(values)
    if slo.max is not None and slo.min is not None:
        worst = max(values, key=lambda v: max(v - slo.max, slo.min - v))  # type: ignore[operator]
    ok = (slo.max is None or worst <= slo.max) and (slo.min is None or worst >= slo.min)
    return Evaluation(slo.name, "ok" if ok else "breach", worst, bound)


def _drift(
    prom: Prometheus, name: str, d: DriftSLO, reference: Mapping[str, float] | None
) -> Evaluation:
    bound = f"PSI <= {d.max_psi:g}"
    if not reference or not sum(reference.values()) > 0:
        return Evaluation(
            name,
            "error",
            bound=bound,
            detail=f"the serving version's record has no positive `{d.reference_prefix}."
            f"<{d.label}>` metrics to compare with: make the evaluation write them",
        )
    samples = prom.query(drift_query(d))
    live = {s.labels.get(d.label, ""): s.value for s in samples if s.value > 0}
    total = sum(live.values())
    if total < d.min_predictions:
        return Evaluation(
            name,
            "no-data",
            total,
            bound,
            f"{total:.0f} predictions in {d.window}, fewer than {d.min_predictions} to judge",
        )
    value = psi(reference, live)
    if not math.isfinite(value):  # an infinite count: no distribution to judge, never a breach
        return Evaluation(name, "error", bound=bound, detail=f"live counts not finite: {live}")
    top = max(live, key=lambda c: live[c])
    detail = f"{total:.0f} predictions; most frequent {d.label} {top} ({live[top] / total:.0%})"
    return Evaluation(name, "ok" if value <= d.max_psi else "breach", value, bound, detail)
