"""The stages policy `promote`, `accept-tag` and `rollback` obey, read from a protected ref.

The work tree and the ref being promoted are the promoter's to choose: `model-promote` can be
dispatched from any branch, and `model-tag` runs the tagged commit. A policy read from either
lets any writer bring their own `stages.*.allow`. So the policy is the one committed on the
repository's default branch (or on the protected ref that branch's lepton.yaml names in
`policy.ref`, or `LEPTON_POLICY_REF`), read with git from that ref, never from the work tree.

Which ref is the default branch:
1. `<remote>/HEAD`, as `git clone` sets it;
2. in GitHub Actions, the event's `repository.default_branch` (actions/checkout sets no
   `origin/HEAD`), as `<remote>/<branch>`; when this clone lacks it, an error says how to fetch
   it: in CI a wrong guess would be a way round the policy;
3. outside Actions only, a local default branch (`init.defaultBranch`, `main`, `master`; the
   remote's copy first), with a warning: a person at a terminal can push any tag anyway, and
   the tag workflow checks it again against the remote's default branch, so refusing to work
   in a clone without a remote would protect nothing and stop the local workflow.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core import config as config_mod
from lepton_ci.core.config import Config, StageConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import ConfigError
from lepton_ci.core.gha import Runtime, load_event

ENV = "LEPTON_POLICY_REF"
FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
FETCH_HINT = (
    "give actions/checkout `fetch-depth: 0` (it then fetches every branch), or set "
    f"{ENV} to a ref this clone has"
)


@dataclass(frozen=True)
class Policy:
    """The stages as a protected ref has them, and where they were read."""

    stages: dict[str, StageConfig]
    ref: str  # as resolved, e.g. refs/remotes/origin/main
    commit: str
    why: str  # how that ref was chosen, for messages
    # the whole lepton.yaml on that ref: a soak rule reads where the required stage's deploy
    # history lives from it too, never from the work tree
    config: Config | None = None

    @property
    def where(self) -> str:
        return f"{short(self.ref)} ({self.commit[:12]})"


def short(ref: str) -> str:
    for prefix in ("refs/remotes/", "refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def load(ctx: Context, remote: str = "origin") -> Policy:
    """The policy to obey; warns when the work tree's differs from it."""
    explicit = ctx.env.get(ENV, "").strip()
    if explicit:
        if not (explicit.startswith("refs/") or FULL_COMMIT.fullmatch(explicit)):
            # git resolves `main` or `origin/main` to a tag of that name before the branch:
            # whoever can push a tag would choose the policy.
            raise ConfigError(
                f"{ENV}={explicit}: give the protected ref by its full name (a short name "
                "would resolve to a tag of that name before the branch)",
                hint=f"e.g. {ENV}=refs/heads/{explicit.removeprefix(f'{remote}/')}, or a "
                "full commit id",
            )
        ref = _named(ctx, explicit, remote)
        if ref is None:
            raise ConfigError(
                f"{ENV}={explicit}: no such branch, tag or commit in this clone",
                hint=FETCH_HINT if _in_actions(ctx) else f"fetch it, or unset {ENV}",
            )
        policy, _ = _read(ctx, ref, f"{ENV}={explicit}")
    else:
        ref, why = _default_branch(ctx, remote)
        policy, cfg = _read(ctx, ref, why)
        named = cfg.policy.ref
        if named is not None:
            target = _named(ctx, named, remote)
            if target is None:
                raise ConfigError(
                    f"`policy.ref: {named}` in {_source(ctx, policy.ref)} names a ref that is "
                    "not in this clone",
                    hint=FETCH_HINT if _in_actions(ctx) else f"fetch it: `git fetch {remote}`",
                )
            policy, _ = _read(ctx, target, f"`policy.ref` on {short(policy.ref)}")
    _compare(ctx, policy)
    return policy


def _say(ctx: Context) -> Runtime:
    """Warnings go to stderr: stdout may be the command's JSON."""
    return Runtime(ctx.env, sys.stderr)


def _in_actions(ctx: Context) -> bool:
    return ctx.env.get("GITHUB_ACTIONS") == "true"


def _commit(ctx: Context, ref: str) -> str | None:
    if ref.startswith("-"):
        return None
    proc = ctx.git.run(["rev-parse", "--verify", "-q", f"{ref}^{{commit}}"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _named(ctx: Context, name: str, remote: str) -> str | None:
    """A ref as a user names it, resolved in this clone. A branch is read from the remote's
    copy when there is one: a local branch may carry commits nobody reviewed."""
    candidates = [name]
    if name.startswith("refs/heads/"):
        candidates.insert(0, f"refs/remotes/{remote}/{name.removeprefix('refs/heads/')}")
    return next((c for c in candidates if _commit(ctx, c) is not None), None)


def _default_branch(ctx: Context, remote: str) -> tuple[str, str]:
    git = ctx.git
    head = git.run(["symbolic-ref", "-q", f"refs/remotes/{remote}/HEAD"], check=False)
    target = head.stdout.strip()
    if head.returncode == 0 and target and _commit(ctx, target) is not None:
        return target, f"{remote}/HEAD"
    repository = load_event(ctx.env).get("repository")
    branch = repository.get("default_branch") if isinstance(repository, dict) else None
    if isinstance(branch, str) and branch:
        found = _named(ctx, f"refs/heads/{branch}", remote)
        if found is None:
            raise ConfigError(
                f"the default branch `{branch}` is not in this clone, so the promotion policy "
                "cannot be read from it (it is never read from the work tree)",
                hint=FETCH_HINT,
            )
        return found, f"the default branch ({branch})"
    if _in_actions(ctx):
        raise ConfigError(
            "cannot tell the repository's default branch: no "
            f"{remote}/HEAD and no `repository.default_branch` in the event",
            hint=f"set {ENV} to the protected branch, e.g. refs/heads/main",
        )
    names = [git.run(["config", "init.defaultBranch"], check=False).stdout.strip()]
    for name in dict.fromkeys(n for n in [*names, "main", "master"] if n):
        found = _named(ctx, f"refs/heads/{name}", remote)
        if found is not None:
            missing = f"no {remote}/HEAD" if remote in git.remotes() else f"no remote `{remote}`"
            _say(ctx).warning(
                f"{missing} in this clone: the promotion policy is read from the local "
                f"default branch, {short(found)}; in CI it is read from the remote's",
                title="lepton-ci policy",
            )
            return found, f"the local default branch ({short(found)})"
    raise ConfigError(
        f"cannot tell the default branch to read the promotion policy from: no {remote}/HEAD "
        "and no branch main or master",
        hint=f"run `git remote set-head {remote} --auto`, or set {ENV}=refs/heads/BRANCH",
    )


def _path_in_repo(ctx: Context) -> str:
    """lepton.yaml's path in the repository (`../...` when it lies outside)."""
    return Path(os.path.relpath(ctx.cfg.path, ctx.git.toplevel())).as_posix()


def _source(ctx: Context, ref: str) -> str:
    return f"{short(ref)}:{_path_in_repo(ctx)}"


def _config_at(ctx: Context, ref: str, commit: str) -> Config:
    path = _path_in_repo(ctx)
    if path.startswith("../"):
        raise ConfigError(
            f"{ctx.cfg.path} is outside the repository, so its policy cannot be read from "
            f"{short(ref)}",
            hint="keep lepton.yaml in the repository",
        )
    data = ctx.git.blob(commit, path)
    if data is None:
        raise ConfigError(
            f"{short(ref)} ({commit[:12]}) has no {path}: the promotion policy is read from "
            "there, never from the work tree or the ref being promoted",
            hint=f"merge {path} into {short(ref)} first",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{_source(ctx, ref)} is not UTF-8 text") from None
    return config_mod.parse(text, _source(ctx, ref))


def _read(ctx: Context, ref: str, why: str) -> tuple[Policy, Config]:
    commit = _commit(ctx, ref)
    if commit is None:  # pragma: no cover - every caller resolved it just before
        raise ConfigError(f"{ref} is not in this clone", hint=FETCH_HINT)
    cfg = _config_at(ctx, ref, commit)
    return Policy(dict(cfg.stages), ref, commit, why, cfg), cfg


def _compare(ctx: Context, policy: Policy) -> None:
    here = ctx.cfg.config.stages
    changed = sorted(
        name for name in {*here, *policy.stages} if here.get(name) != policy.stages.get(name)
    )
    if changed:
        _say(ctx).warning(
            f"the stages policy in the work tree's {ctx.cfg.path.name} differs from the one "
            f"on {policy.where} (stages {', '.join(changed)}); the one on {short(policy.ref)} "
            f"is obeyed: {policy.why}",
            title="lepton-ci policy",
        )
