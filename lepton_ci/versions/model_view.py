"""One model's registry state, kept between commands under the digest of its tag listing.

The state of a model is a function of its tags' names and objects alone (tag objects never
change), so what a read derived from 10,000 events (versions sorted by semver, their stages,
verdicts, what each stage points at) is kept in the repository's git directory next to the
tag index, keyed by a digest of `git for-each-ref`'s listing. A read whose listing is unchanged
loads that view (a JSON file of columns) instead of the events; a new, moved or deleted tag
changes the digest, and the next read derives the state again and keeps the new view. Like the
tag index it is only a cache: damaged, foreign or unwritable, it is derived again.

What the view does not keep (the event history, stage histories) comes from a full read of the
tags, made only when a command asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from lepton_ci import __version__
from lepton_ci.core import atomic
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

_WRITER = f"3/lepton-ci {__version__}"  # 3: history and cache-key parts
# A version as kept: tag, major, minor, patch, pre, build, commit, time, tagger, verdict,
# deregistered, stages. Checked as a whole (one set lookup per row), as the tag index is.
_VERSION_TYPES: tuple[tuple[type, ...], ...] = (
    (str,), (int,), (int,), (int,), (str,), (str,), (str,), (int,), (str,), (str, type(None)),
    (bool,), (list,),
)  # fmt: skip
_VERSION_SIGNATURES = frozenset(itertools.product(*_VERSION_TYPES))  # with a verdict or none


# A history row as kept: tag, model, action, label, stage, commit, who, tagger, time.
_ROW_TYPES: tuple[tuple[type, ...], ...] = (
    (str,), (str,), (str,), (str, type(None)), (str, type(None)), (str,), (str,), (str,), (int,),
)  # fmt: skip
_ROW_SIGNATURES = frozenset(itertools.product(*_ROW_TYPES))


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
        self._parts = parts or (lambda _name: None)  # a kept part (history, cache keys)
        self._rows: list[list[Any]] = data["versions"]
        self._full_fn = full
        self._full: RegistryState | None = None
        self._infos: list[VersionInfo | None] = [None] * len(self._rows)
        self._assigned: dict[str, Assignment] | None = None
        self._on_sha: dict[str, int] | None = None  # commit -> row of its newest version

    # -- what the view holds -------------------------------------------------------------
    def models(self, *, include_deprecated: bool = True) -> list[str]:
        if not self._rows and not self._data["assigned"] and not self._data["events"]:
            return []
        return [self.model] if include_deprecated or not self._data["deprecated"] else []

    def deprecated(self, model: str) -> bool:
        return model == self.model and bool(self._data["deprecated"])

    def versions(self, model: str, *, include_deregistered: bool = False) -> Sequence[VersionInfo]:
        """Newest first, each with the stages it holds; built as they are read."""
        if model != self.model:
            return []
        rows = self._rows
        keep: Sequence[int] = range(len(rows))
        if not include_deregistered and self._data["deregistered"]:
            keep = [i for i, r in enumerate(rows) if not r[10]]
        return _Versions(self, keep)

    def on_commit(self, model: str, sha: str) -> list[VersionInfo]:
        """Registered versions (not deregistered) on a commit, newest first."""
        if model != self.model:
            return []
        return [self._info(i) for i, r in enumerate(self._rows) if r[6] == sha and not r[10]]

    def latest(self, model: str) -> VersionInfo | None:
        vs = self.versions(model)
        return vs[0] if vs else None

    def find(self, model: str, version: str) -> VersionInfo:
        want = Version.parse(version)
        parts = [want.major, want.minor, want.patch, want.pre, want.build]
        for i, r in enumerate(self._rows if model == self.model else []):
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
            by_tag = {r[0]: i for i, r in enumerate(self._rows)}
            self._assigned = {}
            for stage, sha, tag, event in self._data["assigned"]:
                e = _event(event)
                info = self._info(by_tag[tag]) if tag is not None else None
                self._assigned[stage] = Assignment(stage, sha, info, e)
        return dict(self._assigned)

    def stages(self, model: str) -> dict[str, VersionInfo]:
        return {s: a.version for s, a in self.assignments(model).items() if a.version is not None}

    def version_at(self, model: str, sha: str) -> str | None:
        """The version registered on a commit (the newest, deregistered or not), as GTO names
        stage events."""
        if model != self.model:
            return None
        if self._on_sha is None:
            self._on_sha = {}
            for i, r in enumerate(self._rows):  # newest first: the first on a commit is its newest
                # ... but of versions that sort alike (v1.0.0, v1.0.0+b: build metadata does
                # not order), the last one, as RegistryState._newest_on picks it
                kept = self._on_sha.get(r[6])
                if kept is None or self._sort_key(kept) == self._sort_key(i):
                    self._on_sha[r[6]] = i
        row = self._on_sha.get(sha)
        return str(self._info(row).version) if row is not None else None

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
    def _sort_key(self, i: int) -> SortKey:
        return self._info(i).version.sort_key()

    def _info(self, i: int) -> VersionInfo:
        info = self._infos[i]
        if info is None:
            r = self._rows[i]
            version = Version(r[1], r[2], r[3], r[4], r[5])
            info = VersionInfo(self.model, version, r[0], r[6], r[7], r[8], r[9], r[10], r[11])
            self._infos[i] = info
        return info


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


def derive(state: RegistryState, model: str) -> dict[str, Any]:
    """What a view keeps of a model's state (deregistered versions included)."""
    versions = [
        [
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
        for v in state.versions(model, include_deregistered=True)
    ]
    assigned = [
        [a.stage, a.sha, a.version.tag if a.version else None, _fields(a.event)]
        for a in state.assignments(model).values()
    ]
    return {
        "versions": versions,
        "assigned": assigned,
        "events": len(state.history(model)),
        "deregistered": sum(1 for v in versions if v[10]),
        "deprecated": state.deprecated(model),
        "last_time": state.last_time(model),
        "next_counter": state.next_counter(model),
    }


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


def _event(f: list[Any]) -> Event:
    if type(f[0]) is not str or tuple(map(type, f[1:])) not in FIELD_SIGNATURES:
        raise TypeError("view event")
    return Event(f[0], f[1], ACTIONS[f[2]], *f[3:])


class ViewStore:
    """The kept views of one repository, one file per model in `<git dir>/lepton-ci/views`."""

    def __init__(self, base: Path | None) -> None:
        self.base = base / "views" if base is not None else None

    def _path(self, model: str, part: str = "") -> Path | None:
        if self.base is None:
            return None
        name = hashlib.blake2b(model.encode(), digest_size=12).hexdigest()
        return self.base / f"{name}{'.' + part if part else ''}.json"

    def load(self, model: str, listing_digest: str) -> dict[str, Any] | None:
        """The main view, if it was kept for exactly these tags."""
        data = self._load(model, listing_digest, "")
        return data if data is not None and _valid(_check, data) else None

    def part(self, model: str, listing_digest: str, name: str) -> Any:
        """A part kept beside the main view (`parts()`), or None."""
        data = self._load(model, listing_digest, name)
        if data is None or not _valid(_PART_CHECKS[name], data):
            return None
        return data[name]

    def _load(self, model: str, listing_digest: str, part: str) -> dict[str, Any] | None:
        path = self._path(model, part)
        if path is None:
            return None
        try:
            data = json.loads(atomic.read_text(path))
            if (
                data["writer"] != _WRITER
                or data["model"] != model
                or data["listing"] != listing_digest
            ):
                return None
            return data  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None  # none kept, or one we cannot trust: derived again

    def save(self, model: str, listing_digest: str, view: dict[str, Any], part: str = "") -> None:
        path = self._path(model, part)
        if path is None:
            return
        data = {"writer": _WRITER, "model": model, "listing": listing_digest, **view}
        with contextlib.suppress(OSError):  # a read-only repository derives it every time
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(path, json.dumps(data, separators=(",", ":")))


def _valid(check: Callable[[dict[str, Any]], None], data: dict[str, Any]) -> bool:
    try:
        check(data)
    except (ValueError, LookupError, TypeError, AttributeError):  # LookupError: a key missing,
        return False  # or a list too short to index (an IndexError)
    return True


def _check_history(data: dict[str, Any]) -> None:
    signatures = _ROW_SIGNATURES
    for row in data["history"]:
        if tuple(map(type, row)) not in signatures:
            raise TypeError("view history row")


def _check_keys(data: dict[str, Any]) -> None:
    for key, tags in data["keys"].items():
        if type(key) is not str or type(tags) is not list or not all(type(t) is str for t in tags):
            raise TypeError("view cache keys")


def _check(data: dict[str, Any]) -> None:
    """Types a reader relies on; anything else raises (and the view is derived again)."""
    if not isinstance(data["versions"], list) or not isinstance(data["assigned"], list):
        raise TypeError("view columns")
    signatures = _VERSION_SIGNATURES
    deregistered = 0
    for row in data["versions"]:
        if tuple(map(type, row)) not in signatures:
            raise TypeError("view row")
        if row[11] and not all(type(s) is str for s in row[11]):
            raise TypeError("view stages")
        deregistered += row[10]
    if deregistered != data["deregistered"]:
        raise ValueError("view count")
    tags = {row[0] for row in data["versions"]} if data["assigned"] else set()
    for stage, sha, tag, event in data["assigned"]:
        if not (isinstance(stage, str) and isinstance(sha, str) and (tag is None or tag in tags)):
            raise TypeError("view assignment")
        _event(event)  # raises on a wrong shape or action
    if not isinstance(data["deprecated"], bool) or type(data["next_counter"]) is not int:
        raise TypeError("view facts")
    if data["last_time"] is not None and type(data["last_time"]) is not int:
        raise TypeError("view facts")
    if type(data["events"]) is not int or type(data["deregistered"]) is not int:
        raise TypeError("view facts")


_PART_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "history": _check_history,
    "keys": _check_keys,
}
