"""The registry's state as GTO reads it, derived from tag events: no git calls here.

`Registry` (registry.py) reads events from tags; `ViewState` (model_view.py) answers the same
questions from a kept view.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gcpause import gc_paused
from lepton_ci.core.semver import Version
from lepton_ci.versions.grammar import Action

ACTIONS = {a.value: a for a in Action}  # a dict lookup is 10x cheaper than Action(value)
# The types of an Event's fields after its name, as the tag index keeps them: an entry of
# another shape is not trusted (1 us a tag). Its values are: git wrote them, keyed by object.
_STR, _INT, _OPT, _OPT_INT = (str,), (int,), (str, type(None)), (int, type(None))
# model, action, commit, time, tagger, verdict, version, stage, counter, cache key, actor
FIELD_TYPES: tuple[tuple[type, ...], ...] = (
    _STR, _STR, _STR, _INT, _STR, _OPT, _OPT, _OPT, _OPT_INT, _OPT, _OPT
)  # fmt: skip
# Every exact sequence of types those allow (64): one set lookup checks an entry (and a bool,
# which isinstance would take for an int, fails it).
FIELD_SIGNATURES = frozenset(itertools.product(*FIELD_TYPES))


# Not frozen: a frozen dataclass pays object.__setattr__ per field, and a registry read makes
# one Event per tag (10,000 of them in a big registry). Treat them as values all the same.
@dataclass(slots=True, unsafe_hash=True)
class Event:
    tag: str
    model: str
    action: Action
    sha: str
    time: int
    who: str
    verdict: str | None  # `gates: pass|fail` from a version tag's subject, as lepton-ci writes it
    version: str | None = None
    stage: str | None = None
    counter: int | None = None
    cache_key: str | None = None
    actor: str | None = None  # who promoted, from the tag's Promoted-by trailer


def order(e: Event | HistoryRow) -> tuple[int, int, str]:
    """The order of registry events (GTO's: by tag time, to the second), for events and for
    the history rows made of them alike."""
    return (e.time, e.counter or 0, e.tag)


class HistoryRow(NamedTuple):
    """One registry event as `history` shows it: `label` names the version (for a stage event,
    the version on its commit, else the commit, as GTO does); none for a deprecation."""

    tag: str
    model: str
    action: str
    label: str | None
    stage: str | None
    sha: str
    who: str  # who promoted, when the tag says so, else the tagger
    tagger: str
    time: int
    counter: int | None  # with time and tag, the events' order (histories merge by it)


@dataclass(slots=True)
class VersionInfo:
    model: str
    version: Version
    tag: str
    sha: str
    time: int
    who: str
    verdict: str | None
    deregistered: bool = False
    stages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    """What a stage points at. GTO lets a stage be assigned to a commit never registered: then
    `version` is None and the commit stands for it, as in `gto show`."""

    stage: str
    sha: str
    version: VersionInfo | None
    event: Event  # the assignment that made it current

    @property
    def label(self) -> str:
        return str(self.version.version) if self.version else self.sha


class RegistryState:
    """The registry as GTO reads it: events in tag-time order; a deregistration cancels one
    version, an unassignment one version's stage; a stage points at the version whose active
    assignment is newest; a model whose last event is a deprecation is hidden."""

    def __init__(self, events: list[Event]) -> None:
        self.events = sorted(events, key=order)
        self._by_model: dict[str, list[Event]] = {}
        for e in self.events:
            self._by_model.setdefault(e.model, []).append(e)
        # Per model: its versions (with their stages) and each stage's assignment, read once.
        self._views: dict[str, tuple[dict[str, VersionInfo], dict[str, Assignment]]] = {}
        self._sorted: dict[str, list[VersionInfo]] = {}  # newest first, sorted once
        self._registered_by_model: dict[str, dict[str, VersionInfo]] = {}
        self._on_sha: dict[str, dict[str, VersionInfo]] = {}

    def models(self, *, include_deprecated: bool = True) -> list[str]:
        found = sorted(self._by_model)
        return [m for m in found if include_deprecated or not self.deprecated(m)]

    def history(self, model: str | None = None) -> list[Event]:
        return list(self.events if model is None else self._by_model.get(model, []))

    def history_rows(self, model: str | None = None) -> list[HistoryRow]:
        """`history` as rows, oldest first."""
        return [
            HistoryRow(
                e.tag,
                e.model,
                e.action.value,
                None
                if e.action is Action.DEPRECATE
                else e.version or self.version_at(e.model, e.sha) or e.sha,
                e.stage,
                e.sha,
                e.actor or e.who,
                e.who,
                e.time,
                e.counter,
            )
            for e in self.history(model)
        ]

    def tags_with_cache_key(self, model: str, key: str) -> list[str]:
        """Tags of the model whose Cache-key trailer is `key` (candidates for a run-cache hit)."""
        return [e.tag for e in self.history(model) if e.cache_key == key]

    def deprecated(self, model: str) -> bool:
        """GTO: deprecated until any later event (a new version, a stage) revives the model."""
        events = self.history(model)
        return bool(events) and events[-1].action is Action.DEPRECATE

    def _registered(self, model: str) -> dict[str, VersionInfo]:
        out: dict[str, VersionInfo] = {}
        for e in self.history(model):
            if e.action is Action.REGISTER and e.version:
                out[e.version] = VersionInfo(
                    model, Version.parse(e.version), e.tag, e.sha, e.time, e.who, e.verdict
                )
            elif e.action is Action.DEREGISTER and e.version in out:
                out[e.version].deregistered = True
        return out

    def _registered_view(self, model: str) -> dict[str, VersionInfo]:
        if model not in self._registered_by_model:
            self._registered_by_model[model] = self._registered(model)
        return self._registered_by_model[model]

    @gc_paused
    def _view(self, model: str) -> tuple[dict[str, VersionInfo], dict[str, Assignment]]:
        if model not in self._views:
            registered = self._registered_view(model)
            assigned = self._assignments(model)
            for a in assigned.values():
                if a.version is not None:
                    a.version.stages.append(a.stage)
            self._views[model] = (registered, assigned)
        return self._views[model]

    @gc_paused
    def versions(self, model: str, *, include_deregistered: bool = False) -> list[VersionInfo]:
        """Newest first, each with the stages it holds."""
        if model not in self._sorted:
            registered = self._view(model)[0]
            self._sorted[model] = sorted(
                registered.values(), key=lambda v: v.version.sort_key(), reverse=True
            )
        return [v for v in self._sorted[model] if include_deregistered or not v.deregistered]

    def on_commit(self, model: str, sha: str) -> list[VersionInfo]:
        """Registered versions (not deregistered) on a commit, newest first."""
        return [v for v in self.versions(model) if v.sha == sha]

    def stages(self, model: str) -> dict[str, VersionInfo]:
        """Each stage's current registered version (see `assignments` for the rest)."""
        return {s: a.version for s, a in self.assignments(model).items() if a.version is not None}

    def assignments(self, model: str) -> dict[str, Assignment]:
        """Each stage's current assignment, registered version or bare commit."""
        return dict(self._view(model)[1])

    def _newest_on(self, model: str) -> dict[str, VersionInfo]:
        """Per commit, the newest version registered on it (deregistered included): it takes
        the commit's stages and names its stage events. One pass, no sort."""
        if model not in self._on_sha:
            by_sha: dict[str, VersionInfo] = {}
            for v in self._registered_view(model).values():
                cur = by_sha.get(v.sha)
                if cur is None or v.version.sort_key() >= cur.version.sort_key():
                    by_sha[v.sha] = v
            self._on_sha[model] = by_sha
        return self._on_sha[model]

    def _assignments(self, model: str) -> dict[str, Assignment]:
        by_sha = self._newest_on(model)
        # The last assign/unassign of each (version or commit, stage) decides whether that
        # assignment is active; unassigning one version leaves older assignments standing.
        last: dict[tuple[str, str], tuple[int, Event]] = {}
        for i, e in enumerate(self.history(model)):
            if e.action in (Action.ASSIGN, Action.UNASSIGN) and e.stage:
                on = by_sha.get(e.sha)
                last[(str(on.version) if on else e.sha, e.stage)] = (i, e)
        current: dict[str, Assignment] = {}
        for _, e in sorted(last.values(), key=lambda p: p[0]):  # a later assignment wins
            on = by_sha.get(e.sha)
            if e.action is Action.ASSIGN and e.stage and not (on and on.deregistered):
                current[e.stage] = Assignment(e.stage, e.sha, on, e)
        return current

    def version_at(self, model: str, sha: str) -> str | None:
        """The version registered on a commit (the newest), as GTO names stage events."""
        on = self._newest_on(model).get(sha)
        return str(on.version) if on else None

    def find(self, model: str, version: str) -> VersionInfo:
        want = Version.parse(version)
        for v in self.versions(model, include_deregistered=True):
            if v.version == want:
                if v.deregistered:
                    raise RegistryError(f"{model}@{want} was deregistered")
                return v
        known = ", ".join(str(v.version) for v in self.versions(model)[:5]) or "none"
        raise RegistryError(
            f"{model}@{want} is not registered (newest: {known})",
            hint=f"list versions with `lepton-ci versions {model}`",
        )

    def latest(self, model: str) -> VersionInfo | None:
        """The greatest version by semver (`gto latest`, and `gto show m@latest`)."""
        vs = self.versions(model)
        return vs[0] if vs else None

    def newest_ever(self, model: str) -> VersionInfo | None:
        """The greatest version ever registered, deregistered included: the next version is
        past it, as GTO never registers a version twice ("already was registered")."""
        vs = self.versions(model, include_deregistered=True)
        return vs[0] if vs else None

    def stage_history(self, model: str, stage: str) -> list[Event]:
        return [e for e in self.history(model) if e.stage == stage]

    def next_counter(self, model: str) -> int:
        counters = [e.counter for e in self.history(model) if e.counter is not None]
        return max(counters, default=0) + 1

    def last_time(self, model: str) -> int | None:
        """When the model's last event happened: a new tag is dated after it, so GTO (which
        orders by time, to the second) and lepton-ci read the same order."""
        events = self.history(model)
        return events[-1].time if events else None
