"""Keep exactly one lepton-ci comment per (model, workflow) on a pull request.

Update path: read the PR's head (1 call), list comments until the marker (1 call per 100),
edit (1 call).
An unchanged report makes no edit; a run for an older head sha, or an older run of the same
sha, leaves a newer comment alone. Two runs that both create a comment at once notice it on a
second listing: the oldest comment stays, the other is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton_ci.core.github import GitHubClient
from lepton_ci.report.comment import BundleMeta, Rendered, marker, parse_meta


@dataclass
class Upserted:
    action: str  # created, updated, unchanged, stale, skipped
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


def shown(client: GitHubClient, repo: str, pr: int, meta: BundleMeta) -> dict[str, Any] | None:
    """The meta line of the comment this (model, workflow) has on the PR, if any."""
    mark = marker(meta.model, meta.workflow)
    found = next(
        (c for c in client.issue_comments(repo, pr) if c.get("body", "").startswith(mark)), None
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
) -> Upserted:
    start = client.calls
    mark = marker(meta.model, meta.workflow)

    def ours() -> list[dict[str, Any]]:
        found = [c for c in client.issue_comments(repo, pr) if c.get("body", "").startswith(mark)]
        return sorted(found, key=lambda c: int(c["id"]))

    # Comments list oldest first and the oldest marker comment is the one kept, so the search
    # stops at the first match: one page for a comment posted early in the thread.
    existing = next(
        (c for c in client.issue_comments(repo, pr) if c.get("body", "").startswith(mark)), None
    )
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
