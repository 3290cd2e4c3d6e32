"""What each tag object says, kept between commands the way git keeps its commit-graph.

A tag object never changes (its name is the hash of its content), so what git prints about it
(the commit it peels to, its tagger, the verdict its subject names, its trailers) can be kept,
keyed by the object's hash. Listing names and objects costs git almost nothing; opening 10,000
tag objects costs it most of a command. So a registry read lists names and objects, takes the
rest from this index, and asks git only about tag objects it has not seen. The index lives in
the repository's git directory (not the worktree: nothing to ignore, shared by worktrees) and
is only a cache: lost, unreadable or unwritable, it is rebuilt from the tags.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lepton_ci import __version__
from lepton_ci.core import atomic
from lepton_ci.core.git import Git

VERSION = 4  # 3: a tag of a tag is kept peeled to its commit; 4: the verdict, not the subject
# Entries are derived by this lepton-ci's code (GTO grammar, trailer checks), and workflows
# restore the index from actions/cache across upgrades: another release rebuilds it.
_WRITER = f"{VERSION}/lepton-ci {__version__}"
# Beyond this many unseen tags one read of the whole pattern is cheaper than naming each ref.
_BY_NAME_MAX = 500

# What a caller derives from one tag object (kept as JSON), by tag name: fetch(refs) answers
# {name: (object, entry)} for refs or ref patterns, opening the tag objects.
Entry = list[Any]
Fetch = Callable[[list[str]], dict[str, tuple[str, Entry]]]


class TagIndex:
    def __init__(self, git: Git, fetch: Fetch) -> None:
        self.git = git
        self.fetch = fetch
        self.path = _index_path(git)
        self.base = self.path.parent if self.path is not None else None  # <git dir>/lepton-ci
        # False when the tags changed between the listing and opening them (the entries then
        # are not the listing's, and nothing may be kept under its digest)
        self.consistent = True
        # loaded once per command: a read of every model asks for it once per model
        self._known: dict[str, list[Any]] | None = None

    def listing(self, patterns: list[str]) -> str:
        """`<object> <name>` of every tag under `patterns`, a line each (what git answers
        without opening a tag object)."""
        return self.git.run(
            ["for-each-ref", "--format=%(objectname) %(refname:strip=2)", *patterns]
        ).stdout

    def entries(self, patterns: list[str], listing: str) -> list[tuple[str, str, Entry]]:
        """(name, object, entry) of every tag under `patterns` (as `listing` lists them, or as
        git lists them again if the tags changed meanwhile); only tag objects the index has not
        seen are opened."""
        known = self._load()
        found: list[tuple[str, str, Entry]] = []
        missing: list[str] = []
        listed: list[tuple[str, str]] = []
        for line in listing.split("\n"):
            obj, _, name = line.partition(" ")
            if not name:
                continue
            listed.append((name, obj))
            kept = known.get(obj)
            if kept is not None and kept[0] == name:  # the same object may carry two names
                found.append((name, obj, kept[1]))
            else:
                missing.append(name)
        if not missing:
            return found
        if len(missing) > _BY_NAME_MAX:
            found, fetched = [], self.fetch(patterns)
        else:
            fetched = self.fetch([f"refs/tags/{n}" for n in missing])
        for name, (obj, entry) in fetched.items():
            found.append((name, obj, entry))
            known[obj] = [name, entry]
        self.consistent = {(n, o) for n, o, _ in found} == set(listed)
        live = {obj for _, obj, _ in found}
        # A read of every tag drops the objects of deleted tags; a narrower one keeps the rest.
        everything = patterns == ["refs/tags"]
        self._save({k: v for k, v in known.items() if not everything or k in live})
        return found

    def drop(self) -> None:
        """Forget the index (its entries did not make sense to the caller)."""
        self._known = {}
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _load(self) -> dict[str, list[Any]]:
        if self._known is None:
            self._known = self._read()
        return self._known

    def _read(self) -> dict[str, list[Any]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(atomic.read_text(self.path))
            tags = data["tags"] if data.get("version") == _WRITER else {}
            # Entries of another shape fail where they are used, and the caller drops the index.
            return tags if isinstance(tags, dict) else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return {}  # no index yet, or one we cannot trust: rebuilt from the tags

    def _save(self, tags: dict[str, list[Any]]) -> None:
        if self.path is None:
            return
        data = {"version": _WRITER, "tags": tags}
        # A read-only repository still reads its tags, just not faster next time.
        with contextlib.suppress(OSError):
            atomic.write_text(self.path, json.dumps(data, separators=(",", ":")))


def _index_path(git: Git) -> Path | None:
    base = git.common_dir()
    return base / "lepton-ci" / "tags.json" if base is not None else None
