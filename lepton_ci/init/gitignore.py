"""`.lepton/` and what training writes, kept out of git so a run leaves the tree clean.

A run whose outputs show up as untracked files is recorded dirty and cannot be registered.
git itself says what is ignored already (`git check-ignore`, whatever the pattern's spelling
or file); only the rest is appended, once, under a comment. Files git tracks are left alone:
ignoring them would change nothing and hide the user's choice to commit them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

HEADER = "# lepton-ci: its local state and what training writes"


def _git(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _in_git(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"


def _already(root: Path, paths: list[str]) -> set[str]:
    """Paths git ignores already, or tracks (either way: nothing to add)."""
    if not paths or not _in_git(root):
        return set()
    ignored = _git(root, "check-ignore", "--stdin", "-z", stdin="\0".join(paths) + "\0")
    tracked = _git(root, "ls-files", "-z", "--", *paths)
    out = {p for p in ignored.stdout.split("\0") if p}
    for p in (p for p in tracked.stdout.split("\0") if p):
        out |= {q for q in paths if p == q or p.startswith(q.rstrip("/") + "/")}
    return out


def entry(path: str) -> str:
    """A .gitignore line that matches exactly `path` from the root (escaped as git reads it)."""
    # the leading `/` anchors it, and keeps a `#` or `!` from starting the line
    escaped = "".join(f"\\{c}" if c in "\\*?[" else c for c in path.lstrip("/"))
    trailing = len(escaped) - len(escaped.rstrip(" "))
    return "/" + escaped.rstrip(" ") + "\\ " * trailing


def update(root: Path, paths: list[str]) -> list[str]:
    """Append the paths (relative to root, `dir/` for a directory) git does not yet ignore;
    returns the lines added. Running it again adds nothing."""
    wanted = list(dict.fromkeys(p for p in paths if p and "\n" not in p))
    missing = [p for p in wanted if p not in _already(root, wanted)]
    gitignore = root / ".gitignore"
    text = gitignore.read_text(encoding="utf-8") if gitignore.is_file() else ""
    present = {line.strip() for line in text.splitlines()}
    lines = [e for e in (entry(p) for p in missing) if e not in present]
    if not lines:
        return []
    block = ([HEADER] if HEADER not in present else []) + lines
    sep = "" if not text or text.endswith("\n") else "\n"
    blank = "\n" if text and HEADER not in present else ""
    gitignore.write_text(text + sep + blank + "\n".join(block) + "\n", encoding="utf-8")
    return lines
