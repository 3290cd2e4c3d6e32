"""`deploy --shadow` and the shadow gate: what a shadow rollout keeps, and the deploy it allows.

A shadow rollout (rollout/shadow.py runs it on the target) is recorded twice:
- in the environment's history, as a revision that never serves: `shadowed` when it passed,
  `failed` when it did not (`lepton-ci history ENV` lists it with its reason);
- in git, under the record's digest (core/shadows.py), pushed to `origin`: the gate reads it
  there, so a later deploy on another runner finds it, and so do the PR comment and the site.
Under `rollout: {strategy: shadow}` a version replaces what serves in an environment only after
a shadow rollout of that version (the same record digest) passed there. The first release of
an environment has nothing to be compared with, so the gate applies once a revision serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from lepton_ci.core import docs, shadows
from lepton_ci.core.config import DeployConfig, DeployEnvironment
from lepton_ci.core.context import Context
from lepton_ci.core.escape import md_cell
from lepton_ci.core.outputs import DeployOutputs
from lepton_ci.core.shadows import ShadowError, ShadowResult
from lepton_ci.deploy.contract import Store
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import Revision, current, next_number, now
from lepton_ci.rollout import shadow


class Environment(Protocol):
    """What of the Deployer a shadow rollout uses (the Deployer, without importing it)."""

    model: str
    env_name: str
    name: str
    env: DeployEnvironment
    config: DeployConfig
    store: Store
    log: Callable[[str], None]

    @property
    def target(self) -> object: ...  # a shadow needs one that `Mirrors`; checked at run

    def render(self, release: Release) -> str: ...

    def new_revision(self, release: Release, text: str, description: str) -> Revision: ...


def run(d: Environment, release: Release) -> ShadowResult:
    """The shadow rollout of `release` in `d`'s environment, its lock held by the caller
    (`Deployer.shadow`). The revision it adds is `shadowed` when it passed, `failed` when it
    did not or stopped; the serving revision is untouched either way."""
    target = d.target
    if not isinstance(target, shadow.Mirrors):
        raise ShadowError(
            f"{d.env_name}: the {type(target).__name__} cannot mirror requests to lepton-ci's "
            "comparator, so a shadow rollout cannot compare answers there",
            hint="run the shadow in an environment on the podman target (its splitter mirrors "
            f"to the comparator), or use `rollout: {{strategy: canary}}`; see "
            f"{docs.page('how-to/shadow-rollouts', 'kubernetes')}",
        )
    revs = d.store.list()
    serving = current(revs)
    if serving is None:
        raise ShadowError(
            f"{d.env_name}: nothing serves, so there is nothing to compare {release.version} with",
            hint=f"deploy a first version (`lepton-ci deploy {d.env_name}`): the shadow gate "
            "applies once a revision serves",
        )
    number = next_number(revs)
    release = replace(release, revision=number, track="canary")
    text = d.render(release)
    rev = d.new_revision(release, text, f"shadow {release.version} beside {serving.version}")
    d.store.save(rev)  # pending: a killed job leaves it for the repair
    started_at, t0 = now(), time.monotonic()
    try:
        seen = shadow.observe(target, d.name, text, d.env, log=d.log)
    except BaseException as e:
        why = e.message if isinstance(e, ShadowError) else type(e).__name__
        _finish(d, rev, "failed", f"shadow stopped: {why}")
        raise
    verdict = shadow.judge(seen.tally, d.env, finished=seen.finished)
    result = shadow.result_of(
        seen.tally,
        d.env,
        model=release.model,
        env_name=d.env_name,
        version=release.version,
        record_digest=release.record_digest,
        image=release.image,
        serving_version=serving.version,
        verdict=verdict,
        seconds=time.monotonic() - t0,
        started_at=started_at,
        finished_at=now(),
        revision=number,
        who=release.who,
        run_url=release.run_url,
    )
    _finish(d, rev, "shadowed" if result.passed else "failed", f"shadow: {result.summary()}")
    return result


def _finish(d: Environment, rev: Revision, status: str, reason: str) -> None:
    rev.status = status  # type: ignore[assignment]
    rev.reason = reason
    rev.finished_at = now()
    d.store.save(rev)


class Shadows(Environment, Protocol):
    def shadow(self, release: Release) -> ShadowResult: ...


@dataclass
class Shadowed:
    """A shadow rollout that ran to its verdict (pass or fail); where it was kept."""

    result: ShadowResult
    ref: str
    pushed: str | None  # why it was not pushed, None when it was

    def text(self) -> str:
        r = self.result
        mark = "passed" if r.passed else "FAILED"
        return (
            f"{r.env}: shadow of {r.version} beside {r.serving_version} {mark}: {r.reason} "
            f"({r.summary()}); kept in {self.ref}"
        )


def _command(d: Environment, rel: Release) -> str:
    return f"lepton-ci deploy {d.env_name} --model {d.model} --version {rel.version} --shadow"


def run_and_keep(ctx: Context, d: Shadows, rel: Release) -> Shadowed:
    """Run the shadow, keep the result in git (pushed to `origin` when there is one), write
    the step's outputs and summary. A failed comparison is an error after it is kept."""
    result = d.shadow(rel)
    shadows.fetch(ctx.git, shadows.ref_of(rel.record_digest).removeprefix(shadows.PREFIX))
    ref = shadows.write(ctx.git, result)
    why = shadows.push(ctx.git, rel.record_digest)
    if why is not None and "origin" in ctx.git.remotes():
        ctx.rt.warning(
            f"the shadow result is kept in this clone ({ref}) but was not pushed: {why}; a "
            f"deploy elsewhere will not find it. Push it: `git push origin {ref}:{ref}` (the "
            "job needs `permissions: {contents: write}`)"
        )
    serving = current(d.store.list())
    DeployOutputs(
        status="shadowed" if result.passed else "shadow-failed",
        revision=str(result.revision or ""),
        serving_revision=str(serving.number if serving else ""),
        serving_version=serving.version if serving else "",
    ).write(ctx.rt)
    ctx.rt.summary(summary_markdown(result))
    done = Shadowed(result, ref, why)
    if not result.passed:
        raise ShadowError(
            f"{d.env_name}: shadow of {rel.version} failed: {result.reason} "
            f"({result.summary()}); {result.serving_version} still serves, the candidate is gone",
            hint="the result is kept; a deploy of this version to "
            f"{d.env_name} stays refused until a shadow passes",
        )
    return done


def summary_markdown(r: ShadowResult) -> str:
    mark = "✅ passed" if r.passed else "❌ failed"
    rows = [
        f"**{md_cell(r.env)}: shadow of {md_cell(r.version)} beside "
        f"{md_cell(r.serving_version)} {mark}**: {md_cell(r.reason)}",
        "",
        "| compared | mirrored | candidate errors | not comparable | dropped |",
        "|---:|---:|---:|---:|---:|",
        f"| {r.compared}/{r.wanted} | {r.seen} | {r.candidate_errors} | "
        f"{sum(r.incomparable.values())} | {r.dropped} |",
    ]
    if r.examples:
        rows += ["", "First disagreements:", ""] + [f"- {md_cell(x)}" for x in r.examples]
    return "\n".join(rows) + "\n"


def require(ctx: Context, d: Environment, rel: Release) -> None:
    """Refuse the deploy of `rel` under `strategy: shadow` without a passing shadow of it here."""
    if d.env.rollout.strategy != "shadow":
        return
    if d.config.target == "kubernetes":
        # `deploy --shadow` is refused there (the cluster's gateway cannot reach the CI job's
        # comparator), so the gate could never be earned: the first release would go out and
        # every later one be refused. Say so before anything is applied.
        raise ShadowError(
            f"{d.env_name}: `rollout: {{strategy: shadow}}` on the kubernetes target can never "
            "be passed: a shadow rollout's comparator runs in the CI job, which the cluster's "
            "gateway cannot reach; nothing is deployed",
            hint=f"use `rollout: {{strategy: canary}}` for deploy.environments.{d.env_name}, or "
            "run the shadow in an environment on the podman target; see "
            f"{docs.page('how-to/shadow-rollouts', 'kubernetes')}",
        )
    revs = d.store.list()
    serving = current(revs)
    if serving is None:
        return  # a first release: nothing to compare it with
    if serving.record_digest == rel.record_digest:
        return  # it serves already (a redeploy): compared with itself, it agrees
    found = shadows.read(ctx.git, rel.record_digest).get(d.env_name)
    if found is not None and found.passed and _ran_here(revs, found, rel):
        ctx.rt.notice(
            f"{d.env_name}: {rel.version} passed its shadow beside {found.serving_version} "
            f"({found.summary()})"
        )
        return
    if found is None:
        missing = "no shadow result of it is recorded"
    elif found.passed:
        # Anyone who can push a ref can push refs/lepton-ci/shadow/...: a pass is believed
        # only when the environment's own history (on the target, not in git) holds the
        # shadow revision it names.
        missing = (
            f"the passing result in git names shadow revision {found.revision}, which "
            f"{d.env_name}'s history does not hold as a `shadowed` revision of this record "
            "(`lepton-ci history` lists it), so it is not believed"
        )
    else:
        missing = f"its last shadow failed ({found.reason}; {found.summary()})"
    run = (
        f"run the shadow first: `{_command(d, rel)}` (the candidate answers a copy of "
        f"{d.env.rollout.requests} live requests beside {serving.version}; clients get "
        f"{serving.version}'s answers), then deploy again"
    )
    if found is not None and not found.passed:
        # Telling to "run the shadow first" after it ran reads as if it had not been kept.
        run = (
            f"its answers differ from {found.serving_version}'s: fix the model and register "
            f"a new version, or, if what it was compared on was wrong (too little traffic, "
            f"requests the serving version refused), run the shadow again: `{_command(d, rel)}`"
        )
    raise ShadowError(
        f"{d.env_name}: deploy of {d.model} {rel.version} refused: `rollout: {{strategy: "
        f"shadow}}` requires a passing shadow rollout of this version in {d.env_name}, and "
        f"{missing}",
        hint=run,
    )


def _ran_here(revs: list[Revision], found: ShadowResult, rel: Release) -> bool:
    """Did this environment run the shadow `found` reports: its history holds that revision,
    `shadowed`, of the same record? (The history lives on the target, out of a PR's reach.)"""
    return any(
        r.number == found.revision
        and r.status == "shadowed"
        and r.record_digest == rel.record_digest == found.record_digest
        for r in revs
    )
