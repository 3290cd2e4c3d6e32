"""Health checks over a window: HTTP status/body, golden predictions, p95 latency, Prometheus.

`count` samples `interval` seconds apart; the window fails when `failure_threshold` samples
fail, or p95 latency is over its bound, or the Prometheus query is out of range. Every probe's
result is kept for the release record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lepton_ci.core.config import ChecksConfig, GoldenCheck
from lepton_ci.core.errors import WatchError
from lepton_ci.deploy.releases import Probe

if TYPE_CHECKING:
    import requests


@dataclass
class Report:
    ok: bool
    probes: list[Probe] = field(default_factory=list)
    summary: str = ""


def _close(got: Any, want: Any, tol: float) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and _close(got[k], v, tol) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_close(g, w, tol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, int | float) and not isinstance(want, bool):
        return isinstance(got, int | float) and abs(float(got) - float(want)) <= tol
    return bool(got == want)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def run(
    cfg: ChecksConfig,
    base_url: str,
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    import requests

    http = session or requests.Session()
    probes: list[Probe] = []
    failed_samples = 0
    latencies: list[float] = []

    def call(
        method: str, path: str, body: Any = None
    ) -> tuple[requests.Response | None, float, str]:
        t0 = time.perf_counter()
        try:
            r = http.request(method, base_url + path, json=body, timeout=cfg.timeout)
            return r, (time.perf_counter() - t0) * 1000, ""
        except requests.RequestException as e:
            return None, (time.perf_counter() - t0) * 1000, type(e).__name__

    for i in range(cfg.count):
        sample_ok = True
        for h in cfg.http:
            r, ms, err = call("GET", h.path)
            ok = (
                r is not None
                and r.status_code == h.status
                and (h.body_contains is None or h.body_contains in r.text)
            )
            detail = err or (f"{r.status_code}" if r is not None else "")
            if r is not None and not ok and h.body_contains and h.body_contains not in r.text:
                detail += f", body lacks {h.body_contains!r}"
            probes.append(Probe(check=f"http {h.path}", ok=ok, detail=detail, latency_ms=ms))
            sample_ok &= ok
        for g in cfg.golden:
            ok, detail, ms = _golden(call, g)
            probes.append(Probe(check=f"golden {g.path}", ok=ok, detail=detail, latency_ms=ms))
            sample_ok &= ok
        if cfg.latency is not None:
            r, ms, err = call("GET", cfg.latency.path)
            if r is not None:
                latencies.append(ms)
        if not sample_ok:
            failed_samples += 1
            if failed_samples >= cfg.failure_threshold:
                break
        if i + 1 < cfg.count:
            sleep(cfg.interval)

    reasons = []
    if failed_samples >= cfg.failure_threshold:
        bad = next(p for p in probes if not p.ok)
        reasons.append(
            f"{failed_samples} failing sample(s) (threshold {cfg.failure_threshold})"
            f": {bad.check}: {bad.detail}"
        )
    if cfg.latency is not None:
        if not latencies:
            reasons.append(f"latency: {cfg.latency.path} never answered")
        else:
            q = p95(latencies)
            ok = q <= cfg.latency.p95_ms
            probes.append(
                Probe(
                    check=f"latency p95 {cfg.latency.path}",
                    ok=ok,
                    detail=f"{q:.1f} ms (bound {cfg.latency.p95_ms} ms)",
                    latency_ms=q,
                )
            )
            if not ok:
                reasons.append(f"p95 latency {q:.1f} ms over {cfg.latency.p95_ms} ms")
    if cfg.prometheus is not None:
        probe = _prometheus(http, cfg)
        probes.append(probe)
        if not probe.ok:
            reasons.append(f"prometheus: {probe.detail}")
    ok = not reasons
    n = sum(1 for p in probes if p.ok)
    summary = f"{n}/{len(probes)} probes passed" if ok else "; ".join(reasons)
    return Report(ok, probes, summary)


def _golden(call: Any, g: GoldenCheck) -> tuple[bool, str, float]:
    r, ms, err = call("POST", g.path, g.request)
    if r is None:
        return False, err, ms
    if r.status_code != 200:
        return False, f"status {r.status_code}", ms
    try:
        got = r.json()
    except ValueError:
        return False, "response is not JSON", ms
    if _close(got, g.expect, g.tolerance):
        return True, "as expected", ms
    shown = (
        {k: got.get(k) for k in g.expect}
        if isinstance(g.expect, dict) and isinstance(got, dict)
        else got
    )
    return False, f"expected {g.expect}, got {shown}", ms


def _prometheus(http: Any, cfg: ChecksConfig) -> Probe:
    from lepton_ci.core.prometheus import Prometheus

    pc = cfg.prometheus
    if pc is None:  # for the type checker; run() only calls this with a query configured
        return Probe(check="prometheus", ok=True)
    check = f"prometheus {pc.query}"
    try:
        # One try: the health window is the budget, and a failing probe reverts the release.
        samples = Prometheus(pc.url, timeout=cfg.timeout, retries=0, session=http).query(pc.query)
    except WatchError as e:  # unreachable, refused, or not a number: in Prometheus's words
        return Probe(check=check, ok=False, detail=e.message)
    if not samples:
        return Probe(check=check, ok=False, detail="no data: the query returned an empty result")
    out = [s.value for s in samples if not _within(s.value, pc.min, pc.max)]
    shown = ", ".join(f"{v:.6g}" for v in (out or [s.value for s in samples])[:5])
    bounds = " ".join(f"{k} {v:g}" for k, v in (("min", pc.min), ("max", pc.max)) if v is not None)
    if out:
        return Probe(check=check, ok=False, detail=f"value {shown} out of bounds ({bounds})")
    return Probe(check=check, ok=True, detail=f"value {shown}")


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (high is None or value <= high) and (low is None or value >= low)
