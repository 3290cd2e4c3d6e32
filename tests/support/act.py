"""Run the project's actions and example workflows with nektos/act in host mode.

The workflows run exactly as shipped in examples/workflows: act's --local-repository maps
`lepton-ci/lepton-ci@v1` to a clean copy of this repository, and the pinned artifact and
cache actions to local stand-ins (GitHub's artifact and cache services cannot run here).
act runs offline, no Docker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
STANDINS = Path(__file__).resolve().parent / "actions"
PINNED = re.compile(r"(actions/(?:upload-artifact|download-artifact|cache))@([0-9a-f]{40})")


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
        ignore=shutil.ignore_patterns("model.json", "metrics.json", ".lepton", "__pycache__"),
    )
    wf_dir = dest / ".github" / "workflows"
    wf_dir.mkdir(parents=True)
    for name in workflows:
        shutil.copy(ROOT / "examples" / "workflows" / name, wf_dir / name)
    (dest / ".gitignore").write_text(".lepton/\nmodel.json\nmetrics.json\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "feat: digits")
    return dest


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
    timeout: float = 600,
    variables: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    event_file = home / f"event-{event}.json"
    event_file.write_text(json.dumps(payload))
    text = (workspace / ".github" / "workflows" / workflow).read_text()
    cmd = [
        "act",
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
        f"lepton-ci/lepton-ci@v1={action}",
        "--env",
        f"LEPTON_PYTHON={sys.executable}",
    ]
    for repo, sha in set(PINNED.findall(text)):
        cmd += ["--local-repository", f"{repo}@{sha}={STANDINS / repo.split('/')[1]}"]
    if actor:
        cmd += ["--actor", actor]
    for k, v in (env or {}).items():
        cmd += ["--env", f"{k}={v}"]
    for k, v in (secrets or {}).items():
        cmd += ["-s", f"{k}={v}"]
    for k, v in (variables or {}).items():
        cmd += ["--var", f"{k}={v}"]
    run_env = {**os.environ, "ACT_DISABLE_VERSION_CHECK": "1", "HOME": str(home)}
    return subprocess.run(
        cmd, cwd=workspace, capture_output=True, text=True, timeout=timeout, env=run_env
    )
