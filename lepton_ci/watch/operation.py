"""`lepton-ci watch ENV`: judge what serves against its SLOs on live traffic, and act.

Every `interval` seconds each SLO of the environment is evaluated against Prometheus. An SLO
that breaches on `for` consecutive evaluations (one with `--once`) is recorded on the serving
revision (which SLO, value, bound, when); with `on_breach: rollback` the last healthy revision
is put back through the deployer's own revert (its own budget, waited for and checked) and the
bad one is marked failed. Prometheus being down, a refused query or no traffic is reported as
such and never acted on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lepton_ci.core import docs
from lepton_ci.core.config import WatchConfig, requests_query
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError, SLOBreached, WatchError
from lepton_ci.core.escape import md_cell
from lepton_ci.core.gha import Runtime
from lepton_ci.core.outputs import WatchOutputs
from lepton_ci.core.printer import echo, to_json
from lepton_ci.core.prometheus import Prometheus
from lepton_ci.core.revisions import Breach, Revision, now
from lepton_ci.deploy.deployer import Deployer
from lepton_ci.deploy.operations import deployer as make_deployer
from lepton_ci.deploy.operations import find_model_for_env
from lepton_ci.deploy.releases import current
from lepton_ci.versions import evidence
from lepton_ci.watch import slo as slo_mod
from lepton_ci.watch.issues import IssueKeeper

PROMETHEUS_ENV = "LEPTON_PROMETHEUS_URL"


@dataclass
class Round:
    """One evaluation of every SLO of an environment, and what was done about it."""

    env: str
    model: str
    number: int
    at: str
    revision: int
    version: str
    evaluations: list[slo_mod.Evaluation]
    breached: list[str] = field(default_factory=list)  # SLOs that reached `for`: acted on
    action: str = ""
    # requests the revision has answered since it began to serve (None: not counted, see note)
    requests: float | None = None
    requests_note: str = ""

    @property
    def status(self) -> str:
        if self.breached:
            return "breached"
        if any(e.status == "error" for e in self.evaluations):
            return "unknown"
        return "healthy"

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "model": self.model,
            "evaluation": self.number,
            "at": self.at,
            "revision": self.revision,
            "version": self.version,
            "status": self.status,
            "breached": self.breached,
            "action": self.action,
            "requests": self.requests,
            "slos": [e.as_dict() for e in self.evaluations],
        }

    def text(self) -> str:
        head = (
            f"{self.at} {self.env}: {self.model} {self.version} (revision {self.revision}) "
            f"evaluation {self.number}: {self.status}" + (f"; {self.action}" if self.action else "")
        )
        counted = (
            [f"  requests served: {self.requests:.0f}"]
            if self.requests is not None
            else [f"  requests served: not counted ({self.requests_note})"]
            if self.requests_note
            else []
        )
        return "\n".join([head, *(f"  {e.text()}" for e in self.evaluations), *counted])

    def markdown(self) -> str:
        """The evidence for a step summary or an issue; SLO names and details are escaped."""
        rows = [
            "| SLO | status | value | bound | detail |",
            "|---|---|---|---|---|",
            *(
                f"| {md_cell(e.slo)} | {e.status} | {md_cell(_shown(e.as_dict()['value']))} "
                f"| {md_cell(e.bound)} | {md_cell(slo_mod.one_line(e.detail))} |"
                for e in self.evaluations
            ),
        ]
        action = f"\n\n**Action:** {md_cell(self.action)}" if self.action else ""
        if self.requests is not None:
            action += f"\n\nRequests served by revision {self.revision}: {self.requests:.0f}"
        return (
            f"**{md_cell(self.model)} in {md_cell(self.env)}: {self.status}** "
            f"(version {md_cell(self.version)}, revision {self.revision}, {self.at})\n\n"
            + "\n".join(rows)
            + action
            + "\n"
        )


def _age(finished_at: str | None) -> float:
    """Seconds since a revision went live (infinite if unknown: judge it as before)."""
    try:
        when = datetime.fromisoformat(finished_at or "")
    except ValueError:
        return math.inf
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def _shown(value: object) -> object:
    """A value for the evidence table: 0 is a value (no errors at all), only None is none."""
    return "—" if value is None else value


class WatchOperation:
    """The SLO watcher of one model in one environment."""

    def __init__(
        self,
        ctx: Context,
        env_name: str,
        model: str | None = None,
        *,
        deployer: Deployer | None = None,
        prometheus: Prometheus | None = None,
        sleep: Callable[[float], None] = time.sleep,
        issues: IssueKeeper | None = None,
    ) -> None:
        self.ctx, self.env_name = ctx, env_name
        self.model = find_model_for_env(ctx, env_name, model)
        self.deployer = deployer or make_deployer(ctx, self.model, env_name)
        # stdout carries the rounds (JSON lines with --json); what the revert says goes aside.
        self.deployer.log = Runtime(ctx.env, stream=sys.stderr).notice
        cfg = self.deployer.env.watch
        if cfg is None:
            raise WatchError(
                f"environment `{env_name}` of {self.model} declares no SLOs to watch",
                hint=f"add `watch: {{slos: [...]}}` under deploy.environments.{env_name} "
                f"({docs.page('how-to/watch')})",
            )
        self.cfg: WatchConfig = cfg
        url = ctx.env.get(PROMETHEUS_ENV) or cfg.prometheus
        if not url:
            raise WatchError(
                f"no Prometheus to ask for `{env_name}`",
                hint=f"set `watch.prometheus: http://HOST:9090` or the env {PROMETHEUS_ENV}",
            )
        self.prometheus = prometheus or Prometheus(url, timeout=cfg.timeout)
        ctx.rt.mask(self.prometheus.password)  # a URL's password stays out of the logs
        self.sleep = sleep
        self.issues = issues
        self._references: dict[str, dict[str, float] | str] = {}

    # -- evaluating ------------------------------------------------------------------------

    def _serving(self) -> Revision:
        rev = current(self.deployer.history())
        if rev is None:
            raise WatchError(
                f"nothing serves in `{self.env_name}`: no deployed revision to watch",
                hint=f"deploy first: `lepton-ci deploy {self.env_name}`",
            )
        return rev

    def _reference(self, version: str, prefix: str) -> dict[str, float] | str:
        """The evaluated distribution from the version's record, or why there is none."""
        key = f"{version}\0{prefix}"
        if key not in self._references:
            try:
                rec = evidence.load(self.ctx, self.model, version)
            except LeptonError as e:
                self._references[key] = f"no record of {version} to compare with: {e.message}"
            else:
                shares = slo_mod.reference_shares(rec.metrics, prefix)
                self._references[key] = shares or (
                    f"the record of {version} has no `{prefix}.<class>` metrics: make the "
                    "evaluation write the share of each predicted class"
                )
        return self._references[key]

    def evaluate(self, number: int = 1) -> Round:
        rev = self._serving()
        evaluations = []
        self.prometheus.unreachable = None
        age = _age(rev.finished_at)
        for s in self.cfg.slos:
            down = self.prometheus.unreachable
            if down is not None:  # found down for an earlier SLO: no second round of retries
                detail = f"not asked: {down.message}"
                evaluations.append(slo_mod.Evaluation(s.name, "error", detail=detail))
                continue
            ref = None
            if s.drift is not None:
                found = self._reference(rev.version, s.drift.reference_prefix)
                if isinstance(found, str):
                    evaluations.append(slo_mod.Evaluation(s.name, "error", detail=found))
                    continue
                ref = found
            back, written = slo_mod.lookback(s)
            if age < back:  # the window still holds the traffic of what served before
                detail = (
                    f"revision {rev.number} has served {age:.0f} s, less than the {written} "
                    "the query reads: it would be judged by the release before it"
                )
                evaluations.append(slo_mod.Evaluation(s.name, "no-data", detail=detail))
                continue
            evaluations.append(slo_mod.evaluate(self.prometheus, s, ref))
        r = Round(self.env_name, self.model, number, now(), rev.number, rev.version, evaluations)
        r.requests, r.requests_note = self._count_requests(age)
        return r

    def requests_query(self, age: float) -> str:
        """The query for the requests a revision answered in its `age` seconds of serving."""
        return requests_query(self.model, self.cfg).replace("$window", f"{max(1, math.ceil(age))}s")

    def _count_requests(self, age: float) -> tuple[float | None, str]:
        """Requests served since the revision went live: the soak evidence `promote` reads.
        Never a reason to act: a count that cannot be made is said and left out."""
        if not math.isfinite(age):
            return None, "the revision does not say when it began to serve"
        down = self.prometheus.unreachable
        if down is not None:
            return None, f"not asked: {down.message}"
        try:
            samples = self.prometheus.query(self.requests_query(age))
        except LeptonError as e:
            return None, slo_mod.one_line(e.message)
        # no series: nothing was requested (the counter exists from the first request on)
        return sum(x.value for x in samples), ""

    # -- acting ------------------------------------------------------------------------------

    def _record(self, r: Round) -> None:
        """Keep the round's evidence on the revision: the requests it counted and the
        breaches acted on."""
        if r.requests is None and not r.breached:
            return
        store = self.deployer.store
        with store.lock(self.deployer.config.lock_timeout):
            rev = next((x for x in store.list() if x.number == r.revision), None)
            if rev is None:
                return
            if r.requests is not None:
                rev.requests, rev.requests_at = r.requests, r.at
            for e in r.evaluations:
                if e.slo in r.breached:
                    value = e.as_dict()["value"]
                    rev.breaches.append(
                        Breach(
                            slo=e.slo,
                            value=value,
                            bound=e.bound,
                            at=r.at,
                            action=self.cfg.on_breach,
                            detail=e.detail,
                        )
                    )
            store.save(rev)

    def _act(self, r: Round) -> None:
        which = ", ".join(r.breached)
        if self.cfg.on_breach == "alert":
            r.action = f"alert only: recorded the breach of {which} on revision {r.revision}"
            return
        reason = f"SLO breached after release: {which}"
        out = self.deployer.revert(r.revision, reason)
        back = out.revision
        r.action = (
            f"rolled back: revision {back.number} serves {back.version} again "
            f"(revision {r.revision} marked failed)"
        )

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self,
        *,
        once: bool = False,
        count: int | None = None,
        report: Callable[[Round], None] = lambda r: None,
        judge_only: bool = False,
    ) -> Round:
        """Evaluate until a breach is acted on (raises SLOBreached), `count` evaluations were
        made, or once. Each round goes to `report` as it is made. `judge_only` (with `once`):
        a breach is neither recorded nor reverted, nor put in the issue; it is left to a job
        that holds the environment's credentials (output `act`), which judges again and acts."""
        if judge_only and not once:
            raise WatchError(
                "--judge-only judges once and leaves the breach to a job that acts",
                hint="add --once",
            )
        need = 1 if once else self.cfg.for_
        streak = {s.name: 0 for s in self.cfg.slos}
        number = 0
        while True:
            number += 1
            r = self.evaluate(number)
            for e in r.evaluations:
                streak[e.slo] = streak[e.slo] + 1 if e.status == "breach" else 0
            r.breached = [e.slo for e in r.evaluations if streak[e.slo] >= need]
            if r.breached and judge_only:
                return self._leave_to_the_actor(r, report)
            failure: LeptonError | None = None
            try:
                if not judge_only:  # a judge writes nothing, the request count included
                    self._record(r)
                if r.breached:
                    self._act(r)
            except LeptonError as e:
                if r.breached:
                    r.action = f"could not act on the breach: {e.message}"
                    failure = e
                else:  # only the request count was lost: the next round counts again
                    self.deployer.log(f"could not record the request count: {e.message}")
            report(r)
            if once or r.breached:
                self._step_outputs(r, self._sync_issue(r))
            if failure is not None:
                raise failure
            if r.breached:
                raise SLOBreached(
                    f"{self.env_name}: SLO breached by {r.version} (revision {r.revision}): "
                    + "; ".join(e.text() for e in r.evaluations if e.slo in r.breached)
                    + f". {r.action[:1].upper()}{r.action[1:]}.",
                    hint=f"see `lepton-ci history {self.env_name} --json` for the evidence",
                )
            if once and r.status == "unknown":
                raise WatchError(
                    f"{self.env_name}: could not judge every SLO, so nothing was done: "
                    + "; ".join(e.text() for e in r.evaluations if e.status == "error"),
                    hint="this is not a breach; fix Prometheus or the query and watch again",
                )
            if once or (count is not None and number >= count):
                return r
            self.sleep(self.cfg.interval)

    def _leave_to_the_actor(self, r: Round, report: Callable[[Round], None]) -> Round:
        which = ", ".join(r.breached)
        r.action = (
            f"judged only: the breach of {which} is left to the job that acts "
            f"({self.cfg.on_breach}), which judges again"
        )
        report(r)
        self.ctx.rt.warning(
            f"{self.env_name}: SLO breached by {r.version} (revision {r.revision}): "
            + "; ".join(e.text() for e in r.evaluations if e.slo in r.breached)
            + f"; {r.action}",
            title="lepton-ci watch",
        )
        self._step_outputs(r, "", act=True)
        return r

    def _sync_issue(self, r: Round) -> str:
        """The environment's issue follows the round; failing to update it hides no breach."""
        if self.issues is None:
            return ""
        # Healthy only for lack of data (no traffic, e.g. at night) is no reason to close it.
        judged = r.status != "healthy" or any(e.status == "ok" for e in r.evaluations)
        try:
            return self.issues.sync(r.model, r.env, r.status if judged else "unknown", r.markdown())
        except LeptonError as e:
            self.ctx.rt.warning(f"could not update the watch issue: {e.message}")
            return ""

    def _step_outputs(self, r: Round, issue: str, *, act: bool = False) -> None:
        rt = self.ctx.rt
        serving = current(self.deployer.history())
        WatchOutputs(
            status=r.status,
            breached=",".join(r.breached),
            action=r.action,
            serving_version=serving.version if serving else "",
            evidence=r.markdown(),
            issue=issue,
            act=str(act).lower(),
        ).write(rt)
        rt.summary(r.markdown())


@dataclass(frozen=True)
class WatchRequest:
    env: str
    model: str | None = None
    once: bool = False
    as_json: bool = False
    issue: bool = False
    judge_only: bool = False


def watch(ctx: Context, req: WatchRequest, out: Callable[[str], None] = echo) -> int:
    """`lepton-ci watch`: the rounds are printed as they are made (a JSON line each, or text)."""
    issues = IssueKeeper.from_env(ctx.env, ctx.rt) if req.issue else None
    op = WatchOperation(ctx, req.env, req.model, issues=issues)
    op.run(
        once=req.once,
        report=lambda r: out(to_json(r, indent=None) if req.as_json else r.text()),
        judge_only=req.judge_only,
    )
    return 0
