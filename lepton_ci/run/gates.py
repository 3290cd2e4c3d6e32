"""Quality gates: each metric against its bounds and against the baseline."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lepton_ci.core.record import GateResult

if TYPE_CHECKING:  # at run time only when a metric has no gate: `show` need not build config
    from lepton_ci.core.config import Gate


@functools.cache
def _informational() -> Gate:
    from lepton_ci.core.config import Gate

    return Gate(informational=True)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def evaluate_metric(
    name: str, candidate: float | None, baseline: float | None, gate: Gate | None
) -> GateResult:
    g = gate or _informational()  # a metric without a declared gate is shown, never judged
    reasons: list[str] = []
    failed = False
    delta = delta_pct = None
    if candidate is None:
        status = "removed" if baseline is not None and gate is None else "missing"
        if gate is not None and not g.informational:
            failed = True
            reasons.append("metric is missing from the metrics files")
        return GateResult(
            metric=name,
            candidate=None,
            baseline=baseline,
            direction=g.direction,
            status=status,
            verdict="fail" if failed else "info",
            reasons=reasons,
            key=g.key,
        )
    if g.min is not None and candidate < g.min:
        failed = True
        reasons.append(f"{_fmt(candidate)} is below the minimum {_fmt(g.min)}")
    if g.max is not None and candidate > g.max:
        failed = True
        reasons.append(f"{_fmt(candidate)} is above the maximum {_fmt(g.max)}")
    if baseline is None:
        status = "new"
    else:
        delta = candidate - baseline
        delta_pct = (delta / abs(baseline) * 100.0) if baseline != 0 else None
        # Positive `gain` is always better, whichever the direction.
        gain = delta if g.direction == "higher" else -delta
        if abs(delta) <= g.noise:
            status = "unchanged"
        elif gain > 0:
            status = "improved"
        else:
            status = "regressed"
            loss = -gain
            if g.max_regression is not None and loss > g.max_regression:
                failed = True
                reasons.append(
                    f"regressed by {_fmt(loss)}, more than the allowed {_fmt(g.max_regression)}"
                )
            if g.max_regression_pct is not None:
                loss_pct = loss / abs(baseline) * 100.0 if baseline != 0 else float("inf")
                if loss_pct > g.max_regression_pct:
                    failed = True
                    reasons.append(
                        f"regressed by {loss_pct:.3g}%, more than the allowed "
                        f"{_fmt(g.max_regression_pct)}%"
                    )
    if g.informational:
        verdict = "info"
        reasons = [f"(informational) {r}" for r in reasons]
    else:
        verdict = "fail" if failed else "pass"
    return GateResult(
        metric=name,
        candidate=candidate,
        baseline=baseline,
        delta=delta,
        delta_pct=delta_pct,
        direction=g.direction,
        status=status,
        verdict=verdict,
        reasons=reasons,
        key=g.key,
    )


def evaluate(
    candidate: dict[str, float],
    baseline: dict[str, float] | None,
    gates: dict[str, Gate],
) -> list[GateResult]:
    base = baseline or {}
    names = list(dict.fromkeys([*gates, *sorted(candidate), *sorted(base)]))
    return [evaluate_metric(n, candidate.get(n), base.get(n), gates.get(n)) for n in names]


def verdict(results: list[GateResult]) -> str:
    return "fail" if any(r.verdict == "fail" for r in results) else "pass"


@dataclass(frozen=True)
class ParamChange:
    name: str
    baseline: Any
    candidate: Any
    status: str  # added, removed, changed


def diff_params(candidate: dict[str, Any], baseline: dict[str, Any] | None) -> list[ParamChange]:
    if baseline is None:
        return []
    out = []
    for k in sorted(set(candidate) | set(baseline)):
        if k not in baseline:
            out.append(ParamChange(k, None, candidate[k], "added"))
        elif k not in candidate:
            out.append(ParamChange(k, baseline[k], None, "removed"))
        elif candidate[k] != baseline[k]:
            out.append(ParamChange(k, baseline[k], candidate[k], "changed"))
    return out
