"""Promotion policy: may this GitHub user promote to this stage? Asked of the GitHub API."""

from __future__ import annotations

import re

from lepton_ci.core.config import PromotionPolicy
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.github import GitHubClient, GitHubError

LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(\[bot\])?")
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
            hint="run in GitHub Actions (GITHUB_TRIGGERING_ACTOR) or pass --actor LOGIN",
        )
    if not LOGIN.fullmatch(actor):
        # It goes into API paths: `x/../..` must not ask GitHub about something else.
        raise RegistryError(
            f"`{actor}` is not a GitHub login", hint="pass --actor the login of who promotes"
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
    # Permission first: the workflow's own token can read it, while teams need a token with
    # organization Members: read.
    if policy.permission:
        level = _permission(client, repo, actor)
        if RANK[level] >= RANK[policy.permission]:
            return f"{actor} has {level} permission"
    for team in policy.teams:
        if _member(client, team, actor):
            return f"{actor} is a member of {team}"
    raise refused


def _permission(client: GitHubClient, repo: str, actor: str) -> str:
    """The actor's level in `repo`. GitHub says `none` for someone without access and 404
    for a login that is no user, and 404 too for a repository the token cannot see: the
    repository is asked then, so a wrong token is said so, not taken for "not allowed"."""
    try:
        return _level(client.json("GET", f"/repos/{repo}/collaborators/{actor}/permission"))
    except GitHubError as e:
        if e.status != 404:
            raise
    try:
        client.json("GET", f"/repos/{repo}")
    except GitHubError as e:
        if e.status not in (403, 404):
            raise
        raise RegistryError(
            f"cannot read {actor}'s permission: the token sees no repository {repo} "
            f"(GitHub answered {e.status})",
            hint="the workflow's GITHUB_TOKEN is made for its own repository only: check "
            "GITHUB_REPOSITORY, or pass `github-token:` one that can read this repository",
        ) from None
    return "none"  # the repository is there: the login is no GitHub user


def _level(answer: object) -> str:
    """The permission level a collaborator-permission answer grants.

    `role_name` is the repository role: a base role, or a custom role's own name (which says
    nothing about its level). `permission` is always a base level, with maintain read as write
    and triage as read, so a custom role ranks by the base it inherits, never higher."""
    if not isinstance(answer, dict):
        return "none"
    role = str(answer.get("role_name") or "")
    if role in RANK:
        return role
    permission = str(answer.get("permission") or "none")
    return permission if permission in RANK else "none"


def _member(client: GitHubClient, team: str, actor: str) -> bool:
    org, slug = team.split("/")
    try:
        # A token that cannot read the team sees it as missing, and a non-member as missing
        # too: read the team first so "cannot tell" never reads as "not a member".
        client.json("GET", f"/orgs/{org}/teams/{slug}")
    except GitHubError as e:
        if e.status not in (403, 404):
            raise
        raise RegistryError(
            f"cannot read team {team} to check {actor}'s membership: GitHub answered "
            f"{e.status}. The workflow's GITHUB_TOKEN never has the organization permission "
            "Members: read, so it cannot see teams (or the team does not exist)",
            hint="pass `github-token:` a fine-grained PAT or a GitHub App installation token "
            "with organization Members: read, e.g. `${{ secrets.LEPTON_TEAMS_TOKEN }}`; "
            "or check the team slug in lepton.yaml",
        ) from None
    try:
        m = client.json("GET", f"/orgs/{org}/teams/{slug}/memberships/{actor}")
    except GitHubError as e:
        if e.status == 404:
            return False
        raise
    return isinstance(m, dict) and m.get("state") == "active"
