"""Webhook payloads for the act tests, built from GitHub's own examples.

Every event starts as a real payload from the npm package `@octokit/webhooks-examples`
(unpacked by .ci/setup into the test cache) and is re-pointed at the test repository and its
commits, so the workflows read the fields GitHub really sends, not ones we imagined.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from tests.support.openapi import CACHE

EXAMPLES = CACHE / "webhooks-examples" / "api.github.com" / "index.json"
REPO = "acme/models"
ZERO = "0" * 40


@cache
def _examples() -> dict[str, list[dict[str, Any]]]:
    if not EXAMPLES.is_file():
        raise FileNotFoundError(
            f"{EXAMPLES} is missing: run `bash .ci/setup` (it npm-packs @octokit/webhooks-examples)"
        )
    return {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}


def example(event: str, **match: Any) -> dict[str, Any]:
    """A deep copy of the first example of `event` whose top-level fields match."""
    for e in _examples()[event]:
        if all(
            (e.get(k) or "").startswith(v[:-1])
            if isinstance(v, str) and v.endswith("*")
            else e.get(k) == v
            for k, v in match.items()
        ):
            return copy.deepcopy(e)
    raise LookupError(f"no {event} example with {match}")


def _replace(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, list):
        return [_replace(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, old, new) for k, v in obj.items()}
    return obj


def repository(template: dict[str, Any], full_name: str = REPO, *, fork: bool = False) -> Any:
    """An example's repository object, re-pointed at `full_name` (URLs included)."""
    repo = _replace(template, template["full_name"], full_name)
    owner, name = full_name.split("/")
    repo.update(full_name=full_name, name=name, fork=fork)
    if "default_branch" in repo:
        repo["default_branch"] = "main"
    repo["owner"]["login"] = owner
    if "name" in repo["owner"]:
        repo["owner"]["name"] = owner
    return repo


def _sender(e: dict[str, Any], login: str) -> None:
    e["sender"] = _replace(e["sender"], e["sender"]["login"], login)


def pull_request(
    number: int,
    head_sha: str,
    base_sha: str,
    *,
    action: str = "synchronize",
    fork: bool = False,
    title: str = "A change",
    head_ref: str = "feature",
    sender: str = "dev",
) -> dict[str, Any]:
    e = example("pull_request", action=action)
    pr = e["pull_request"]
    base_repo = repository(e["repository"])
    head_owner = "forker" if fork else REPO.split("/")[0]
    head_repo = repository(pr["head"]["repo"], f"{head_owner}/models", fork=fork)
    pr.update(number=number, title=title, state="open")
    pr["head"].update(sha=head_sha, ref=head_ref, label=f"{head_owner}:{head_ref}", repo=head_repo)
    pr["base"].update(sha=base_sha, ref="main", label="acme:main", repo=base_repo)
    e.update(number=number, repository=base_repo)
    if action == "synchronize":
        e["after"] = head_sha
    _sender(e, sender)
    return e


# Every conclusion a finished workflow run can have (GitHub's check-run conclusions).
CONCLUSIONS = (
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
    "stale",
    "startup_failure",
)


def workflow_run(
    head_sha: str,
    *,
    run_id: int,
    workflow: str = "model-pr",
    event: str = "pull_request",
    head_repo: str = REPO,
    head_branch: str = "feature",
    pull_requests: list[dict[str, Any]] | None = None,
    conclusion: str = "success",
) -> dict[str, Any]:
    """A finished workflow_run with `conclusion`. GitHub sends `pull_requests: []` for a PR
    from a fork. A run waiting for approval is GitHub's own `requested` example (status
    completed, conclusion action_required); the others are its `completed` one."""
    if conclusion not in CONCLUSIONS:
        raise ValueError(f"no such conclusion: {conclusion}")
    if conclusion == "action_required":
        e = next(
            copy.deepcopy(x)
            for x in _examples()["workflow_run"]
            if x["workflow_run"]["conclusion"] == "action_required"
        )
    else:
        e = next(
            copy.deepcopy(x)
            for x in _examples()["workflow_run"]
            if x["action"] == "completed" and x["workflow_run"]["status"] == "completed"
        )
    run = e["workflow_run"]
    repo = repository(e["repository"])
    run.update(
        id=run_id,
        name=workflow,
        event=event,
        head_sha=head_sha,
        head_branch=head_branch,
        status="completed",
        conclusion=conclusion,
        pull_requests=pull_requests or [],
        repository=repository(run["repository"]),
        head_repository=repository(run["head_repository"], head_repo, fork=head_repo != REPO),
    )
    e["repository"] = repo
    return e


def push(ref: str, after: str, *, before: str = ZERO, sender: str = "dev") -> dict[str, Any]:
    """A push of a branch or (ref refs/tags/...) of a new tag."""
    kind = "refs/tags/*" if ref.startswith("refs/tags/") else "refs/heads/*"
    e = example("push", ref=kind)
    e.update(ref=ref, before=before, after=after, created=before == ZERO, commits=[])
    e["repository"] = repository(e["repository"])
    if e.get("head_commit"):
        e["head_commit"]["id"] = after
    e["pusher"] = {"name": sender, "email": f"{sender}@users.noreply.github.com"}
    _sender(e, sender)
    return e


def workflow_dispatch(
    inputs: dict[str, str], workflow: str, *, sender: str = "dev"
) -> dict[str, Any]:
    e = example("workflow_dispatch", ref="refs/heads/main")
    e.update(inputs=inputs, workflow=f".github/workflows/{workflow}")
    e["repository"] = repository(e["repository"])
    _sender(e, sender)
    return e
