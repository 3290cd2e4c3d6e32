"""`register` and `promote`: write versions and stage assignments as git tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lepton_ci.core import record as record_mod
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError, RecordError, RegistryError
from lepton_ci.core.escape import md_cell
from lepton_ci.core.github import GitHubClient
from lepton_ci.core.interrupt import deferred
from lepton_ci.core.outputs import AcceptTagOutputs, PromoteOutputs, RegisterOutputs
from lepton_ci.core.printer import some
from lepton_ci.core.products import products
from lepton_ci.core.record import Record
from lepton_ci.core.semver import FIRST, Bump, Version, bump_from_commits
from lepton_ci.versions import approval, authorise, protected, soak, trusted
from lepton_ci.versions import grammar as tags
from lepton_ci.versions import message as tag_message
from lepton_ci.versions.message import DEPLOYED_TRAILER
from lepton_ci.versions.protected import Policy, short
from lepton_ci.versions.registry import (
    LOGIN,
    Registry,
    State,
    VersionInfo,
)

if TYPE_CHECKING:
    from lepton_ci.core.revisions import Revision
    from lepton_ci.trust.attest import Signed


class Unjudged(RegistryError):
    """A promotion lepton-ci cannot judge: the version carries no evidence record."""


@dataclass
class Registered:
    model: str
    version: Version
    tag: str
    sha: str
    record: Record
    pushed: bool
    signer: str | None = None  # who signed the version's statement; None: unsigned

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": str(self.version),
            "tag": self.tag,
            "sha": self.sha,
            "pushed": self.pushed,
            "signed_by": self.signer,
        }

    def outputs(self) -> RegisterOutputs:
        return RegisterOutputs(version=str(self.version), tag=self.tag, sha=self.sha)

    def text(self, remote: str) -> str:
        pushed = f", pushed to {remote}" if self.pushed else ""
        signed = f", signed by {self.signer}" if self.signer else ""
        return f"registered {self.tag} at {self.sha[:12]} ({self.record.verdict}){signed}{pushed}"


def register(
    ctx: Context,
    model: str,
    *,
    version: str | None = None,
    bump: Bump | None = None,
    push: bool = False,
    remote: str = "origin",
    allow_failed: bool = False,
    signing_key: str | None = None,
) -> Registered:
    """Tag the last run as a version. With a signer (a key, or keyless in Actions), the
    version's statement is signed first and kept under its attestation ref, which is pushed
    with the tag in one atomic push; a failed step leaves neither behind."""
    git = ctx.git
    head = git.head()
    rec = record_mod.load(ctx.record_path(model))
    if rec.model != model:
        raise RecordError(
            f"{ctx.record_path(model)} is the record of model `{rec.model}`, not `{model}`",
            hint=f"run `lepton-ci run --model {model}` first, then register",
        )
    if rec.git.sha != head:
        raise RecordError(
            f"the last run of {model} was for {rec.git.sha[:12]}, but HEAD is {head[:12]}",
            hint=f"run `lepton-ci run --model {model}` on this commit first",
        )
    if rec.verdict != "pass":
        failed = ", ".join(g.metric for g in rec.gates if g.verdict == "fail") or "gates"
        if not allow_failed:
            raise RegistryError(
                f"the last run of {model} failed its gates ({failed}); a failed run is not "
                "registered",
                hint="fix the model and run again; to keep the evidence of a failed candidate "
                "anyway, register it with --allow-failed (it can never be promoted)",
            )
        ctx.rt.warning(
            f"registering {model} although its gates failed ({failed}): --allow-failed; "
            "this version can never be promoted",
            title="lepton-ci register",
        )
    workdir = ctx.cfg.model_dir(ctx.cfg.model(model)[1])
    lin = rec.lineage
    made = products(
        ctx.cfg,
        [workdir / f for f in rec.outputs],
        [workdir / f for f in (*lin.code, *lin.data, *lin.params_files)],
    )
    if git.dirty(ignore=made) or rec.git.dirty:
        untracked = some(rec.git.untracked)
        raise RegistryError(
            f"the work tree has uncommitted changes; a version of {model} must be a commit"
            + (f" (the run read untracked inputs: {untracked})" if untracked else ""),
            hint="commit (or ignore) those files, or stash your changes; then run and register "
            "again",
        )
    if git.dirty():  # only the run's own products changed
        ctx.rt.notice(
            f"{model}: the run rewrote files it writes that git tracks (its metrics or "
            f"outputs, e.g. DVC's metrics.json); {model}'s version is this commit, and its "
            "record keeps this run's metrics. Commit them to keep the files in step"
        )
    reg = Registry(git)
    state = reg.read(model)
    on_head = state.on_commit(model, head)
    if on_head:
        raise RegistryError(
            f"HEAD is already registered as {on_head[0].tag}",
            hint="register a new commit, or promote the existing version",
        )
    latest = state.newest_ever(model)  # a deregistered version is never reused
    if version is not None:
        new = Version.parse(version)
        if latest is not None and new.sort_key() < latest.version.sort_key():
            gone = " (deregistered)" if latest.deregistered else ""
            raise RegistryError(
                f"--version {new} is below the newest version of {model}, {latest.version}{gone}",
                hint=f"choose a version above {latest.version}, or leave out --version",
            )
    elif latest is None:
        new = FIRST
    else:
        part = bump or bump_from_commits(git.subjects(f"{latest.tag}..HEAD"))
        new = latest.version.bump(part)
    for v in state.versions(model, include_deregistered=True):
        if v.version == new:
            raise RegistryError(
                f"{model}@{new} already exists (on {v.sha[:12]})",
                hint="choose another version with --version, or let --bump choose",
            )
        if v.version.sort_key() == new.sort_key():  # `+build` is no part of precedence
            raise RegistryError(
                f"{model}@{new} ranks equal to {v.tag} (on {v.sha[:12]}): build metadata after "
                "`+` does not order versions, so neither would be the newest",
                hint="choose a version above it with --version, or let --bump choose",
            )
    name = tags.version_tag(model, new)
    rec = rec.model_copy(update={"candidate_version": str(new)})
    message = tag_message.registration(name, rec)
    signed = _sign(ctx, rec, name, signing_key)  # before any write: a refusal leaves nothing
    reg.create_tag(name, head, message, after=state.last_time(model))
    refs = []
    if signed is not None:
        from lepton_ci.trust import store

        try:
            refs.append(store.write(git, name, signed.files))
        except LeptonError:
            git.run(["tag", "-d", name], check=False)
            raise
    if push:
        reg.push_tag(name, remote, refs=refs)
    record_mod.save(rec, ctx.record_path(model))
    return Registered(model, new, name, head, rec, push, signed.signer if signed else None)


def _sign(ctx: Context, rec: Record, tag: str, signing_key: str | None) -> Signed | None:
    from lepton_ci.trust import attest

    signer = attest.signer_for(ctx, signing_key, tag, refuse_unsigned=ctx.cfg.config.trust.require)
    return None if signer is None else attest.sign_version(ctx, rec, tag, signer)


@dataclass
class Promoted:
    model: str
    version: Version
    stage: str
    tag: str
    sha: str
    pushed: bool
    deploy: bool = True  # does whoever accepts this tag still have to deploy it?
    soak_verdict: soak.Verdict | None = None  # what it did in the required stage, if a rule asked
    approval: str = ""  # Markdown: the candidate beside what serves in the stage now

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": str(self.version),
            "stage": self.stage,
            "tag": self.tag,
            "sha": self.sha,
            "pushed": self.pushed,
            "soak": self.soak_verdict.evidence.as_dict() if self.soak_verdict else None,
        }

    def outputs(self) -> PromoteOutputs:
        return PromoteOutputs(tag=self.tag, version=str(self.version), sha=self.sha)

    def accepted(self) -> AcceptTagOutputs:
        return AcceptTagOutputs(
            model=self.model,
            version=str(self.version),
            stage=self.stage,
            deploy=str(self.deploy).lower(),
        )


def check_promotion(
    ctx: Context,
    model: str,
    info: VersionInfo,
    stage: str,
    state: State,
    *,
    policy: Policy,
    actors: list[str | None],
    github: GitHubClient | None,
    ignore_tag: str | None = None,
    now: soak.Clock = soak.utcnow,
    history: soak.Reader | None = None,
) -> soak.Verdict | None:
    """Everything a promotion must satisfy under the protected policy: declared stage, the
    required stage first, the policy for every actor, gates passed, and what the version did
    in the required stage (its soak, read from that environment's history; `history` and
    `now` are for tests to hand in). Raises RegistryError saying what is wrong; Unjudged
    (checked after the actor, so a refused actor is refused first) when there is no record.
    Returns the soak verdict, if the stage has a soak rule."""
    authorise.declared(ctx, policy, stage)
    required = policy.stages[stage].required_stage
    if required is not None:
        was_there = any(
            e.action is tags.Action.ASSIGN and e.sha == info.sha and e.tag != ignore_tag
            for e in state.stage_history(model, required)
        )
        if not was_there:
            raise RegistryError(
                f"{info.tag} must be in stage `{required}` before `{stage}`",
                hint=f"run `lepton-ci promote {model} {info.version} {required}` first",
            )
    authorise.authorise(ctx, policy, stage, actors, github)
    rec = Registry(ctx.git).record(info.tag)
    if rec is None and not policy.stages[stage].allow_unrecorded:
        raise Unjudged(
            f"{info.tag} carries no evidence record (registered by GTO or by hand), so "
            "lepton-ci cannot show it passed its gates",
            hint=f"set `stages.{stage}.allow_unrecorded: true` in {ctx.cfg.path.name} on "
            f"{short(policy.ref)} to promote such versions anyway, or register a new version "
            "with `lepton-ci register`",
        )
    if rec is None:
        ctx.rt.notice(f"{info.tag} carries no record; promoted to {stage} by allow_unrecorded")
    elif rec.verdict != "pass":
        failed = ", ".join(g.metric for g in rec.gates if g.verdict == "fail")
        raise RegistryError(
            f"{info.tag} failed its gates ({failed}); it cannot be promoted",
            hint="promote a version that passed, or register a fixed one",
        )
    trusted.require_version(ctx, info, rec, f"promotion of {info.tag} to {stage}")
    return soak.check(ctx, policy, model, str(info.version), stage, now=now, read=history)


def promote(
    ctx: Context,
    model: str,
    version: str,
    stage: str,
    *,
    push: bool = False,
    remote: str = "origin",
    actor: str | None = None,
    github: GitHubClient | None = None,
    deployed_here: bool = False,
    now: soak.Clock = soak.utcnow,
    history: soak.Reader | None = None,
) -> Promoted:
    """deployed_here: the calling workflow deploys the stage itself; the tag says so, so the
    tag workflow does not deploy it again."""
    reg = Registry(ctx.git)
    state = reg.read(model)
    info = state.find(model, version)
    message = _promote_message(ctx, info.tag, stage, actor, deployed_here=deployed_here)
    policy = protected.load(ctx, remote)
    actors = authorise.run_actors(ctx.env, actor)
    verdict = check_promotion(
        ctx,
        model,
        info,
        stage,
        state,
        policy=policy,
        actors=actors,
        github=github,
        now=now,
        history=history,
    )
    current = state.stages(model).get(stage)
    if current is not None and current.version == info.version:
        raise RegistryError(f"{info.tag} is already the current `{stage}` version")
    shown = _approval(ctx, policy, model, info, stage, state, verdict, now, history)
    name = tags.stage_tag(model, stage, state.next_counter(model))
    reg.create_tag(name, info.sha, message, after=state.last_time(model))
    if push:
        reg.push_tag(name, remote)
    return Promoted(
        model,
        info.version,
        stage,
        name,
        info.sha,
        push,
        deploy=not deployed_here,
        soak_verdict=verdict,
        approval=shown,
    )


def _approval(
    ctx: Context,
    policy: Policy,
    model: str,
    info: VersionInfo,
    stage: str,
    state: State,
    verdict: soak.Verdict | None,
    now: soak.Clock,
    history: soak.Reader | None,
) -> str:
    """The candidate beside the version serving in `stage` now. The serving version's time
    there is read only when a soak rule made this job able to read histories; it is shown,
    never judged, so a history that cannot be read is said in the table, not raised."""
    reg = Registry(ctx.git)
    rule = policy.stages[stage].requires
    t = now()
    if verdict is not None:
        ev = verdict.evidence
        candidate = approval.Side(str(info.version), reg.record(info.tag), ev.env, ev)
    else:
        env = rule.stage if rule is not None else stage
        candidate = approval.Side(str(info.version), reg.record(info.tag), env, None)
    current = state.stages(model).get(stage)
    if current is None:
        return approval.markdown(stage, candidate, None)
    revs: list[Revision] | str = ""
    if verdict is not None:
        try:
            revs = (history or soak._no_reader)(policy, model, stage)
        except LeptonError as e:
            revs = e.message
    serving = approval.side(str(current.version), reg.record(current.tag), stage, revs, t)
    return approval.markdown(stage, candidate, serving)


def _promote_message(
    ctx: Context, tag: str, stage: str, actor: str | None, *, deployed_here: bool = False
) -> str:
    """GTO's tagger is the runner's git identity; the person who promoted goes in a trailer,
    and so does the run that deploys the stage itself (the tag workflow then does not)."""
    who = actor or ctx.env.get("GITHUB_TRIGGERING_ACTOR") or ctx.env.get("GITHUB_ACTOR")
    if who and not LOGIN.fullmatch(who):
        raise RegistryError(
            f"actor `{who}` is not a GitHub login", hint="pass --actor with a GitHub login"
        )
    deployed_by = (ctx.run_url() or "lepton-ci promote") if deployed_here else None
    return tag_message.promotion(tag, stage, promoted_by=who or None, deployed_by=deployed_by)


def accept_pushed_tag(
    ctx: Context,
    tag: str,
    *,
    remote: str = "origin",
    actor: str | None = None,
    github: GitHubClient | None = None,
    now: soak.Clock = soak.utcnow,
    history: soak.Reader | None = None,
) -> Promoted | None:
    """A stage tag someone pushed: check it like a promotion. A refused tag is deleted again,
    here and on the remote, so the registry never shows a promotion the policy forbade. A tag
    that cannot be judged (no record, no registered version: GTO's) is refused but left alone.
    Returns None for a tag that is not a stage assignment (nothing to deploy)."""
    parsed = tags.parse(tag)
    if parsed is None or parsed.action is not tags.Action.ASSIGN or parsed.stage is None:
        return None
    reg = Registry(ctx.git)
    state = reg.read(parsed.model)
    pushed = next((e for e in state.history(parsed.model) if e.tag == tag), None)
    if pushed is None:
        if ctx.git.run(["cat-file", "-t", tag], check=False).stdout.strip() == "commit":
            raise RegistryError(
                f"{tag} is a lightweight tag: a stage assignment is an annotated tag, and GTO "
                "and lepton-ci read no other, so nothing is promoted or deployed",
                hint=f"delete it and push `git tag -a {tag} -m 'Promote' <commit>`, or run "
                "`lepton-ci promote`",
            )
        raise RegistryError(f"tag {tag} is not in this clone", hint="fetch tags first")
    info = next((v for v in state.versions(parsed.model) if v.sha == pushed.sha), None)
    try:
        policy = protected.load(ctx, remote)
        actors = authorise.tag_actors(ctx.env, tag, actor)
        if info is None:
            authorise.declared(ctx, policy, parsed.stage)
            # a refused actor's tag still goes
            authorise.authorise(ctx, policy, parsed.stage, actors, github)
            raise Unjudged(
                f"{tag} points at {pushed.sha[:12]}, which is no registered "
                f"version of {parsed.model}",
                hint="register that commit first (`lepton-ci register`), then assign again",
            )
        verdict = check_promotion(
            ctx,
            parsed.model,
            info,
            parsed.stage,
            state,
            policy=policy,
            actors=actors,
            github=github,
            ignore_tag=tag,
            now=now,
            history=history,
        )
    except Unjudged as e:
        e.message += f"; the tag {tag} was left in place (nothing is deployed)"
        raise
    except BaseException as e:
        # Whatever stopped the check (a refusal, GitHub answering 5xx or nonsense, a policy
        # that cannot be read, a cancelled run) leaves the promotion unauthorised: the tag
        # goes, so the registry never shows a stage assignment nobody checked.
        with deferred():
            gone = _delete_tag(ctx, tag, remote)
        if isinstance(e, LeptonError):
            e.message += f"; {gone}"
            raise
        if isinstance(e, Exception):
            raise RegistryError(
                f"{tag} could not be authorised ({type(e).__name__}: {e}); {gone}",
                hint="a failed check is a refusal: push the tag again once it can be checked",
            ) from e
        raise
    by = _deployed_by(ctx, tag)
    if by is not None:
        ctx.rt.notice(f"{tag} was deployed by the workflow that promoted it ({by}); not again")
    return Promoted(
        parsed.model,
        info.version,
        parsed.stage,
        tag,
        info.sha,
        False,
        deploy=by is None,
        soak_verdict=verdict,
    )


def _delete_tag(ctx: Context, tag: str, remote: str) -> str:
    """Delete a refused tag here and on the remote; say what happened, failures included."""
    ctx.git.run(["tag", "-d", tag], check=False)
    if remote not in ctx.git.remotes():
        return f"the tag {tag} was deleted again"
    proc = ctx.git.run(["push", remote, f":refs/tags/{tag}"], check=False, timeout=120)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or ["no reason given"]
        return (
            f"the tag {tag} was deleted here, but deleting it from {remote} FAILED "
            f"({why[0]}): delete it by hand, `git push {remote} :refs/tags/{tag}`"
        )
    return f"the tag {tag} was deleted again"


def _deployed_by(ctx: Context, tag: str) -> str | None:
    """Who deployed the stage of `tag` already, from the trailer `promote --deployed-here`
    writes, or None. Only an annotated tag's own message counts: for a lightweight tag git
    shows the commit's message, which anyone whose commit was merged wrote."""
    kind, _, trailers = (
        ctx.git.run(
            [
                "for-each-ref",
                f"--format=%(objecttype) %(trailers:key={DEPLOYED_TRAILER},valueonly)",
                f"refs/tags/{tag}",
            ]
        )
        .stdout.strip()
        .partition(" ")
    )
    if kind != "tag":
        return None
    return next((v.strip() for v in trailers.splitlines() if v.strip()), None)


def accept_tag_step(
    ctx: Context,
    tag: str,
    *,
    remote: str = "origin",
    actor: str | None = None,
    github: GitHubClient | None = None,
    history: soak.Reader | None = None,
) -> str:
    """`accept-tag` as a step: check the tag, write the step's outputs, say what happened."""
    res = accept_pushed_tag(ctx, tag, remote=remote, actor=actor, github=github, history=history)
    if res is None:
        AcceptTagOutputs(model="", version="", stage="", deploy="false").write(ctx.rt)
        return f"{tag}: not a stage assignment; nothing to promote"
    res.accepted().write(ctx.rt)
    if res.soak_verdict is not None:
        ev = res.soak_verdict.evidence
        ctx.rt.summary(
            f"{md_cell(tag)}: {md_cell(res.model)}@{res.version} met "
            f"`stages.{res.stage}.requires`: served {soak.span(ev.served_s)} in {ev.env}, "
            f"{ev.requests:.0f} requests, SLO breaches: {md_cell(ev.breach_text)}\n"
        )
    return f"{tag}: {res.model}@{res.version} accepted in {res.stage}"
