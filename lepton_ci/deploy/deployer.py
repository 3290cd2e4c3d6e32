"""`deploy`, `rollback`: apply a release, wait, check its health, and revert by itself.

Every step is recorded as a revision. A failed rollout or check marks the new revision failed
and applies the last healthy revision again as a NEW revision ("rollback to N") under its own
time budget; with no previous revision the release is removed. One deploy at a time per
environment. Ctrl-C or SIGTERM mid-way is repaired at once, before the command exits: what
served before serves again (or the new revision, if it had finished), and no revision stays
pending. A revision left pending by a killed job (SIGKILL) is repaired by the next command.

A target that can stage (podman behind its splitter) plays the new revision beside the serving
one; it is checked on its own address and given the requests only once healthy, so a failed
release never served. With `rollout.strategy: canary`, the new revision first serves each
step's share beside the serving one (lepton_ci.rollout.canary judges every step); an abort
takes it away and the serving revision never stopped serving everything else.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from lepton_ci.core.config import DeployConfig, DeployEnvironment
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.interrupt import Terminated, deferred, signum_of
from lepton_ci.core.shadows import ShadowResult
from lepton_ci.deploy import health, manifests
from lepton_ci.deploy.contract import RolloutFailed, Staging, Store, Target, Tracks
from lepton_ci.deploy.releases import (
    HEALTHY,
    DeployError,
    Revision,
    current,
    next_number,
    now,
)
from lepton_ci.rollout.canary import Canary, SloResult, Step

# The watch SLOs per revision: (candidate's revision label, serving one's) -> each SLO judged.
RevisionJudge = Callable[[str, str], list[SloResult]]


@dataclass
class DeployOutcome:
    revision: Revision
    reverted_to: Revision | None = None
    removed: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Deployer:
    """One environment of one model, on the target and store handed in."""

    def __init__(
        self,
        model: str,
        env_name: str,
        deploy: DeployConfig,
        root: Path,
        *,
        target: Target,
        store: Store,
        checker: Callable[..., health.Report] = health.run,
        log: Callable[[str], None] = print,
        judge: RevisionJudge | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if env_name not in deploy.environments:
            raise DeployError(
                f"no deploy environment `{env_name}`; declared: {', '.join(deploy.environments)}",
                hint="add it under `deploy.environments` in lepton.yaml",
            )
        self.model, self.env_name, self.config, self.root = model, env_name, deploy, root
        self.env: DeployEnvironment = deploy.environments[env_name]
        self.store, self.target = store, target
        self.checker = checker
        self.log = log
        self.judge, self.sleep, self.clock = judge, sleep, clock
        self.name = manifests.dns_name(model, env_name)

    # -- building blocks -----------------------------------------------------------------

    def render(self, release: manifests.Release) -> str:
        return manifests.render(self.env_name, self.env, self.config, release, self.root)

    def _roll_out(self, rev: Revision, budget: float) -> tuple[bool, str, float]:
        """Apply, wait, check, and (on a staging target) promote. Returns (healthy, reason,
        seconds)."""
        t0 = time.monotonic()
        staging = self.target if isinstance(self.target, Staging) else None
        url = self.env.check_url()
        try:
            skipped = self.target.apply(self.name, rev.manifests)
            if skipped:
                self.log(f"podman target skips cluster-only objects: {', '.join(skipped)}")
            url = (staging.staged_url(self.name) if staging else None) or url
            self.target.wait(rev.manifests, budget, url + self.env.readiness_path)
            report = self.checker(self.env.checks, url)
            rev.probes = report.probes
            if not report.ok:
                if staging:
                    staging.discard(self.name)
                return False, f"health check failed: {report.summary}", time.monotonic() - t0
            if staging:
                staging.promote(self.name)
        except RolloutFailed as e:
            if staging:
                staging.discard(self.name)
            return False, f"rollout failed: {e.message}", time.monotonic() - t0
        return True, report.summary, time.monotonic() - t0

    def _finish(self, rev: Revision, status: str, reason: str) -> None:
        rev.status = status  # type: ignore[assignment]
        rev.reason = reason
        rev.finished_at = now()
        self.store.save(rev)

    def _supersede(
        self, old: Revision | None, status: str = "superseded", ended: str | None = None
    ) -> None:
        if old is not None and old.status == "deployed":
            old.status = status  # type: ignore[assignment]
            old.ended_at = ended or now()
            self.store.save(old)

    def _restore(
        self, good: Revision, description: str, budget: float, outcome: DeployOutcome
    ) -> Revision:
        revs = self.store.list()
        again = good.model_copy(
            update={
                "number": next_number(revs),
                "status": "pending",
                "description": description,
                "reason": "",
                "rollback_of": good.number,
                "created_at": now(),
                "finished_at": None,
                "ended_at": None,
                "probes": [],
                # the SLOs it breaches and the requests it answers are its own
                "breaches": [],
                "requests": None,
                "requests_at": None,
            }
        )
        self.store.save(again)
        ok, why, seconds = self._roll_out(again, budget)
        outcome.timings["revert_s"] = seconds
        if not ok:
            self._finish(again, "failed", why)
            raise DeployError(
                f"{self.env_name}: reverting to revision {good.number} ({good.version}) also "
                f"failed: {why}. Nothing healthy is serving.",
                hint=f"inspect with `lepton-ci history {self.env_name}` and the target's logs",
            )
        self._finish(again, "deployed", why)
        return again

    def _remove(self, outcome: DeployOutcome) -> None:
        self.target.remove(self.name)
        outcome.removed = True

    def repair(self, outcome: DeployOutcome) -> Revision | None:
        """A pending revision means a job died mid-way: fail it and restore the last good.

        Returns the revision that restored it, if one was made."""
        revs = self.store.list()
        pending = [r for r in revs if r.status == "pending"]
        if not pending:
            return None
        if isinstance(self.target, Tracks):
            try:  # a canary left serving a share: every request to the serving revision
                self.target.remove_canary(self.name)
            except RolloutFailed as e:
                self.log(f"repair: could not take the canary away: {e.message}")
        for r in pending:
            self._finish(r, "failed", "interrupted: the deploying job stopped before it finished")
        good = current(self.store.list()) or next(
            (r for r in reversed(revs) if r.status in HEALTHY), None
        )
        if good is None:
            self.log(
                f"repair: revision {pending[-1].number} was interrupted and nothing "
                "healthy came before it; removing it"
            )
            self._remove(outcome)
            return None
        self.log(
            f"repair: revision {pending[-1].number} was interrupted; restoring revision "
            f"{good.number} ({good.version})"
        )
        self._supersede(current(self.store.list()))
        restored = self._restore(
            good, f"rollback to {good.number} (repair)", self.env.rollback_timeout, outcome
        )
        outcome.notes.append(f"repaired: restored revision {good.number} as {restored.number}")
        return restored

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The environment's lock; an interruption inside it is repaired before it is raised,
        under deferred signals, so a second Ctrl-C cannot cut the repair in half."""
        wait = self.config.lock_timeout

        def waiting(holder: str) -> None:
            self.log(
                f"{self.env_name}: another deploy or rollback of this environment is running "
                f"({holder}); waiting up to {wait:.0f} s for it (`deploy.lock_timeout`)"
            )

        with self.store.lock(wait, waiting):
            try:
                yield
            except (KeyboardInterrupt, Terminated) as stop:
                with deferred():
                    self.log(f"{self.env_name}: interrupted ({_name(stop)}); repairing")
                    try:
                        self.repair(DeployOutcome(revision=None))  # type: ignore[arg-type]
                    except LeptonError as e:
                        self.log(f"{self.env_name}: the repair after the interruption failed: {e}")
                raise

    def new_revision(self, release: manifests.Release, text: str, description: str) -> Revision:
        """A pending revision of `release` (numbered by it), its rendered manifests `text`."""
        return Revision(
            number=release.revision,
            env=self.env_name,
            model=self.model,
            version=release.version,
            image=release.image,
            record_digest=release.record_digest,
            manifests=text,
            who=release.who,
            run_url=release.run_url,
            description=description,
            created_at=now(),
        )

    # -- operations ----------------------------------------------------------------------

    def deploy(self, release: manifests.Release, *, dry_run: bool = False) -> DeployOutcome:
        with self._locked():
            outcome = DeployOutcome(revision=None)  # type: ignore[arg-type]
            if not dry_run:
                self.repair(outcome)
            revs = self.store.list()
            number = next_number(revs)
            release = manifests.Release(**{**release.__dict__, "revision": number})
            rev = self.new_revision(release, self.render(release), f"deploy {release.version}")
            outcome.revision = rev
            if dry_run:
                return outcome
            previous = current(revs)
            self.store.save(rev)  # pending: a killed job leaves this for repair
            if self.env.rollout.strategy == "canary":
                if previous is not None and isinstance(self.target, Tracks):
                    rev.strategy = "canary"
                    return self._canary(rev, release, previous, self.target, outcome)
                why = (
                    "nothing serves yet to compare with"
                    if previous is None
                    else "the target cannot run two revisions side by side"
                )
                outcome.notes.append(f"canary skipped ({why}): deployed all at once")
            ok, why, seconds = self._roll_out(rev, self.env.rollout_timeout)
            outcome.timings["rollout_s"] = seconds
            if ok:
                self._supersede(previous)
                self._finish(rev, "deployed", why)
                return outcome
            self._finish(rev, "failed", why)
            t_fail = time.monotonic()
            if previous is None:
                if self.env.on_first_failure == "scale-to-zero":
                    self.target.scale_to_zero(self.name)
                    done = "scaled to zero"
                else:
                    self._remove(outcome)
                    done = "removed"
                raise DeployError(
                    f"{self.env_name}: revision {number} ({release.version}) failed: {why}. "
                    f"There was no previous revision, so it was {done}; nothing serves.",
                    hint="fix the release and deploy again",
                )
            self.log(f"{why}; reverting to revision {previous.number} ({previous.version})")
            restored = self._restore(
                previous, f"rollback to {previous.number}", self.env.rollback_timeout, outcome
            )
            # it stopped serving when the failed revision began to replace it
            self._supersede(previous, ended=rev.created_at)
            outcome.timings["verdict_to_healthy_s"] = time.monotonic() - t_fail
            outcome.reverted_to = restored
            raise DeployFailed(
                outcome,
                (
                    f"{self.env_name}: revision {number} ({release.version}) failed: {why}. "
                    f"Reverted automatically: revision {restored.number} serves "
                    f"{previous.version} again ({restored.reason})."
                ),
            )

    def shadow(self, release: manifests.Release) -> ShadowResult:
        """The shadow rollout of `release` (deploy/shadowing.py), under this environment's lock:
        the candidate beside the serving revision on mirrored requests, never serving."""
        from lepton_ci.deploy import shadowing

        with self._locked():
            self.repair(DeployOutcome(revision=None))  # type: ignore[arg-type]
            return shadowing.run(self, release)

    def _canary(
        self,
        rev: Revision,
        release: manifests.Release,
        previous: Revision,
        tracks: Tracks,
        outcome: DeployOutcome,
    ) -> DeployOutcome:
        """The candidate beside the serving revision, step by step; then the stable track
        takes it, or it goes away and the serving revision never stopped serving."""
        cfg = self.env.rollout
        candidate = self.render(manifests.Release(**{**release.__dict__, "track": "canary"}))
        t0 = self.clock()
        try:
            skipped = tracks.apply_canary(self.name, candidate)
            if skipped:
                self.log(f"podman target skips cluster-only objects: {', '.join(skipped)}")
            url = tracks.canary_url(self.name) or self.env.check_url()
            self.target.wait(candidate, self.env.rollout_timeout, url + self.env.readiness_path)
        except RolloutFailed as e:
            return self._abort(rev, previous, tracks, outcome, f"canary failed: {e.message}", None)
        outcome.timings["canary_ready_s"] = self.clock() - t0

        def check(base: str) -> tuple[bool, str]:
            report = self.checker(self.env.checks, base)
            rev.probes = report.probes
            return report.ok, report.summary

        judge = None
        if self.judge is not None:
            ours, theirs = _revision_label(rev), _revision_label(previous)
            judge = lambda: self.judge(ours, theirs)  # noqa: E731 - bound to this deploy

        def record(step: Step) -> None:
            rev.steps = [*rev.steps, step]
            self.store.save(rev)  # still pending: a repair keeps the steps that ran

        loop = Canary(
            tracks,
            self.name,
            cfg.steps,
            cfg.interval,
            check,
            judge,
            sleep=self.sleep,
            clock=self.clock,
            log=self.log,
            on_step=record,
        )
        try:
            passed = loop.run()
        except RolloutFailed as e:  # a step's weight could not be set (nginx would not reload)
            rev.steps = loop.results
            weight = cfg.steps[len(loop.results)]
            why = f"canary aborted: could not set the canary's weight to {weight}%: {e.message}"
            # the previous step's weight may still be in effect: stable takes it all first
            return self._abort(rev, previous, tracks, outcome, why, self.clock())
        rev.steps = loop.results
        self.store.save(rev)
        if not passed:
            step = loop.results[-1]
            why = f"canary aborted at step {step.effective}%: {step.reason}"
            return self._abort(rev, previous, tracks, outcome, why, loop.aborted_step_start)
        # Every request goes to the canary now: the stable track takes the new revision (on
        # podman beside the old stable, checked, then swapped in), and the canary goes away.
        ok, why, seconds = self._roll_out(rev, self.env.rollout_timeout)
        outcome.timings["rollout_s"] = seconds
        if not ok:
            return self._abort(rev, previous, tracks, outcome, f"promotion failed: {why}", None)
        tracks.remove_canary(self.name)
        self._supersede(previous)
        self._finish(rev, "deployed", f"canary {'/'.join(map(str, cfg.steps))}% passed; {why}")
        return outcome

    def _abort(
        self,
        rev: Revision,
        previous: Revision,
        tracks: Tracks,
        outcome: DeployOutcome,
        why: str,
        since: float | None,
    ) -> NoReturn:
        if since is not None:  # every request to the serving revision first
            try:
                tracks.set_weight(self.name, 0)
                outcome.timings["step_start_to_stable_s"] = self.clock() - since
            except RolloutFailed as e:  # remove_canary below tries again, then removes it
                self.log(f"{self.env_name}: could not set the canary's weight to 0: {e.message}")
        try:
            tracks.remove_canary(self.name)
        except RolloutFailed as e:
            self._finish(rev, "failed", why)
            raise DeployError(
                f"{self.env_name}: revision {rev.number} ({rev.version}) failed: {why}; taking "
                f"the canary away failed too: {e.message}",
                hint="the next `lepton-ci deploy` replaces the canary; inspect the splitter's "
                "error log in the deploy state dir",
            ) from None
        served = tracks.served(self.name)
        self._finish(rev, "failed", why)
        outcome.reverted_to = previous
        share = ""
        if served and sum(served.values()):
            share = (
                f" Since it started, the canary answered {served.get('canary', 0)} of the "
                f"{sum(served.values())} requests the splitter took."
            )
        raise DeployFailed(
            outcome,
            f"{self.env_name}: revision {rev.number} ({rev.version}) failed: {why}. Revision "
            f"{previous.number} ({previous.version}) serves every request again.{share}",
        )

    def rollback(self, to: int | None = None) -> DeployOutcome:
        with self._locked():
            outcome = DeployOutcome(revision=None)  # type: ignore[arg-type]
            repaired = self.repair(outcome)
            if repaired is not None and to is None:
                outcome.revision = repaired  # the interrupted release was already undone
                return outcome
            revs = self.store.list()
            now_serving = current(revs)
            if to is not None:
                target = next((r for r in revs if r.number == to and r.status in HEALTHY), None)
                if target is None:
                    raise DeployError(
                        f"{self.env_name}: revision {to} is not a healthy revision to roll back to",
                        hint=f"pick one marked deployed or superseded in `lepton-ci history "
                        f"{self.env_name}`",
                    )
            else:
                target = self._previous_healthy(revs, now_serving)
            self._supersede(now_serving, "rolled-back")
            outcome.revision = self._restore(
                target, f"rollback to {target.number}", self.env.rollout_timeout, outcome
            )
            return outcome

    def revert(self, serving: int, reason: str) -> DeployOutcome:
        """Revision `serving` went bad after its health window (a watched SLO): mark it failed
        and put the previous healthy revision back the way a failed deploy is reverted, under
        the rollback budget, waited for and checked."""
        with self._locked():
            outcome = DeployOutcome(revision=None)  # type: ignore[arg-type]
            revs = self.store.list()
            bad = current(revs)
            if bad is None or bad.number != serving:
                now_serving = f"revision {bad.number}" if bad else "nothing"
                raise DeployError(
                    f"{self.env_name}: revision {serving} no longer serves ({now_serving} does); "
                    "not reverting a release that changed while it was judged",
                    hint=f"watch again: `lepton-ci watch {self.env_name} --once`",
                )
            good = self._previous_healthy(revs, bad)
            # finished_at stays when it began to serve: its soak is evidence too
            bad.status, bad.reason, bad.ended_at = "failed", reason, now()
            self.store.save(bad)
            t0 = time.monotonic()
            outcome.revision = self._restore(
                good, f"rollback to {good.number} (watch)", self.env.rollback_timeout, outcome
            )
            outcome.reverted_to = outcome.revision
            outcome.timings["verdict_to_healthy_s"] = time.monotonic() - t0
            return outcome

    def _previous_healthy(self, revs: list[Revision], now_serving: Revision | None) -> Revision:
        """The newest healthy revision before the current one that serves another image."""
        serving = now_serving.image if now_serving else None
        older = [
            r
            for r in revs
            if r.status in HEALTHY
            and r.image != serving
            and (now_serving is None or r.number < now_serving.number)
        ]
        if not older:
            raise DeployError(f"{self.env_name}: no earlier healthy revision")
        return older[-1]

    def history(self) -> list[Revision]:
        return self.store.list()


def _revision_label(rev: Revision) -> str:
    """The revision label its pods carry (a rollback's pods carry the restored revision's)."""
    for obj in manifests.objects(rev.manifests):
        spec = obj.get("spec") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if f"{manifests.PREFIX}/revision" in labels:
            return str(labels[f"{manifests.PREFIX}/revision"])
    return str(rev.number)


def _name(stop: BaseException) -> str:
    return signal.Signals(signum_of(stop)).name


class DeployFailed(DeployError):
    """The new release failed and the previous one was put back."""

    def __init__(self, outcome: DeployOutcome, message: str) -> None:
        env = outcome.revision.env if outcome.revision else "ENV"
        super().__init__(message, hint=f"see the failing probes in `lepton-ci history {env}`")
        self.outcome = outcome
