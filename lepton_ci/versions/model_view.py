"""One model's registry state, kept between commands under the digest of its tag listing.

The state of a model is a function of its tags' names and objects alone (tag objects never
change), so what a read derived from 10,000 events (versions sorted by semver, their stages,
verdicts, what each stage points at) is kept in the repository's git directory next to the
tag index, keyed by a digest of `git for-each-ref`'s listing. A read whose listing is unchanged
loads that view (a JSON file of columns) instead of the events; a new, moved or deleted tag
changes the digest, and the next read derives the state again and keeps the new view. Like the
tag index it is only a cache: damaged, foreign or unwritable, it is derived again.

The main file holds the newest versions (HEAD_ROWS of them), a column of every version's
commit, the stage assignments with their versions, and a few facts: what `show` and `run` ask.
Beside it, parts: every version's row (kept with the main file; read by listings and by
questions about old versions), the history as rows and the run-cache keys (each kept by the
first command that needs it). Events themselves (stage histories) come from a full read of the
tags, made only when a command asks for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.semver import SortKey, Version
from lepton_ci.versions.registry_state import (
    ACTIONS,
    FIELD_SIGNATURES,
    Assignment,
    Event,
    HistoryRow,
    RegistryState,
    VersionInfo,
)


def digest(listing: str) -> str:
    return hashlib.blake2b(listing.encode(), digest_size=16).hexdigest()


class ViewState:
    """RegistryState's answers for one model from a kept view. The same questions, the same
    answers (tests hold the two side by side); the event history comes from `full()`."""

    def __init__(
        self,
        model: str,
        data: dict[str, Any],
        full: Callable[[], RegistryState],
        parts: Callable[[str], Any] | None = None,
    ) -> None:
        self.model = model
        self._data = data
        self._parts = parts or (lambda _name: None)  # a kept part (rows, history, cache keys)
        self._head: list[list[Any]] = data["head"]
        self._count: int = data["count"]
        self._shas: str = data["shas"]  # every version's commit, newest first, one a line
        self._all: list[list[Any]] | None = self._head if self._count == len(self._head) else None
        self._full_fn = full
        self._full: RegistryState | None = None
        self._infos: list[VersionInfo | None] = [None] * self._count
        self._assigned: dict[str, Assignment] | None = None

    # -- what the view holds -------------------------------------------------------------
    def models(self, *, include_deprecated: bool = True) -> list[str]:
        if not self._count and not self._data["assigned"] and not self._data["events"]:
            return []
        return [self.model] if include_deprecated or not self._data["deprecated"] else []

    def deprecated(self, model: str) -> bool:
        return model == self.model and bool(self._data["deprecated"])

    def versions(self, model: str, *, include_deregistered: bool = False) -> Sequence[VersionInfo]:
        """Newest first, each with the stages it holds; built as they are read."""
        if model != self.model:
            return []
        keep: Sequence[int] = range(self._count)
        if not include_deregistered and self._data["deregistered"]:
            keep = [i for i, r in enumerate(self._rows()) if not r[10]]
        return _Versions(self, keep)

    def on_commit(self, model: str, sha: str) -> list[VersionInfo]:
        """Registered versions (not deregistered) on a commit, newest first."""
        if model != self.model:
            return []
        found = (self._info(i) for i in self._on(sha))
        return [v for v in found if not v.deregistered]

    def latest(self, model: str) -> VersionInfo | None:
        vs = self.versions(model)
        return vs[0] if vs else None

    def newest_ever(self, model: str) -> VersionInfo | None:
        vs = self.versions(model, include_deregistered=True)
        return vs[0] if vs else None

    def find(self, model: str, version: str) -> VersionInfo:
        want = Version.parse(version)
        parts = [want.major, want.minor, want.patch, want.pre, want.build]
        if model == self.model:
            # the newest first (what is asked for nearly always), all the rows only past them
            for rows in (self._head, self._rows()):
                for i, r in enumerate(rows):
                    if r[1:6] == parts:
                        if r[10]:
                            raise RegistryError(f"{model}@{want} was deregistered")
                        return self._info(i)
        known = ", ".join(str(v.version) for v in self.versions(model)[:5]) or "none"
        raise RegistryError(
            f"{model}@{want} is not registered (newest: {known})",
            hint=f"list versions with `lepton-ci versions {model}`",
        )

    def assignments(self, model: str) -> dict[str, Assignment]:
        if model != self.model:
            return {}
        if self._assigned is None:
            self._assigned = {}
            for stage, sha, row, event in self._data["assigned"]:
                info = self._info_of(row) if row is not None else None
                self._assigned[stage] = Assignment(stage, sha, info, event_of(event))
        return dict(self._assigned)

    def stages(self, model: str) -> dict[str, VersionInfo]:
        return {s: a.version for s, a in self.assignments(model).items() if a.version is not None}

    def version_at(self, model: str, sha: str) -> str | None:
        """The version registered on a commit (the newest, deregistered or not), as GTO names
        stage events."""
        if model != self.model:
            return None
        newest = None
        for i in self._on(sha):  # newest first: the first on a commit is its newest ...
            # ... but of versions that sort alike (v1.0.0, v1.0.0+b: build metadata does not
            # order), the last one, as RegistryState._newest_on picks it
            if newest is None or self._sort_key(newest) == self._sort_key(i):
                newest = i
        return str(self._info(newest).version) if newest is not None else None

    def last_time(self, model: str) -> int | None:
        return self._data["last_time"] if model == self.model else None

    def next_counter(self, model: str) -> int:
        return int(self._data["next_counter"]) if model == self.model else 1

    def history_rows(self, model: str | None = None) -> list[HistoryRow]:
        """From the kept history part when there is one, else from the events."""
        if model == self.model and (rows := self._parts("history")) is not None:
            return [HistoryRow(*r) for r in rows]
        return self.full().history_rows(model)

    def tags_with_cache_key(self, model: str, key: str) -> list[str]:
        if model == self.model and (keys := self._parts("keys")) is not None:
            return list(keys.get(key, []))
        return self.full().tags_with_cache_key(model, key)

    # -- what needs the events -----------------------------------------------------------
    def full(self) -> RegistryState:
        if self._full is None:
            self._full = self._full_fn()
        return self._full

    @property
    def events(self) -> list[Event]:
        return self.full().events

    def history(self, model: str | None = None) -> list[Event]:
        return self.full().history(model)

    def stage_history(self, model: str, stage: str) -> list[Event]:
        return self.full().stage_history(model, stage)

    # -- rows to objects -----------------------------------------------------------------
    def _on(self, sha: str) -> list[int]:
        """Rows of the versions on a commit, found in the commits column (one string)."""
        found, lines, at = [], self._shas, 0
        needle = f"\n{sha}\n"
        while (at := lines.find(needle, at)) >= 0:
            found.append(lines.count("\n", 0, at))
            at += 1
        return found

    def _rows(self) -> list[list[Any]]:
        """Every version's row: the kept `rows` part, read only past the newest few."""
        if self._all is None:
            rows = self._parts("rows")
            if (
                rows is None
                or len(rows) != self._count
                or rows[: len(self._head)] != self._head
                or sum(r[10] for r in rows) != self._data["deregistered"]
                or commits_column(rows) != self._shas
            ):
                rows = derive(self.full(), self.model)["rows"]  # lost, damaged or not these
            self._all = rows
        return self._all

    def _sort_key(self, i: int) -> SortKey:
        return self._info(i).version.sort_key()

    def _info(self, i: int) -> VersionInfo:
        info = self._infos[i]
        if info is None:
            info = self._infos[i] = self._info_of(
                self._head[i] if i < len(self._head) else self._rows()[i]
            )
        return info

    def _info_of(self, r: list[Any]) -> VersionInfo:
        version = Version(r[1], r[2], r[3], r[4], r[5])
        return VersionInfo(self.model, version, r[0], r[6], r[7], r[8], r[9], r[10], r[11])


class _Versions(Sequence[VersionInfo]):
    def __init__(self, view: ViewState, keep: Sequence[int]) -> None:
        self._view, self._keep = view, keep

    def __len__(self) -> int:
        return len(self._keep)

    @overload
    def __getitem__(self, i: int) -> VersionInfo: ...
    @overload
    def __getitem__(self, i: slice) -> list[VersionInfo]: ...
    def __getitem__(self, i: int | slice) -> VersionInfo | list[VersionInfo]:
        if isinstance(i, slice):
            return [self._view._info(k) for k in self._keep[i]]
        return self._view._info(self._keep[i])

    def __iter__(self) -> Iterator[VersionInfo]:
        info = self._view._info
        return (info(k) for k in self._keep)


def parts(state: RegistryState, model: str) -> dict[str, Any]:
    """What a view keeps beside its main file, each read only by the command that needs it:
    `history` (rows as `history` shows them) and `keys` (run-cache key -> tags)."""
    keys: dict[str, list[str]] = {}
    for e in state.history(model):
        if e.cache_key is not None:
            keys.setdefault(e.cache_key, []).append(e.tag)
    return {"history": [list(r) for r in state.history_rows(model)], "keys": keys}


HEAD_ROWS = 64  # the newest versions kept in the main view; the rest in its `rows` part


def derive(state: RegistryState, model: str) -> dict[str, Any]:
    """What a view keeps of a model's state (deregistered versions included): the main file
    (the newest versions, a column of every version's commit, assignments, facts) and the
    `rows` of all versions, a part read only when a command goes past the newest."""
    rows = [_row(v) for v in state.versions(model, include_deregistered=True)]
    assigned = [
        [a.stage, a.sha, _row(a.version) if a.version else None, _fields(a.event)]
        for a in state.assignments(model).values()
    ]
    return {
        "head": rows[:HEAD_ROWS],
        "count": len(rows),
        "shas": commits_column(rows),
        "assigned": assigned,
        "events": len(state.history(model)),
        "deregistered": sum(1 for r in rows if r[10]),
        "deprecated": state.deprecated(model),
        "last_time": state.last_time(model),
        "next_counter": state.next_counter(model),
        "rows": rows,
    }


def commits_column(rows: list[list[Any]]) -> str:
    """The rows' commits as one string, each between newlines: which rows hold a commit is a
    find in it (`ViewState._on`)."""
    return "".join(f"\n{r[6]}" for r in rows) + "\n"


def _row(v: VersionInfo) -> list[Any]:
    return [
        v.tag,
        v.version.major,
        v.version.minor,
        v.version.patch,
        v.version.pre,
        v.version.build,
        v.sha,
        v.time,
        v.who,
        v.verdict,
        v.deregistered,
        sorted(v.stages),
    ]


def _fields(e: Event) -> list[Any]:
    return [
        e.tag,
        e.model,
        e.action.value,
        e.sha,
        e.time,
        e.who,
        e.verdict,
        e.version,
        e.stage,
        e.counter,
        e.cache_key,
        e.actor,
    ]


def event_of(f: list[Any]) -> Event:
    """An Event from its kept fields; TypeError or KeyError when they are not an event's."""
    if type(f[0]) is not str or tuple(map(type, f[1:])) not in FIELD_SIGNATURES:
        raise TypeError("view event")
    return Event(f[0], f[1], ACTIONS[f[2]], *f[3:])
