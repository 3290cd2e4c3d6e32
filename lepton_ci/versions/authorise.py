"""Who a promotion (or a rollback) acts for, and whether the protected policy lets them."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from lepton_ci.core.context import Context
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gha import Runtime
from lepton_ci.core.github import GitHubClient
from lepton_ci.versions.policy import check as check_policy
from lepton_ci.versions.protected import Policy, short


def run_actors(env: Mapping[str, str], actor: str | None) -> list[str | None]:
    """--actor, else who the run is for: a re-run keeps github.actor (who started the first
    attempt) but runs for whoever pressed re-run, github.triggering_actor."""
    return [actor or env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR") or None]


def tag_actors(env: Mapping[str, str], tag: str, actor: str | None) -> list[str | None]:
    return run_actors(env, actor)


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
