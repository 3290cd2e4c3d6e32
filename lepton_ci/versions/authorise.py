"""Who a promotion (or a rollback) acts for, and whether the protected policy lets them.

A GitHub re-run keeps `github.actor` (who started the first attempt) and runs for whoever
pressed re-run (`github.triggering_actor`). Either may be the one the policy refuses: a pushed
tag is the pusher's promotion, and a re-run of it by someone allowed must not let it through;
a re-run pressed by someone refused must not reuse the pusher's right. So on a re-run both
must be allowed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from lepton_ci.core.context import Context
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gha import Runtime, load_event
from lepton_ci.core.github import GitHubClient
from lepton_ci.versions.policy import check as check_policy
from lepton_ci.versions.protected import Policy, short


def _attempt(env: Mapping[str, str]) -> int:
    try:
        return int(env.get("GITHUB_RUN_ATTEMPT") or 1)
    except ValueError:
        return 1


def _with_rerun(first: str | None, env: Mapping[str, str]) -> list[str | None]:
    """`first` and whoever pressed re-run; both must be allowed. On a first attempt they are
    one person. A re-run whose re-runner is unknown keeps None in the list: refused."""
    again = env.get("GITHUB_TRIGGERING_ACTOR") or None
    if again is None and _attempt(env) <= 1:
        return [first]
    return list(dict.fromkeys([first, again]))


def run_actors(env: Mapping[str, str], actor: str | None) -> list[str | None]:
    """`promote` and `rollback`: --actor, else who started the run (`github.actor`), and
    whoever pressed re-run (`github.triggering_actor`)."""
    first = actor or env.get("GITHUB_ACTOR") or env.get("GITHUB_TRIGGERING_ACTOR") or None
    return _with_rerun(first, env)


def tag_actors(env: Mapping[str, str], tag: str, actor: str | None) -> list[str | None]:
    """`accept-tag`: the tag's pusher (--actor, else the push event's `sender`, else its
    `pusher`, else `github.actor`), and on a re-run also whoever pressed re-run."""
    pusher = actor
    event = load_event(env)
    if pusher is None and event.get("ref") == f"refs/tags/{tag}":
        sender = event.get("sender")
        login = sender.get("login") if isinstance(sender, dict) else None
        pushed_by = event.get("pusher")
        name = pushed_by.get("name") if isinstance(pushed_by, dict) else None
        pusher = next((v for v in (login, name) if isinstance(v, str) and v), None)
    if pusher is None:
        pusher = env.get("GITHUB_ACTOR") or None
    return _with_rerun(pusher, env)


def declared(ctx: Context, policy: Policy, stage: str) -> None:
    if stage not in policy.stages:
        listed = ", ".join(policy.stages) or "none"
        raise RegistryError(
            f"stage `{stage}` is not declared in the policy on {policy.where} (declared: {listed})",
            hint=f"add it under `stages:` in {ctx.cfg.path.name} on {short(policy.ref)}, "
            f"e.g. `stages: [{stage}]`",
        )


def authorise(
    ctx: Context,
    policy: Policy,
    stage: str,
    actors: list[str | None],
    github: GitHubClient | None,
    *,
    doing: str = "promotion to",
) -> None:
    """Every actor must be allowed by `stages.<stage>.allow` of the protected policy; a stage
    without `allow` admits anyone who can run the workflow."""
    allow = policy.stages[stage].allow
    if allow is None:
        return
    repo = ctx.env.get("GITHUB_REPOSITORY")
    token = ctx.env.get("LEPTON_GITHUB_TOKEN") or ctx.env.get("GITHUB_TOKEN")
    if github is None and repo and token:
        github = GitHubClient.from_env(ctx.env, ctx.rt)
    reasons = [check_policy(allow, who, stage, client=github, repo=repo) for who in actors]
    Runtime(ctx.env, sys.stderr).notice(  # stderr: stdout may be the command's JSON
        f"{doing} {stage} allowed by the policy on {policy.where}: {'; '.join(reasons)}"
    )
