"""Keep exactly one lepton-ci comment per (model, workflow) on a pull request.

Update path: read the PR's head (1 call), list comments until the marker (1 call per 100),
edit (1 call).
An unchanged report makes no edit; a run for an older head sha, or an older run of the same
sha, leaves a newer comment alone. Two runs that both create a comment at once notice it on a
second listing: the oldest comment stays, the other is deleted.
Only comments lepton-ci posted count, whatever they say: anyone may paste the marker (and a
forged report date) into a comment of their own. Installation tokens (the workflow's
GITHUB_TOKEN, an App's) post as a bot, which no person can comment as; a personal token posts
as its user, asked of GitHub (one call) only when a person's comment carries the marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lepton_ci.core.github import GitHubClient
from lepton_ci.report.comment import BundleMeta, Rendered, marker, parse_meta


@dataclass
class Upserted:
    action: str  # created, updated, unchanged, stale
    comment_id: int | None
    url: str | None
    calls: int


def _older(ours: BundleMeta, theirs: dict[str, Any], head_sha: str | None) -> bool:
    """Is our report older than the one already posted?"""
    if head_sha and ours.head_sha != head_sha and theirs.get("sha") == head_sha:
        return True
    if theirs.get("sha") == ours.head_sha:
        # The meta line is in a PR comment's text, which anyone who can comment can write.
        run = theirs.get("run")
        return isinstance(run, int) and not isinstance(run, bool) and ours.run_id < run
    return False


def upsert(
    client: GitHubClient,
    repo: str,
    pr: int,
    rendered: Rendered,
    meta: BundleMeta,
    *,
    head_sha: str | None,
) -> Upserted:
    start = client.calls
    mark = marker(meta.model, meta.workflow)
    me: list[str | None] = []  # the token's user, once asked

    def mine(comments: Iterable[dict[str, Any]], *, first: bool) -> list[dict[str, Any]]:
        """Marker comments lepton-ci posted, oldest first (with `first`: only the oldest, the
        listing read no further than a bot's). A person's marker comment is weighed, and
        GitHub asked who the token is, only when no bot's comment was found."""
        bots, people = [], []
        for c in comments:
            if not str(c.get("body", "")).startswith(mark):
                continue
            author = c.get("user")
            author = author if isinstance(author, dict) else {}
            if author.get("type") == "Bot":
                bots.append(c)
                if first:
                    break
            else:
                people.append(c)
        if people and not (first and bots):
            if not me:
                me.append(client.login())
            bots += [c for c in people if me[0] is not None and c["user"].get("login") == me[0]]
        return sorted(bots, key=lambda c: int(c["id"]))

    def ours() -> list[dict[str, Any]]:
        return mine(client.issue_comments(repo, pr), first=False)

    # Comments list oldest first and the oldest marker comment is the one kept, so the search
    # stops at the first bot's: one page for a comment posted early in the thread.
    existing = next(iter(mine(client.issue_comments(repo, pr), first=True)), None)
    if existing is not None:
        old = parse_meta(existing["body"])
        if old.get("digest") == rendered.digest and old.get("sha") == meta.head_sha:
            return Upserted(
                "unchanged", existing["id"], existing.get("html_url"), client.calls - start
            )
        if _older(meta, old, head_sha):
            return Upserted("stale", existing["id"], existing.get("html_url"), client.calls - start)
        c = client.update_comment(repo, existing["id"], rendered.body)
        return Upserted("updated", c["id"], c.get("html_url"), client.calls - start)

    created = client.create_comment(repo, pr, rendered.body)
    found = ours()
    if len(found) > 1 and found[0]["id"] != created["id"]:
        # Another run created its comment first: ours goes, theirs carries the newer report.
        keep = found[0]
        client.delete_comment(repo, created["id"])
        old = parse_meta(keep["body"])
        if old.get("digest") != rendered.digest and not _older(meta, old, head_sha):
            client.update_comment(repo, keep["id"], rendered.body)
        return Upserted("updated", keep["id"], keep.get("html_url"), client.calls - start)
    return Upserted("created", created["id"], created.get("html_url"), client.calls - start)
