"""Operations behind `lepton-ci comment` and the report bundle that `run` writes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_ci.core import record as record_mod
from lepton_ci.core import shadows
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError, RecordError
from lepton_ci.core.gha import Runtime, dig, load_event, pr_number
from lepton_ci.core.git import Git
from lepton_ci.core.github import LOGIN, GitHubClient
from lepton_ci.core.outputs import CommentOutputs
from lepton_ci.core.record import Record
from lepton_ci.core.shadows import ShadowResult
from lepton_ci.report import comment as report
from lepton_ci.report import sticky
from lepton_ci.report.comment import WORKFLOW_MAX
from lepton_ci.versions.registry import Registry


def meta_from_env(
    env: Mapping[str, str], rec: Record, registry: Registry | None
) -> report.BundleMeta:
    repo = env.get("GITHUB_REPOSITORY") or ""
    run_id = env.get("GITHUB_RUN_ID") or ""
    return report.BundleMeta(
        model=rec.model,
        # GitHub sets no bound on a workflow's name; the bundle's field has one (it is read
        # back by a trusted job). The name only keeps comments apart: its start does too.
        workflow=(env.get("GITHUB_WORKFLOW") or "local")[:WORKFLOW_MAX],
        # A pull_request run built GitHub's merge commit; the PR, its workflow_run and the
        # comment speak of the PR's head commit.
        head_sha=rec.git.pr_head or rec.git.sha,
        pr=pr_number(load_event(env)),
        # Informational here (the posting job uses its own GITHUB_REPOSITORY): an unusable
        # value is left out rather than failing the run.
        repo=repo if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo) else None,
        run_id=int(run_id) if run_id.isascii() and run_id.isdigit() else 0,
        history=report.history(registry, rec) if registry is not None else [],
    )


@dataclass
class Posted:
    rendered: report.Rendered | None  # None: skipped, there was no report to render
    outcome: sticky.Upserted | None  # None: rendered locally, nothing posted
    path: Path | None
    skipped: str = ""  # why nothing was posted, when the run had no report

    def outputs(self) -> CommentOutputs:
        o = self.outcome
        return CommentOutputs(
            comment_id=str(o.comment_id or "") if o else "",
            comment_url=(o.url or "") if o else "",
            action=o.action if o else "skipped" if self.rendered is None else "rendered",
        )

    def text(self) -> str:
        o = self.outcome
        if self.rendered is None:
            return self.skipped
        if o is None:
            return self.rendered.body
        return f"PR comment {o.action} ({o.calls} API calls)" + (f": {o.url}" if o.url else "")


def _is_fork(event: dict[str, Any]) -> bool:
    head = dig(event, "pull_request", "head", "repo")
    name = dig(head, "full_name")
    return bool(dig(head, "fork")) or (
        bool(name) and name != dig(event, "pull_request", "base", "repo", "full_name")
    )


class HeadMoved(RecordError):
    """The PR a bundle names has another head now than the commit the bundle is for."""


def check_bundle_source(
    event: Mapping[str, Any], pull: Mapping[str, Any], meta: report.BundleMeta, pr: int
) -> None:
    """A bundle from an untrusted run may only speak for its own commit and PR: the
    workflow_run event that uploaded it and the PR (as GitHub answers it) must name both."""
    run_sha = dig(event, "workflow_run", "head_sha")
    run_repo = dig(event, "workflow_run", "head_repository", "full_name")
    pr_repo = dig(pull, "head", "repo", "full_name")
    head_sha = dig(pull, "head", "sha")
    if run_repo and pr_repo != run_repo:
        raise RecordError(
            f"the bundle names PR #{pr}, whose head is in {pr_repo or 'a deleted repository'}"
            f", but the workflow run that uploaded it built {run_repo}; refusing to post",
        )
    if run_sha and meta.head_sha != run_sha:
        raise RecordError(
            f"the bundle is for commit {meta.head_sha[:12]}, but the workflow run that "
            f"uploaded it built {str(run_sha)[:12]}; refusing to post",
        )
    if head_sha != meta.head_sha:
        raise HeadMoved(
            f"the bundle names PR #{pr}, whose head is {str(head_sha)[:12]}, not "
            f"{meta.head_sha[:12]}; refusing to post (stale run, or a forged PR number)",
        )


def comment(
    env: Mapping[str, str],
    rt: Runtime,
    rec: Record,
    meta: report.BundleMeta,
    *,
    client: GitHubClient | None = None,
    pr: int | None = None,
    repo: str | None = None,
    local_dir: Path | None = None,
    from_bundle: bool = False,
    author: str | None = None,
    shadows: Sequence[ShadowResult] = (),
) -> Posted:
    rendered = report.render(rec, meta, shadows=shadows)
    repo = repo or env.get("GITHUB_REPOSITORY") or meta.repo
    pr = pr or meta.pr
    event = load_event(env)
    token = env.get("LEPTON_GITHUB_TOKEN") or env.get("GITHUB_TOKEN")
    if not (repo and pr and token):
        out = (local_dir or Path()) / "comment.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rendered.body, encoding="utf-8")
        missing = [
            n for n, v in (("repository", repo), ("pull request", pr), ("token", token)) if not v
        ]
        rt.notice(f"not posting ({', '.join(missing)} unknown): the comment is in {out}")
        return Posted(rendered, None, out)

    from_run = from_bundle and env.get("GITHUB_EVENT_NAME") == "workflow_run"
    conclusion = dig(event, "workflow_run", "conclusion")
    if from_run and conclusion and conclusion not in REPORTED:
        rt.notice(f"the {meta.workflow} run was {conclusion}: nothing to post")
        return Posted(rendered, sticky.Upserted("skipped", None, None, 0), None)
    gh = client or GitHubClient.from_env(env, rt, fork=_is_fork(event))
    start = gh.calls
    pull = gh.pull(repo, pr)
    head_sha = dig(pull, "head", "sha")
    if from_run:
        try:
            check_bundle_source(event, pull, meta, pr)
        except HeadMoved:
            stale = _newer_report_shown(gh, repo, pr, meta, event, author)
            if stale is None:
                raise
            rt.notice(stale)
            return Posted(rendered, sticky.Upserted("stale", None, None, gh.calls - start), None)
    try:
        outcome = sticky.upsert(
            gh,
            repo,
            pr,
            rendered,
            meta,
            head_sha=head_sha if isinstance(head_sha, str) else None,
            author=author,
        )
    except LeptonError as e:
        if getattr(e, "status", None) == 403 and not e.hint:
            e.hint = "give the job `permissions: {pull-requests: write}`"
        raise
    if outcome.guessed is not None:
        rt.warning(
            f"the token posts as {outcome.author}, not {outcome.guessed}: its earlier comment "
            "was found only after posting another (a GitHub App's token cannot say who it "
            f"is); pass `author: {outcome.author}` (--author) to find it at once",
            title="lepton-ci comment",
        )
    outcome.calls = gh.calls - start  # every call this comment cost, the PR read included
    return Posted(rendered, outcome, None)


# A completed workflow_run of these conclusions ran to its end: its report bundle is there.
REPORTED = ("success", "failure", "neutral")
# The others left none (or one a newer run replaces): said as a notice, or as a warning
# where something is wrong that the run's own check already shows.
NO_REPORT = {
    "cancelled": ("notice", "was cancelled (a newer push to the pull request cancels it)"),
    "skipped": ("notice", "was skipped"),
    "stale": ("notice", "went stale (GitHub stopped waiting for it)"),
    "action_required": ("notice", "waits for a maintainer to approve running it"),
    "timed_out": ("warning", "timed out before it wrote its report"),
    "startup_failure": ("warning", "failed to start (see the workflow file's errors)"),
}


def _at(data: object, *keys: str) -> object:
    """data[k1][k2]..., or None where a level is missing or not an object."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _no_report(event: dict[str, Any], rt: Runtime) -> str:
    """Why the run this workflow_run event reports on left no report to post ("" if it
    did). Said once, so the comment job ends cleanly instead of failing on a bundle that
    was never written."""
    run = _at(event, "workflow_run")
    conclusion = _at(run, "conclusion")
    if conclusion in REPORTED:
        return ""
    run_id, name = _at(run, "id"), _at(run, "name")
    level, why = NO_REPORT.get(str(conclusion), ("warning", f"ended `{conclusion}`"))
    if conclusion is None:
        level, why = "notice", f"has not completed (status `{_at(run, 'status')}`)"
    label = f"workflow run {run_id}" + (f" ({name})" if name else "")
    text = f"{label} {why}: no report to post, nothing done"
    rt.notice(text) if level == "notice" else rt.warning(text)
    return text


def _newer_report_shown(
    gh: GitHubClient,
    repo: str,
    pr: int,
    meta: report.BundleMeta,
    event: Mapping[str, Any],
    author: str | None = None,
) -> str | None:
    """Why a bundle whose PR moved on is merely stale: the PR's comment already shows the
    report of a later run (GitHub numbers runs in order). None when it does not, which is
    refused as before: a forged PR number, or a later run that has not reported yet."""
    run_id = dig(event, "workflow_run", "id")  # the event's, not the bundle's own claim
    shown = sticky.shown(gh, repo, pr, meta, author)
    if not isinstance(run_id, int) or shown is None:
        return None
    their_run = shown.get("run")
    if not isinstance(their_run, int) or isinstance(their_run, bool) or their_run <= run_id:
        return None
    return (
        f"stale: PR #{pr} has moved on from {meta.head_sha[:12]}, and its comment already "
        f"shows run {their_run}, later than this run {run_id}; nothing posted"
    )


def shadow_results(git: Git, rec: Record, rt: Runtime) -> list[ShadowResult]:
    """The record's shadow rollouts, from git (fetched from `origin` when this clone lacks
    them); a comment is never refused for want of them."""
    try:
        found = shadows.read(git, rec.digest())
    except LeptonError as e:
        rt.notice(f"shadow results of {rec.model} not shown: {e.message}")
        return []
    return [found[k] for k in sorted(found)]


def post(
    env: Mapping[str, str],
    *,
    bundle: Path | None = None,
    ctx: Context | None = None,
    model: str | None = None,
    pr: int | None = None,
    repo: str | None = None,
    workflow: str | None = None,
    author: str | None = None,
) -> Posted:
    """`lepton-ci comment`: post a bundle written by `run` (the fork-safe job, which needs no
    lepton.yaml), or the last run of `model` in `ctx`; write the step summary and outputs."""
    rt = ctx.rt if ctx is not None else Runtime(env)
    if bundle is not None and env.get("GITHUB_EVENT_NAME") == "workflow_run":
        skipped = _no_report(load_event(env), rt)
        if skipped:
            posted = Posted(None, None, None, skipped)
            posted.outputs().write(rt)
            return posted
    if bundle is not None:
        rec, meta = report.read_bundle(bundle)
        local_dir = bundle
        git = Git(Path.cwd())  # the trusted job's checkout, when it has one
    else:
        if ctx is None:
            raise ValueError("post() needs a bundle or a context")
        name, _ = ctx.cfg.model(model)
        rec = record_mod.load(ctx.record_path(name))
        meta = meta_from_env(ctx.env, rec, Registry(ctx.git))
        local_dir = ctx.paths.report_bundle(name)
        git = ctx.git
    if workflow:
        meta = meta.model_copy(update={"workflow": workflow})
    if author is not None and not LOGIN.fullmatch(author):
        raise LeptonError(
            f"--author `{author}` is not a GitHub login",
            hint="give the login the token posts as, e.g. `my-app[bot]` for a GitHub App "
            "named my-app",
        )
    posted = comment(
        env,
        rt,
        rec,
        meta,
        pr=pr,
        repo=repo,
        local_dir=local_dir,
        from_bundle=bundle is not None,
        author=author,
        shadows=shadow_results(git, rec, rt),
    )
    if posted.rendered is not None:  # always, once a bundle was read
        rt.summary(posted.rendered.body)
    posted.outputs().write(rt)
    return posted
