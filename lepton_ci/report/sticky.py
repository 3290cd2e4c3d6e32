"""Keep exactly one lepton-ci comment per (model, workflow) on a pull request.

Update path: read the PR's head (1 call), ask who the token is (1 call), list comments until
the marker (1 call per 100), edit (1 call).
Only comments the posting identity wrote count: anyone can write the marker into a comment of
their own (with a huge run number, so that every real report would be judged stale), and such
a comment is neither found, nor edited, nor weighed. The identity is the token's own login
(GET /user); an installation token may not ask, and posts as `github-actions[bot]` when it is
the workflow's GITHUB_TOKEN, or as `APP-SLUG[bot]` when it is a GitHub App's (pass `author`).
An unchanged report makes no edit; a run for an older head sha, or an older run of the same
sha, leaves a newer comment alone. Two runs that both create a comment at once notice it on a
second listing: the oldest comment stays, the other is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton_ci.core.github import ACTIONS_BOT, GitHubClient
from lepton_ci.report.comment import BundleMeta, Rendered, marker, parse_meta


@dataclass
class Upserted:
    action: str  # created, updated, unchanged, stale, skipped
    comment_id: int | None
    url: str | None
    calls: int
    author: str = ACTIONS_BOT  # who wrote the comment: the token's identity
    guessed: str | None = None  # the identity assumed before posting, when it was wrong


def author_of(c: dict[str, Any]) -> str | None:
    user = c.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) else None


def _older(ours: BundleMeta, theirs: dict[str, Any], head_sha: str | None) -> bool:
    """Is our report older than the one already posted?"""
    if head_sha and ours.head_sha != head_sha and theirs.get("sha") == head_sha:
        return True
    if theirs.get("sha") == ours.head_sha:
        # The meta line is in a PR comment's text, which anyone who can comment can write.
        run = theirs.get("run")
        return isinstance(run, int) and not isinstance(run, bool) and ours.run_id < run
    return False


def shown(
    client: GitHubClient, repo: str, pr: int, meta: BundleMeta, author: str | None = None
) -> dict[str, Any] | None:
    """The meta line of the comment this (model, workflow) has on the PR, if any: only the
    posting identity's comment counts, as in `upsert` (anyone can paste the marker)."""
    mark = marker(meta.model, meta.workflow)
    me = author or client.login() or ACTIONS_BOT
    found = next(
        (
            c
            for c in client.issue_comments(repo, pr)
            if author_of(c) == me and str(c.get("body") or "").startswith(mark)
        ),
        None,
    )
    return parse_meta(found["body"]) if found is not None else None


def upsert(
    client: GitHubClient,
    repo: str,
    pr: int,
    rendered: Rendered,
    meta: BundleMeta,
    *,
    head_sha: str | None,
    author: str | None = None,
) -> Upserted:
    """author: the login the token posts as, when GET /user cannot tell (a GitHub App's
    installation token posts as `APP-SLUG[bot]`); default: asked, else github-actions[bot]."""
    start = client.calls
    mark = marker(meta.model, meta.workflow)
    me = author or client.login() or ACTIONS_BOT

    def mine(c: dict[str, Any]) -> bool:
        return author_of(c) == me and str(c.get("body") or "").startswith(mark)

    def done(action: str, c: dict[str, Any], guessed: str | None = None) -> Upserted:
        return Upserted(action, c["id"], c.get("html_url"), client.calls - start, me, guessed)

    # Comments list oldest first and the oldest marker comment is the one kept, so the search
    # stops at the first match: one page for a comment posted early in the thread.
    existing = next((c for c in client.issue_comments(repo, pr) if mine(c)), None)
    if existing is not None:
        old = parse_meta(existing["body"])
        if old.get("digest") == rendered.digest and old.get("sha") == meta.head_sha:
            return done("unchanged", existing)
        if _older(meta, old, head_sha):
            return done("stale", existing)
        return done("updated", client.update_comment(repo, existing["id"], rendered.body))

    created = client.create_comment(repo, pr, rendered.body)
    guessed = None
    if author_of(created) not in (None, me):
        # The token is not who it was taken for (an App's token without `author`): the
        # comment GitHub stored says who it is, and the second listing looks for theirs.
        guessed, me = me, str(author_of(created))
    found = sorted((c for c in client.issue_comments(repo, pr) if mine(c)), key=lambda c: c["id"])
    if len(found) > 1 and found[0]["id"] != created["id"]:
        # Another run created its comment first (or this identity's comment was missed above):
        # ours goes, the oldest carries the report unless it holds a newer one.
        keep = found[0]
        client.delete_comment(repo, created["id"])
        old = parse_meta(keep["body"])
        if old.get("digest") != rendered.digest and not _older(meta, old, head_sha):
            client.update_comment(repo, keep["id"], rendered.body)
        return done("updated", keep, guessed)
    return done("created", created, guessed)
