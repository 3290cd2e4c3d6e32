"""What each tag object says, kept between commands the way git keeps its commit-graph.

A tag object never changes (its name is the hash of its content), so what git prints about it
(the commit it peels to, its tagger, subject and trailers) can be kept, keyed by the object's
hash. Listing names and objects costs git almost nothing; opening 10,000 tag objects costs it
most of a command. So a registry read lists names and objects, takes the rest from this index,
and asks git only about tag objects it has not seen. The index lives in the repository's git
directory (not the worktree: nothing to ignore, shared by worktrees) and is only a cache: lost,
unreadable or unwritable, it is rebuilt from the tags.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lepton_ci.core.git import Git

VERSION = 1
# Beyond this many unseen tags one read of the whole pattern is cheaper than naming each ref.
_BY_NAME_MAX = 500

# (name, object, then the fields git printed for it: peeled, creator, subject, trailers ...)
Row = tuple[str, ...]


class TagIndex:
    def __init__(self, git: Git, fields: int) -> None:
        self.git = git
        self.fields = fields  # how many fields follow name and object in a row
        self.path = _index_path(git)

    def rows(self, patterns: list[str], fetch: Callable[[list[str]], list[Row]]) -> list[Row]:
        """One row per tag under `patterns`; `fetch(refs)` asks git for full rows of the
        given refs (or patterns) and is called only for tag objects the index lacks."""
        listing = self.git.run(
            ["for-each-ref", "--format=%(objectname) %(refname:strip=2)", *patterns]
        ).stdout.split("\n")
        known = self._load()
        rows: list[Row] = []
        missing: list[str] = []
        for line in listing:
            obj, _, name = line.partition(" ")
            if not name:
                continue
            if (kept := known.get(obj)) is not None and len(
                fields := kept.split("\0")
            ) == self.fields:
                rows.append((name, obj, *fields))
            else:
                missing.append(name)
        if not missing:
            return rows
        if len(missing) > _BY_NAME_MAX:
            rows, fetched = [], fetch(patterns)
        else:
            fetched = fetch([f"refs/tags/{n}" for n in missing])
        rows += fetched
        known.update({r[1]: "\0".join(r[2:]) for r in fetched if len(r) == 2 + self.fields})
        live = {r[1]: known[r[1]] for r in rows if r[1] in known}
        # A read of every tag drops the objects of deleted tags; a narrower one keeps the rest.
        self._save(live if patterns == ["refs/tags"] else {**known, **live})
        return rows

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            tags = data["tags"] if data.get("version") == VERSION else {}
            if data.get("fields") != self.fields or not isinstance(tags, dict):
                return {}
            return {k: v for k, v in tags.items() if isinstance(v, str)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # no index yet, or one we cannot trust: rebuilt from the tags

    def _save(self, tags: dict[str, str]) -> None:
        if self.path is None:
            return
        data = {"version": VERSION, "fields": self.fields, "tags": tags}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tags-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
            Path(tmp).replace(self.path)  # readers see the old index or the new, never half
        except OSError:
            pass  # a read-only repository still reads its tags, just not faster next time


def _index_path(git: Git) -> Path | None:
    key = ("git-common-dir",)
    if key not in git.sticky:
        proc = git.run(["rev-parse", "--git-common-dir"], check=False)
        common = proc.stdout.strip()
        git.sticky[key] = (git.cwd / common).resolve() if proc.returncode == 0 and common else None
    base = git.sticky[key]
    return base / "lepton-ci" / "tags.json" if isinstance(base, Path) else None
