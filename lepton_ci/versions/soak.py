"""Promotion that looks at what happened: `stages.<s>.requires: {stage, soak, no_breach,
min_requests}` judged from the required stage's deploy history.

Where the evidence comes from: a stage deploys to the environment of the same name (the tag
workflow deploys stage S to environment S), and that environment's revision history is the
record of what served there. A revision of the version served from `finished_at` (when its
deploy finished) until `ended_at` (when it was superseded, rolled back or failed by `watch`),
or until now while it serves. Its `breaches` are the SLOs `watch` acted on. Requests are
counted from Prometheus at promotion when this job knows one (`watch.requests` over each
interval served, evaluated at its end, so each window holds that revision's traffic only);
otherwise the counts `watch` kept on each revision (the same query over the time it had served
at its last evaluation) stand. The time served and the requests are added up over every
revision of the version; one breach on any of them refuses it for good: the version is the same
bytes, whatever served it.

The rule and the environment's settings (where its history lives) are read from the protected
ref, like every stage rule: a branch cannot point the check at a history it wrote itself.
A history that cannot be read is a refusal that says what to configure, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lepton_ci.core.config import Requires, requests_query
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError, RegistryError, WatchError
from lepton_ci.core.revisions import Breach, Revision
from lepton_ci.versions.protected import Policy, short

if TYPE_CHECKING:
    from lepton_ci.core.prometheus import Prometheus

Clock = Callable[[], datetime]
SERVED: tuple[str, ...] = ("superseded", "rolled-back")  # stopped serving, written before ended_at


class SoakRefused(RegistryError):
    """A promotion refused because the version has not yet done what its soak rule asks."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def span(seconds: float) -> str:
    """`20h 5m`, `27h 55m`, `45s`: a duration as a rule writes it (hours, as in `48h`)."""
    s = max(0, int(seconds))
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else ""]
    if not h:
        parts.append(f"{s}s" if s or not m else "")
    return " ".join(p for p in parts if p) or "0s"


@dataclass
class Evidence:
    """What one version did in one environment, from its revision history."""

    env: str
    version: str
    served_s: float = 0.0
    serving_since: datetime | None = None  # serves now, since then (its latest revision)
    requests: float = 0.0
    counted_at: str | None = None  # when `watch` last counted; None: never counted
    breaches: list[tuple[int, Breach]] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)  # when it served
    counted_by: str = "`watch`"  # who counted the requests
    count_note: str = ""  # why Prometheus was not asked, or failed, when it was meant to be

    def as_dict(self) -> dict[str, object]:
        return {
            "env": self.env,
            "version": self.version,
            "served_seconds": round(self.served_s),
            "serving": self.serving_since is not None,
            "requests": None if self.counted_at is None else round(self.requests),
            "requests_counted_at": self.counted_at,
            "breaches": [
                {"revision": n, "slo": b.slo, "at": b.at, "bound": b.bound}
                for n, b in self.breaches
            ],
            "revisions": self.revisions,
        }

    @property
    def breach_text(self) -> str:
        return ", ".join(f"{b.slo} (revision {n}, {b.at})" for n, b in self.breaches) or "none"


def evidence(revs: list[Revision], env: str, version: str, now: datetime) -> Evidence:
    out = Evidence(env, version)
    ordered = sorted(revs, key=lambda r: r.number)
    for i, r in enumerate(ordered):
        if r.version != version:
            continue
        out.breaches += [(r.number, b) for b in r.breaches]
        if r.requests is not None and math.isfinite(r.requests) and r.requests >= 0:
            out.requests += r.requests
            if out.counted_at is None or (r.requests_at or "") > out.counted_at:
                out.counted_at = r.requests_at or "an unrecorded time"
        start = _when(r.finished_at)
        if start is None or r.status == "pending":
            continue
        end: datetime | None
        if r.status == "deployed":
            end = now
            out.serving_since = start
        elif r.ended_at is not None:
            end = _when(r.ended_at)
        elif r.status in SERVED:
            # Written before revisions said when they stopped: it served at least until the
            # next deploy began (a lower bound, so a soak is never overstated).
            later = [_when(x.created_at) for x in ordered[i + 1 :]]
            end = next((t for t in later if t is not None), None)
        else:
            end = None  # a deploy that failed its checks never served
        if end is not None:
            out.revisions.append(r.number)
            out.intervals.append((start, min(end, now)))
            out.served_s += max(0.0, (min(end, now) - start).total_seconds())
    return out


def count_requests(
    prom: Prometheus, template: str, intervals: list[tuple[datetime, datetime]], now: datetime
) -> float:
    """The requests answered while the version served: the requests query over each interval
    it served, evaluated at the interval's end (so each window holds that revision's traffic
    only). Raises WatchError when Prometheus cannot answer."""
    total = 0.0
    for start, end in intervals:
        seconds = math.ceil((end - start).total_seconds())
        if seconds < 1:
            continue
        expr = template.replace("$window", f"{seconds}s")
        at = None if end >= now else end.timestamp()
        for x in prom.query(expr, at):
            # +Inf would meet any `min_requests`, a negative count hide others: neither is a
            # count of requests, so none of it is believed (watch's counts stand instead).
            if not math.isfinite(x.value) or x.value < 0:
                raise WatchError(
                    f"the requests query answered {x.value} over {start:%Y-%m-%dT%H:%M:%SZ}"
                    f"..{end:%Y-%m-%dT%H:%M:%SZ}, which is no count of requests",
                    hint="check `watch.requests`: it must count requests (e.g. "
                    "sum(increase(..._total[$window])))",
                )
            total += x.value
    return total


@dataclass
class Verdict:
    rule: Requires
    evidence: Evidence
    missing: list[str]
    pass_at: datetime | None  # when it can pass on time alone; None: already, or not by waiting
    how: str  # what else must happen

    @property
    def ok(self) -> bool:
        return not self.missing

    def text(self, version: str, stage: str, where: str) -> str:
        rule = self.rule
        ev = self.evidence
        facts = [f"served {span(ev.served_s)}" + (f" of {rule.soak}" if rule.soak else "")]
        facts[0] += f" in {rule.stage}"
        if rule.min_requests:
            facts.append(f"{ev.requests:.0f} of {rule.min_requests} requests")
        if rule.no_breach:
            facts.append(f"SLO breaches: {ev.breach_text}")
        head = (
            f"{version} has not yet met `stages.{stage}.requires` (on {where}): "
            + "; ".join(facts)
            + ". Missing: "
            + "; ".join(self.missing)
        )
        return head + (f". {self.how[:1].upper()}{self.how[1:]}" if self.how else "")


def judge(rule: Requires, ev: Evidence, now: datetime) -> Verdict:
    missing: list[str] = []
    how: list[str] = []
    pass_at: datetime | None = None
    breached = rule.no_breach and bool(ev.breaches)
    if breached:
        missing.append(
            f"no SLO breach: `watch` recorded {len(ev.breaches)} in {ev.env}: {ev.breach_text}"
        )
        how.append(
            "a version with a recorded breach never passes: fix it and register a new version"
        )
    need = rule.soak_seconds
    short_of = max(0.0, rule.min_requests - ev.requests)
    if ev.served_s < need:
        left = need - ev.served_s
        missing.append(f"{span(left)} more serving in {rule.stage} ({rule.soak} in all)")
        if ev.serving_since is not None:
            pass_at = now + timedelta(seconds=left)
            if not breached:
                more = f" and {short_of:.0f} more requests are counted" if short_of else ""
                how.append(f"can pass at {stamp(pass_at)} if no breach is recorded{more}")
        elif not breached:
            how.append(
                f"it does not serve in {ev.env} now: deploy it there (`lepton-ci deploy "
                f"{ev.env} --version {ev.version}`) to go on with its soak"
            )
    if short_of:
        if ev.counted_at is None:
            missing.append(
                f"{rule.min_requests} requests: none were counted in {ev.env}; `lepton-ci "
                f"watch {ev.env}` counts them each evaluation (`watch.requests`)"
            )
        else:
            missing.append(
                f"{rule.min_requests - ev.requests:.0f} more requests ({ev.requests:.0f} of "
                f"{rule.min_requests}, counted by {ev.counted_by} at {ev.counted_at})"
            )
        if ev.count_note:
            missing[-1] += f" ({ev.count_note})"
    return Verdict(rule, ev, missing, pass_at, "; ".join(how))


# -- reading the history ----------------------------------------------------------------------


# (protected policy, model, environment) -> that environment's revisions. The deploy layer
# has the one that reads a history where the policy says it lives
# (lepton_ci.deploy.history.reader(ctx)); the CLI hands it in, as a test hands in its own.
Reader = Callable[[Policy, str, str], list[Revision]]


def _no_reader(policy: Policy, model: str, env_name: str) -> list[Revision]:
    raise SoakRefused(
        f"the soak rule reads the deploy history of `{env_name}`, and this caller gave no way "
        "to read it; nothing is promoted",
        hint="from Python, pass `history=lepton_ci.deploy.history.reader(ctx)`",
    )


def check(
    ctx: Context,
    policy: Policy,
    model: str,
    version: str,
    stage: str,
    *,
    now: Clock = utcnow,
    read: Reader | None = None,
) -> Verdict | None:
    """Judge the soak rule of `stage`; None when it has none. Raises SoakRefused."""
    rule = policy.stages[stage].requires
    if rule is None or not rule.looks_at_history:
        return None
    revs = (read or _no_reader)(policy, model, rule.stage)
    t = now()
    ev = evidence(revs, rule.stage, version, t)
    if rule.min_requests:
        _count_now(ctx, policy, model, rule.stage, ev, t)
    verdict = judge(rule, ev, t)
    if not verdict.ok:
        raise SoakRefused(
            verdict.text(version, stage, policy.where),
            hint=f"see `lepton-ci history {rule.stage} --model {model}`; the rule is "
            f"`stages.{stage}.requires` on {short(policy.ref)}",
        )
    return verdict


def _count_now(
    ctx: Context, policy: Policy, model: str, env_name: str, ev: Evidence, now: datetime
) -> None:
    """Count the requests from Prometheus now, when this job knows one (LEPTON_PROMETHEUS_URL,
    or the environment's `watch.prometheus` on the protected ref): complete, where the counts
    `watch` kept on the revisions are only as fresh as its last evaluation that could write
    (a judge-only watch writes nothing). Otherwise, or when it cannot answer, those counts
    stand, and the refusal says why Prometheus was not used."""
    from lepton_ci.core.prometheus import Prometheus

    cfg = policy.config or ctx.cfg.config
    mcfg = cfg.models.get(model)
    env = mcfg.deploy.environments.get(env_name) if mcfg and mcfg.deploy else None
    watch = env.watch if env is not None else None
    url = ctx.env.get("LEPTON_PROMETHEUS_URL") or (watch.prometheus if watch else None)
    if not url:
        ev.count_note = (
            "to count them from Prometheus at promotion, set LEPTON_PROMETHEUS_URL "
            f"(the promote action's `prometheus-url`) or `watch.prometheus` of {env_name}"
        )
        return
    try:
        prom = Prometheus(url, timeout=watch.timeout if watch else 10.0)
        ctx.rt.mask(prom.password)
        counted = count_requests(prom, requests_query(model, watch), ev.intervals, now)
    except LeptonError as e:
        ev.count_note = f"Prometheus could not count them: {e.message}"
        return
    ev.requests, ev.counted_at = counted, stamp(now)
    ev.counted_by = f"Prometheus ({prom.shown})"
