"""The version registry in git tags: read with ONE git call, written as annotated tags."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gcpause import gc_paused
from lepton_ci.core.git import Git
from lepton_ci.core.interrupt import Terminated, deferred
from lepton_ci.core.names import from_tag, in_tag, valid_model
from lepton_ci.versions import grammar as tags
from lepton_ci.versions import message as tag_message
from lepton_ci.versions import model_view
from lepton_ci.versions.message import CACHE_KEY_TRAILER, PROMOTED_BY
from lepton_ci.versions.model_view import ViewState
from lepton_ci.versions.registry_state import (
    ACTIONS,
    FIELD_SIGNATURES,
    Assignment,
    Event,
    RegistryState,
    VersionInfo,
)
from lepton_ci.versions.tag_index import TagIndex
from lepton_ci.versions.view_store import ViewStore

__all__ = ["Assignment", "Event", "Registry", "RegistryState", "State", "VersionInfo"]
State = RegistryState | ViewState  # what a read answers: derived from events, or a kept view

if TYPE_CHECKING:
    from lepton_ci.core.record import Record

# %(creator) is the tagger of an annotated tag, read without peeling to the commit object:
# peeling 10,000 tags costs more than the rest together. A lightweight tag has no
# %(*objectname); GTO does not read those, and neither do we.
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

_CREATOR = re.compile(r"^(?P<name>.*?) <[^>]*> (?P<ts>\d+) [+-]\d{4}$")
_VERDICT = re.compile(r"\bgates: (pass|fail)\b")
_MODEL_END = re.compile(r"[@#]")  # where a tag name's model ends (no model name holds either)

# Tags already warned about, per repository: one command reads the same tags several times.
_WARNED: set[tuple[str, str]] = set()


class Registry:
    """Reads and writes the tag registry of one repository."""

    def __init__(self, git: Git) -> None:
        self.git = git

    @property
    def skipped(self) -> set[str]:
        """Version tags whose message holds no readable record; kept with the records they
        were read with (in the git memo), so every Registry of one repository knows them."""
        return self.git.memo.setdefault(("skipped",), set())  # type: ignore[return-value]

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
    def read(self, model: str | None = None) -> State:
        """Names, objects, dates, subjects and cache keys of the tags, in one git call (read
        once per command: the answer is kept until a git call changes refs). No record is
        parsed here; `record(tag)` parses one when a command needs its evidence."""
        memo_key = ("registry", model)
        if (state := self.git.memo.get(memo_key)) is not None:
            return state  # type: ignore[return-value]
        state = self._read(model)
        self.git.memo[memo_key] = state
        return state

    def _read(self, model: str | None) -> State:
        pattern = ["refs/tags"] if model is None else _patterns(model)
        index = TagIndex(self.git, self._describe)
        listing = index.listing(pattern)
        if model is None:
            return self._derive(index, pattern, listing, model)
        return self._model_state(index, model, pattern, listing)

    @gc_paused
    def read_models(self) -> dict[str, State]:
        """Each model's state (a model with no events is left out), from ONE listing of every
        tag split into what a read of each model lists: so both read the same kept views."""
        index = TagIndex(self.git, self._describe)
        found: dict[str, State] = {}
        for prefix, listing in split_listing(index.listing(["refs/tags"])).items():
            model = from_tag(prefix)
            if in_tag(model) != prefix or not valid_model(model):
                continue  # not a model GTO would name: no events of its own
            state = self._model_state(index, model, _patterns(model), listing)
            if state.models():
                found[model] = state
        return dict(sorted(found.items()))

    def _model_state(self, index: TagIndex, model: str, pattern: list[str], listing: str) -> State:
        # One model's state is kept as a view under its listing's digest: unchanged tags, the
        # answers without the events (see model_view).
        views = ViewStore(index.base)
        key = model_view.digest(listing)

        def derive_parts() -> RegistryState:
            """The state from the events, for a view asked what it keeps in a part that is
            not there yet (or was damaged): the parts are kept for the next command."""
            state = self._derive(index, pattern, listing, model)
            if index.consistent:
                for name, part in model_view.parts(state, model).items():
                    views.save(model, key, {name: part}, name)
            return state

        if (data := views.load(model, key)) is not None:
            return ViewState(model, data, derive_parts, lambda part: views.part(model, key, part))
        state = self._derive(index, pattern, listing, model)
        # (a model with no tags is answered at once: nothing is kept for it)
        if index.consistent and listing:  # history and cache-key parts: kept when needed
            view = model_view.derive(state, model)
            views.save(model, key, {"rows": view.pop("rows")}, "rows")
            views.save(model, key, view)  # last: it names the rows part by the same digest
        return state

    def _derive(
        self, index: TagIndex, pattern: list[str], listing: str, model: str | None
    ) -> RegistryState:
        try:
            return self._state(index.entries(pattern, listing), model)
        except (TypeError, ValueError, LookupError):  # an index by hand or another version
            # (LookupError: a missing key, or an entry cut short, which raises IndexError)
            index.drop()
            return self._state(index.entries(pattern, listing), model)

    def _state(self, entries: list[tuple[str, str, list[Any]]], model: str | None) -> RegistryState:
        events = []
        for name, _, (_, fields) in entries:
            if fields is None:
                continue
            if tuple(map(type, fields)) not in FIELD_SIGNATURES:
                raise TypeError(f"tag index entry of {name} is not an event's fields")
            if model is not None and fields[0] != model:
                continue
            events.append(Event(name, fields[0], ACTIONS[fields[1]], *fields[2:]))
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
        """The evidence record stored in a version tag's message, if it has one (read once per
        command, like the tags: the baseline's is asked for twice)."""
        key = ("record", tag)
        if key in self.git.memo:
            return self.git.memo[key]  # type: ignore[return-value]
        proc = self.git.run(["cat-file", "tag", tag], check=False)
        # The tag object's header ends at its first blank line; the message follows.
        message = proc.stdout.partition("\n\n")[2]
        rec = None if proc.returncode else self._record_or_skip(message, tag)
        self.git.memo[key] = rec
        return rec

    def records(self, tags: list[str]) -> dict[str, Record]:
        """The records of the given tags (those that have one), with one git call."""
        if not tags:
            return {}
        token = f"end-{os.urandom(8).hex()}"  # a message cannot forge the separator
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

    def push_tag(self, name: str, remote: str = "origin", *, refs: Sequence[str] = ()) -> None:
        """Push one tag, with `refs` that belong to it (its attestations) in one atomic push:
        the remote takes all or none. If it refuses, the local tag and refs are deleted too,
        so nothing is half-done."""

        def undo() -> None:
            self.git.run(["tag", "-d", name], check=False)
            for ref in refs:
                self.git.run(["update-ref", "-d", ref], check=False)

        if remote not in self.git.remotes():
            undo()
            raise RegistryError(
                f"cannot push {name}: this repository has no remote `{remote}`; the local tag "
                "was removed again",
                hint="add the remote (actions/checkout sets `origin`), or do not push",
            )
        atomic = ["--atomic"] if refs else []
        specs = [f"refs/tags/{name}:refs/tags/{name}", *(f"{r}:{r}" for r in refs)]
        try:
            proc = self.git.run(
                ["push", "--porcelain", *atomic, remote, *specs], check=False, timeout=120
            )
        except (KeyboardInterrupt, Terminated):  # a retry must not find a local-only tag
            with deferred():
                undo()
            raise
        if proc.returncode != 0:
            undo()
            said, rejected = _push_refusal(proc.stdout, proc.stderr)
            raise RegistryError(
                f"push of {name} to {remote} was refused; the local tag was removed again: " + said,
                hint="if another run took this version, `git fetch --tags` and run again"
                if not rejected
                else "the remote refused it (a hook or a ref rule): see its reason above",
            )


def _push_refusal(stdout: str, stderr: str) -> tuple[str, bool]:
    """Why a push failed: the remote's own words (`remote:` lines) and the refused refs'
    reasons (`--porcelain`'s `!` lines), not git's closing "failed to push some refs"; and
    whether the remote (a hook or a ref rule) refused it rather than a race."""
    said = [line[7:].strip() for line in stderr.splitlines() if line.startswith("remote:")]
    refused = [line.split("\t")[-1] for line in stdout.splitlines() if line.startswith("!")]
    rejected = any("remote rejected" in r for r in refused)
    parts = [p for p in said if p] + refused
    if not parts:
        lines = (stderr.strip() or stdout.strip()).splitlines()
        parts = lines[-1:] or ["no detail"]
    return "; ".join(dict.fromkeys(parts)), rejected


def _patterns(model: str) -> list[str]:
    """The refs of one model. for-each-ref's `*` stops at a slash, and a stage name may hold one
    (GTO's names do: `m#eu/prod#3`); `#*/**` lists those (a version holds none)."""
    m = in_tag(model)
    return [f"refs/tags/{m}@*", f"refs/tags/{m}#*", f"refs/tags/{m}#*/**"]


def split_listing(listing: str) -> dict[str, str]:
    """A listing of every tag (`<object> <name>` lines, by name) split by the model each name
    starts with, each part exactly what for-each-ref lists for `_patterns` of that model: the
    names up to their first `@` or `#` (no model name holds either), `m#` anything, `m@` with
    no slash after it."""
    parts: dict[str, list[str]] = {}
    for line in listing.split("\n"):
        name = line.partition(" ")[2]
        end = _MODEL_END.search(name)
        if end is None or end.start() == 0 or (end[0] == "@" and "/" in name[end.end() :]):
            continue
        parts.setdefault(name[: end.start()], []).append(line)
    return {prefix: "\n".join(lines) + "\n" for prefix, lines in parts.items()}


def _identity(git: Git) -> dict[str, str]:
    return git.identity_env()
