"""Promotion policy: may this GitHub user promote to this stage? Asked of the GitHub API."""

from __future__ import annotations

from lepton_ci.core.config import PromotionPolicy
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.github import GitHubClient, GitHubError

RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


def who_may(policy: PromotionPolicy) -> str:
    parts = []
    if policy.users:
        parts.append("users " + ", ".join(policy.users))
    if policy.teams:
        parts.append("members of " + ", ".join(policy.teams))
    if policy.permission:
        parts.append(f"anyone with {policy.permission} permission or higher")
    return "; ".join(parts) or "nobody"


def check(
    policy: PromotionPolicy,
    actor: str | None,
    stage: str,
    *,
    client: GitHubClient | None,
    repo: str | None,
) -> str:
    """Return why the actor may promote, or raise RegistryError saying who may."""
    if not actor:
        raise RegistryError(
            f"stage `{stage}` has a promotion policy, but who is promoting is unknown",
            hint="run in GitHub Actions (GITHUB_ACTOR) or pass --actor LOGIN",
        )
    if actor in policy.users:
        return f"{actor} is listed for `{stage}`"
    refused = RegistryError(
        f"{actor} may not promote to `{stage}`; who may: {who_may(policy)}",
        hint=f"ask one of them to promote, or change `stages.{stage}.allow` in lepton.yaml",
    )
    if not (policy.teams or policy.permission):
        raise refused
    if client is None or not repo:
        raise RegistryError(
            f"cannot check {actor}'s teams or permission for `{stage}` without the GitHub API",
            hint="set GITHUB_REPOSITORY and GITHUB_TOKEN (a token that can read org teams)",
        )
    for team in policy.teams:
        org, slug = team.split("/")
        try:
            m = client.json("GET", f"/orgs/{org}/teams/{slug}/memberships/{actor}")
        except GitHubError as e:
            if e.status == 404:
                continue
            raise
        if isinstance(m, dict) and m.get("state") == "active":
            return f"{actor} is a member of {team}"
    if policy.permission:
        p = client.json("GET", f"/repos/{repo}/collaborators/{actor}/permission")
        level = "none"
        if isinstance(p, dict):
            level = str(p.get("role_name") or p.get("permission") or "none")
        if RANK.get(level, 0) >= RANK[policy.permission]:
            return f"{actor} has {level} permission"
    raise refused
