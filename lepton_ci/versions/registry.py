"""The version registry in git tags: read with ONE git call, written as annotated tags."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gcpause import gc_paused
from lepton_ci.core.git import Git
from lepton_ci.core.names import in_tag
from lepton_ci.core.semver import Version
from lepton_ci.versions import grammar as tags
from lepton_ci.versions import message as tag_message
from lepton_ci.versions.grammar import Action
from lepton_ci.versions.message import CACHE_KEY_TRAILER
from lepton_ci.versions.tag_index import TagIndex

if TYPE_CHECKING:
    from lepton_ci.core.record import Record

# %(creator) is the tagger of an annotated tag, read without peeling to the commit object:
# peeling 10,000 tags costs more than the rest together. A lightweight tag has no
# %(*objectname); GTO does not read those, and neither do we.
PROMOTED_BY = "Promoted-by"  # the trailer that names who promoted (the tagger is the runner)
# A GitHub login (bots end in `[bot]`): all a Promoted-by trailer may hold.
LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
_FMT = "%00".join(
    [
        "%(refname:strip=2)",
        "%(objectname)",
        "%(*objectname)",
        "%(*objecttype)",
        "%(creator)",
        "%(contents:subject)",
        f"%(trailers:key={CACHE_KEY_TRAILER},valueonly,separator=%x2C)",
        f"%(trailers:key={PROMOTED_BY},valueonly,separator=%x2C)",
        "",  # each line ends in NUL: a subject may hold what str.splitlines() splits at (U+2028)
    ]
)

_ACTIONS = {a.value: a for a in Action}  # a dict lookup is 10x cheaper than Action(value)
# The types of an Event's fields after its name, as the tag index keeps them: an entry of
# another shape is not trusted (1 us a tag). Its values are: git wrote them, keyed by object.
_STR, _INT, _OPT, _OPT_INT = (str,), (int,), (str, type(None)), (int, type(None))
# model, action, commit, time, tagger, verdict, version, stage, counter, cache key, actor
_FIELD_TYPES = (_STR, _STR, _STR, _INT, _STR, _OPT, _OPT, _OPT, _OPT_INT, _OPT, _OPT)
# Every exact sequence of types those allow (64): one set lookup checks an entry (and a bool,
# which isinstance would take for an int, fails it).
_SIGNATURES = frozenset(itertools.product(*_FIELD_TYPES))
_CREATOR = re.compile(r"^(?P<name>.*?) <[^>]*> (?P<ts>\d+) [+-]\d{4}$")
_VERDICT = re.compile(r"\bgates: (pass|fail)\b")


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
        self.events = sorted(events, key=lambda e: (e.time, e.counter or 0, e.tag))
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


# Tags already warned about, per repository: one command reads the same tags several times.
_WARNED: set[tuple[str, str]] = set()


class Registry:
    """Reads and writes the tag registry of one repository."""

    def __init__(self, git: Git) -> None:
        self.git = git
        self.skipped: set[str] = set()  # version tags whose message holds no readable record

    def _record_or_skip(self, message: str, tag: str) -> Record | None:
        """A tag whose message is not a readable record is skipped with one warning."""
        try:
            return tag_message.extract(message, tag)
        except tag_message.ForeignMessage as e:
            self.skipped.add(tag)
            key = (str(self.git.cwd.resolve()), tag)
            if key not in _WARNED:
                _WARNED.add(key)
                from lepton_ci.core.gha import Runtime

                Runtime(stream=sys.stderr).warning(
                    f"{e.message}; the tag is skipped as not lepton-ci's (its record, if any, "
                    "is not used for baselines, caching or promotion)"
                )
            return None

    @gc_paused
    def read(self, model: str | None = None) -> RegistryState:
        """Names, objects, dates, subjects and cache keys of the tags, in one git call (read
        once per command: the answer is kept until a git call changes refs). No record is
        parsed here; `record(tag)` parses one when a command needs its evidence."""
        memo_key = ("registry", model)
        if (state := self.git.memo.get(memo_key)) is not None:
            return state  # type: ignore[return-value]
        state = self._read(model)
        self.git.memo[memo_key] = state
        return state

    def _read(self, model: str | None) -> RegistryState:
        pattern = ["refs/tags"]
        if model is not None:
            pattern = [f"refs/tags/{in_tag(model)}@*", f"refs/tags/{in_tag(model)}#*"]
        index = TagIndex(self.git, self._describe)
        try:
            return self._state(index.entries(pattern), model)
        except (TypeError, ValueError, KeyError):  # an index by hand or another version
            index.drop()
            return self._state(index.entries(pattern), model)

    def _state(self, entries: list[tuple[str, str, list[Any]]], model: str | None) -> RegistryState:
        events = []
        for name, _, (_, fields) in entries:
            if fields is None:
                continue
            if tuple(map(type, fields)) not in _SIGNATURES:
                raise TypeError(f"tag index entry of {name} is not an event's fields")
            if model is not None and fields[0] != model:
                continue
            events.append(Event(name, fields[0], _ACTIONS[fields[1]], *fields[2:]))
        return RegistryState(events)

    def _describe(self, refs: list[str]) -> dict[str, tuple[str, list[Any]]]:
        """Open the tag objects of `refs`: per tag, whether it is annotated and, when it is one
        of GTO's events, the Event's fields after its name (kept in the tag index)."""
        out = self.git.run(["for-each-ref", f"--format={_FMT}", *refs]).stdout
        found: dict[str, tuple[str, list[Any]]] = {}
        for line in out.split("\0\n"):
            parts = line.split("\0")
            if len(parts) != 8:
                continue
            name, obj, peeled, kind, creator, subject, cache_key, actor = parts
            parsed = tags.parse(name) if peeled else None  # lightweight: GTO skips it
            if parsed and kind == "tag":
                # A tag of a tag (made by hand, e.g. `git tag -a m#prod#3 m@v1.0.0`): peel it
                # here, where the inner tag need not be listed (another model's, or deleted).
                proc = self.git.run(["rev-parse", f"{obj}^{{commit}}"], check=False)
                peeled = proc.stdout.strip() or peeled
            m = _CREATOR.match(creator)
            verdict = _VERDICT.search(subject)
            fields = parsed and [
                parsed.model,
                parsed.action.value,
                peeled,
                int(m["ts"]) if m else 0,
                m["name"] if m else "",
                verdict[1] if verdict else None,
                parsed.version,
                parsed.stage,
                parsed.counter,
                cache_key.split(",")[0] or None,
                actor.strip() if LOGIN.match(actor.strip()) else None,
            ]
            found[name] = (obj, [bool(peeled), fields])
        return found

    def record(self, tag: str) -> Record | None:
        """The evidence record stored in a version tag's message, if it has one."""
        proc = self.git.run(["cat-file", "tag", tag], check=False)
        if proc.returncode != 0:
            return None
        # The tag object's header ends at its first blank line; the message follows.
        return self._record_or_skip(proc.stdout.partition("\n\n")[2], tag)

    def records(self, tags: list[str]) -> dict[str, Record]:
        """The records of the given tags (those that have one), with one git call."""
        if not tags:
            return {}
        token = f"end-{secrets.token_hex(8)}"  # a message cannot forge the separator
        out = self.git.run(
            [
                "for-each-ref",
                f"--format=%(refname:strip=2)%00%(contents)%00{token}%00",
                *(f"refs/tags/{t}" for t in tags),
            ]
        ).stdout
        found = {}
        for chunk in out.split(f"\0{token}\0"):
            name, _, body = chunk.strip("\n").partition("\0")
            if name and (rec := self._record_or_skip(body, name)) is not None:
                found[name] = rec
        return found

    def create_tag(self, name: str, sha: str, message: str, *, after: int | None = None) -> None:
        """Create an annotated tag; git's ref lock makes it atomic, so one racer loses cleanly.
        `after`: the model's last event time; the new tag is dated later, even in that second."""
        env = _identity(self.git)
        if after is not None and time.time() < after + 1:
            env = {**env, "GIT_COMMITTER_DATE": f"{after + 1} +0000"}
        proc = self.git.run(
            ["tag", "-a", "--cleanup=verbatim", "-F", "-", name, sha],
            input=message,
            check=False,
            env=env,
        )
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if "already exists" in err or "cannot lock ref" in err:
                raise RegistryError(
                    f"tag {name} already exists (another run registered it first)",
                    hint="fetch tags (`git fetch --tags`) and run again to take the next version",
                )
            raise RegistryError(f"could not create tag {name}: {err}")

    def push_tag(self, name: str, remote: str = "origin") -> None:
        """Push one tag; if the remote refuses, delete the local tag so nothing is half-done."""
        if remote not in self.git.remotes():
            self.git.run(["tag", "-d", name], check=False)
            raise RegistryError(
                f"cannot push {name}: this repository has no remote `{remote}`; the local tag "
                "was removed again",
                hint="add the remote (actions/checkout sets `origin`), or do not push",
            )
        proc = self.git.run(
            ["push", "--porcelain", remote, f"refs/tags/{name}:refs/tags/{name}"],
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            self.git.run(["tag", "-d", name], check=False)
            detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise RegistryError(
                f"push of {name} to {remote} was refused; the local tag was removed again: "
                + (detail[-1] if detail else "no detail"),
                hint="if another run took this version, `git fetch --tags` and run again",
            )


def _identity(git: Git) -> dict[str, str]:
    """CI runners have no git identity; fall back to the Actions actor, then to lepton-ci."""
    if git.ok("config", "user.email"):
        return {}
    actor = os.environ.get("GITHUB_ACTOR") or "lepton-ci"
    email = (
        f"{actor}@users.noreply.github.com"
        if os.environ.get("GITHUB_ACTOR")
        else ("lepton-ci@localhost")
    )
    return {
        "GIT_COMMITTER_NAME": actor,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_AUTHOR_NAME": actor,
        "GIT_AUTHOR_EMAIL": email,
    }
