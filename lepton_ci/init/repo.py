"""What git says about the directory `init` writes into."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lepton_ci.core.errors import InputError


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
    )


def refuse_git_dir(root: Path) -> None:
    """A bare repository or the inside of `.git` has no work tree: files written there would
    land among git's own (and a `config` or `HEAD` there is git's, not ours)."""
    proc = _git(root, "rev-parse", "--is-bare-repository", "--is-inside-git-dir")
    answers = proc.stdout.split() if proc.returncode == 0 else []
    if "true" in answers:
        kind = "a bare repository" if answers[0] == "true" else "inside a git directory"
        raise InputError(
            f"{root} is {kind}: it has no work tree for lepton.yaml and the workflows",
            hint="run `lepton-ci init` in a clone (git clone THIS-REPO work && cd work)",
        )


def has_commit(root: Path) -> bool:
    """`lepton-ci run` records a commit: a repository without one cannot run yet."""
    return _git(root, "rev-parse", "--verify", "-q", "HEAD").returncode == 0


def origin(root: Path) -> str | None:
    """OWNER/NAME of a GitHub `origin`, for the image's default name."""
    url = _git(root, "remote", "get-url", "origin").stdout.strip()
    for prefix in ("https://github.com/", "git@github.com:", "ssh://git@github.com/"):
        if url.startswith(prefix):
            path = url[len(prefix) :].removesuffix(".git").strip("/")
            if path.count("/") == 1:
                return path.lower()
    return None
