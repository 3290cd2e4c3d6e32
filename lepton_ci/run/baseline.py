"""Which registered version a run is compared with, without the user naming one.

In a pull request: the newest version of the model reachable from the merge-base with the base
branch. On a branch: the newest version reachable from HEAD, other than one on HEAD itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lepton_ci.core.errors import BaselineError
from lepton_ci.core.git import Git
from lepton_ci.core.semver import Version
from lepton_ci.versions import grammar as tags
from lepton_ci.versions.grammar import Action
from lepton_ci.versions.registry import Registry


@dataclass(frozen=True)
class Resolved:
    tag: str
    version: Version
    sha: str
    target: str  # the commit the search started from
    why: str


def pr_base_ref(env: Mapping[str, str]) -> str | None:
    return env.get("GITHUB_BASE_REF") or None


def _fetch_hint(git: Git, what: str) -> str:
    unshallow = "--unshallow " if git.is_shallow() else ""
    return (
        f"run `git fetch {unshallow}--tags origin` before lepton-ci ({what}); with "
        "actions/checkout, `fetch-depth: 0` fetches history and tags"
    )


def _target(git: Git, base_ref: str | None) -> tuple[str, str]:
    head = git.head()
    if not base_ref:
        return head, "HEAD"
    for ref in (f"origin/{base_ref}", base_ref):
        if git.rev_exists(ref):
            mb = git.merge_base(head, ref)
            if mb is None:
                raise BaselineError(
                    f"no merge-base between HEAD and {ref}",
                    hint=_fetch_hint(git, "the history is cut short")
                    if git.is_shallow()
                    else "is the base branch related to this branch?",
                )
            return mb, f"merge-base with {ref}"
    raise BaselineError(
        f"the pull request's base branch `{base_ref}` is not in this clone",
        hint=f"run `git fetch origin {base_ref}` before lepton-ci",
    )


def resolve(
    git: Git, model: str, *, base_ref: str | None = None, remote_check: bool = True
) -> Resolved | None:
    """None means the model has no version yet: a first version, not an error."""
    target, how = _target(git, base_ref)
    head = git.head()
    merged = git.run(["tag", "--merged", target, "--list", f"{model}@v*"]).stdout.split()
    state = Registry(git).read(model)
    deregistered = {e.version for e in state.history(model) if e.action is Action.DEREGISTER}
    sha_of = {e.tag: e.sha for e in state.history(model)}
    candidates = []
    for name in merged:
        parsed = tags.parse(name)
        if parsed is None or parsed.action is not Action.REGISTER or parsed.model != model:
            continue
        if parsed.version in deregistered:
            continue
        if not base_ref and sha_of.get(name) == head:
            continue  # a tag on HEAD is this very version, not its baseline
        candidates.append((Version.parse(parsed.version or ""), name))
    best = max(candidates, key=lambda c: c[0].sort_key()) if candidates else None

    all_versions = [v for v in state.versions(model) if v.sha != head or base_ref]
    if git.is_shallow():
        # Past the shallow boundary git cannot tell ancestry; answer only when certain.
        unknown = [
            v
            for v in all_versions
            if v.tag not in merged and (best is None or v.version.sort_key() > best[0].sort_key())
        ]
        if unknown:
            raise BaselineError(
                f"this clone is shallow, so lepton-ci cannot tell whether {unknown[0].tag} "
                f"is an ancestor of {how}",
                hint=_fetch_hint(git, "the history is cut short"),
            )
    if best is None and not all_versions and remote_check:
        _check_remote_tags(git, model)
    if best is None:
        return None
    version, name = best
    return Resolved(
        name, version, sha_of[name], target, f"newest {model} version reachable from {how}"
    )


def _check_remote_tags(git: Git, model: str) -> None:
    """No local tags: make sure that is not just a clone that never fetched them."""
    if "origin" not in git.remotes():
        return
    proc = git.run(
        ["ls-remote", "--tags", "--refs", "origin", f"refs/tags/{model}@v*"],
        check=False,
        timeout=30,
    )
    if proc.returncode == 0 and proc.stdout.strip():
        n = len(proc.stdout.strip().splitlines())
        raise BaselineError(
            f"origin has {n} version tag(s) of {model} that this clone has not fetched",
            hint=_fetch_hint(git, "tags are missing"),
        )
