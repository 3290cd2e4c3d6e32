"""Which registered version a run is compared with, without the user naming one.

In a pull request: the newest version of the model reachable from the merge-base with the base
branch. On a branch: the newest version reachable from HEAD, other than one on HEAD itself.
Either way only a version that passed its gates: a registered failure must never become the bar
the next run is held to (that would let a regression in by two small steps). Nor a version with
nothing to compare with: a tag whose record cannot be read, or one with no record (GTO's) whose
commit holds no metrics files, would let every regression pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lepton_ci.core.errors import BaselineError
from lepton_ci.core.git import Git
from lepton_ci.core.semver import Version
from lepton_ci.versions import grammar as tags
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


def _target(git: Git, head: str, base_ref: str | None) -> tuple[str, str]:
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
    git: Git,
    model: str,
    *,
    base_ref: str | None = None,
    remote_check: bool = True,
    on_skip: Callable[[str], None] | None = None,
    unrecorded: Callable[[str, str], str | None] | None = None,
) -> Resolved | None:
    """None means the model has no version yet: a first version, not an error. Each newer
    version passed over (failed gates, no readable record) is told to `on_skip`.
    `unrecorded(tag, sha)` says why a version without a record cannot be compared with (no
    metrics at its commit), or None when it can."""
    head = git.head()
    target, how = _target(git, head, base_ref)
    reg = Registry(git)
    state = reg.read(model)
    # registered, not deregistered, annotated tags only; a tag on HEAD is this very version.
    # Walked lazily: the baseline is nearly always among the newest few of 10,000.
    newest_first = (v for v in state.versions(model) if base_ref or v.sha != head)
    shallow = git.is_shallow()
    reachable = _Reachable(git, target, model, every=shallow)
    best = None
    for v in newest_first:
        if not reachable(v.tag, v.sha):
            continue
        why = _not_baseline(reg, v.tag, v.sha, unrecorded)
        if why is None:
            best = v
            break
        if on_skip is not None:
            on_skip(f"{v.tag} {why}, so it is not the baseline")

    if shallow:
        # Past the shallow boundary git cannot tell ancestry; answer only when certain.
        unknown = [
            v
            for v in state.versions(model)
            if (base_ref or v.sha != head)
            and not reachable(v.tag, v.sha)
            and (best is None or v.version.sort_key() > best.version.sort_key())
        ]
        if unknown:
            raise BaselineError(
                f"this clone is shallow, so lepton-ci cannot tell whether {unknown[0].tag} "
                f"is an ancestor of {how}",
                hint=_fetch_hint(git, "the history is cut short"),
            )
    if best is None and remote_check:
        _check_remote_tags(git, model)
    if best is None:
        return None
    why = f"newest {model} version that passed its gates, reachable from {how}"
    return Resolved(best.tag, best.version, best.sha, target, why)


class _Reachable:
    """Is a version's commit an ancestor of the target? The newest versions usually are, so the
    first few are asked one by one (a few ms each); past that, or in a shallow clone (where the
    answer needs the whole list), one `git tag --merged` answers for every tag at once."""

    PROBES = 8

    def __init__(self, git: Git, target: str, model: str, *, every: bool) -> None:
        self.git, self.target, self.model = git, target, model
        self.asked = 0
        self.merged: set[str] | None = self._merged() if every else None

    def _merged(self) -> set[str]:
        glob = tags.version_glob(self.model)
        out = self.git.run(["tag", "--merged", self.target, "--list", glob]).stdout
        return set(out.split())

    def __call__(self, tag: str, sha: str) -> bool:
        if self.merged is None and self.asked < self.PROBES:
            self.asked += 1
            return self.git.ok("merge-base", "--is-ancestor", sha, self.target)
        if self.merged is None:
            self.merged = self._merged()
        return tag in self.merged


def _not_baseline(
    reg: Registry, tag: str, sha: str, unrecorded: Callable[[str, str], str | None] | None
) -> str | None:
    """Why a registered version cannot be the bar (its failed gates, a record that cannot be
    read, nothing to compare with), or None when it can, whoever wrote the tag."""
    rec = reg.record(tag)
    if tag in reg.skipped:
        return "carries a record that cannot be read"
    if rec is None:  # a GTO version: its committed metrics files stand in for the record
        return unrecorded(tag, sha) if unrecorded is not None else None
    if rec.verdict != "fail":
        return None
    failed = ", ".join(g.metric for g in rec.gates if g.verdict == "fail") or "verdict: fail"
    return f"failed its gates ({failed})"


def _check_remote_tags(git: Git, model: str) -> None:
    """No baseline: make sure that is not just a clone that never fetched the tags. Tag names
    are compared, so a fresh clone of a registered commit (its own tag fetched) passes."""
    if "origin" not in git.remotes():
        return
    proc = git.run(
        ["ls-remote", "--tags", "--refs", "origin", f"refs/tags/{tags.version_glob(model)}"],
        check=False,
        timeout=30,
    )
    remote = {line.split("refs/tags/", 1)[-1] for line in proc.stdout.splitlines() if line.strip()}
    local = set(git.run(["tag", "--list", tags.version_glob(model)]).stdout.split())
    missing = sorted(remote - local) if proc.returncode == 0 else []
    if missing:
        n = len(missing)
        raise BaselineError(
            f"origin has {n} version tag(s) of {model} that this clone has not fetched",
            hint=_fetch_hint(git, "tags are missing"),
        )
