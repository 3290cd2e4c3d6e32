"""Read-only questions about the registry: `versions`, `history MODEL`, `show MODEL[@V]`.

Each answers data (a `Table` of rows and the records behind them, or a `Shown`), never text
to print: the CLI prints the same answer as a table or as JSON.
"""

from __future__ import annotations

import functools
import heapq
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.gcpause import gc_paused
from lepton_ci.core.git import Git
from lepton_ci.core.printer import Table
from lepton_ci.versions.grammar import shortcut
from lepton_ci.versions.registry import Assignment, Registry, VersionInfo
from lepton_ci.versions.registry_state import order

if TYPE_CHECKING:
    from lepton_ci.core.record import Record  # pydantic: only `show` parses a record


def when(ts: int) -> str:
    """UTC minute of a timestamp. The date is formatted once per day: `time.gmtime` costs
    3-4 us, and a listing of 10,000 versions spans a few hundred days."""
    day, second = divmod(ts, 86400)
    return f"{_date(day)} {second // 3600:02d}:{second % 3600 // 60:02d}"


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


@gc_paused
def versions(git: Git, model: str | None = None, *, include_all: bool = False) -> Table:
    """Registered versions with their stages, as `gto show` lists them: a stage assigned to a
    commit never registered shows as that commit; deprecated models only with `include_all`
    (which also lists deregistered versions)."""
    reg = Registry(git)
    states = {model: reg.read(model)} if model else reg.read_models()
    models = (
        [model] if model else [m for m, s in states.items() if include_all or not s.deprecated(m)]
    )
    hidden = [m for m in models if states[m].deprecated(m) and not include_all]
    listed: list[tuple[str, bool, VersionInfo | list[Assignment]]] = []
    for m in (m for m in models if m not in hidden):
        state = states[m]
        deprecated = state.deprecated(m)
        listed += [(m, deprecated, v) for v in state.versions(m, include_deregistered=include_all)]
        bare: dict[str, list[Assignment]] = {}
        for a in state.assignments(m).values():
            if a.version is None:
                bare.setdefault(a.sha, []).append(a)
        listed += [(m, deprecated, held) for held in bare.values()]
    rows = [_version_row(m, deprecated, item) for m, deprecated, item in listed]
    empty = "no versions registered" + (f" for {model}" if model else "")
    if hidden and model:
        empty = f"{model} is deprecated; list it with --all"
    return Table(
        ("model", "version", "stages", "gates", "created", "by", "commit"),
        rows,
        lambda: [_version_record(*item) for item in listed],
        empty,
    )


def _version_record(
    model: str, deprecated: bool, item: VersionInfo | list[Assignment]
) -> dict[str, Any]:
    """A registered version, or the stages assigned to one commit never registered."""
    common = {"model": model, "deprecated": deprecated}
    if isinstance(item, VersionInfo):
        return {
            **common,
            "version": str(item.version),
            "tag": item.tag,
            "sha": item.sha,
            "stages": sorted(item.stages),
            "verdict": item.verdict,
            "author": item.who,
            "created_at": item.time,
            "deregistered": item.deregistered,
            "registered": True,
        }
    e, sha = item[0].event, item[0].sha
    return {
        **common,
        "version": sha,
        "tag": None,
        "sha": sha,
        "stages": sorted(a.stage for a in item),
        "verdict": None,
        "author": e.actor or e.who,
        "created_at": e.time,
        "deregistered": False,
        "registered": False,
    }


def _version_row(
    model: str, deprecated: bool, item: VersionInfo | list[Assignment]
) -> tuple[str, ...]:
    name = model + (" (deprecated)" if deprecated else "")
    if isinstance(item, VersionInfo):
        version = str(item.version) + (" (deregistered)" if item.deregistered else "")
        stages = ",".join(sorted(item.stages)) if item.stages else "-"
        return name, version, stages, item.verdict or "-", when(item.time), item.who, item.sha[:10]
    e, sha = item[0].event, item[0].sha
    stages = ",".join(sorted(a.stage for a in item))
    return name, f"{sha[:10]} (unregistered)", stages, "-", when(e.time), e.actor or e.who, sha[:10]


@gc_paused
def history(git: Git, model: str | None = None) -> Table:
    """Every registry event, oldest first; a stage event names the version on its commit (or
    the commit itself, as GTO does), and who promoted when the tag says so."""
    reg = Registry(git)
    if model is None:  # each model's history, merged in the order of the events
        each = [s.history_rows(m) for m, s in reg.read_models().items()]
        rows = list(heapq.merge(*each, key=order))
    else:
        rows = reg.read(model).history_rows(model)
    records = lambda: [  # noqa: E731 (built only for --json)
        {
            "tag": r.tag,
            "model": r.model,
            "action": r.action,
            "version": r.label,
            "stage": r.stage,
            "sha": r.sha,
            "who": r.who,
            "tagger": r.tagger,
            "time": r.time,
        }
        for r in rows
    ]
    shown = [
        (
            when(r.time),
            r.who,
            r.action,
            r.model,
            (r.label or "") + (f" -> {r.stage}" if r.stage else ""),
            r.tag,
        )
        for r in rows
    ]
    return Table(
        ("when", "who", "action", "model", "what", "tag"), shown, records, "no registry events"
    )


def history_text(table: Table) -> str:
    """The event log as lines (the layout `history` has always printed)."""
    if not table.rows:
        return table.empty
    return "\n".join(
        f"{w}  {who:<20} {act:<10} {m} {what}  [{tag}]" for w, who, act, m, what, tag in table.rows
    )


@dataclass
class Shown:
    info: VersionInfo
    stages: list[str]
    record: Record | None

    def as_dict(self) -> object:
        if self.record is not None:
            return self.record.model_dump(mode="json")
        return {"tag": self.info.tag, "sha": self.info.sha}


def show(git: Git, ref: str) -> Shown:
    """One version, by GTO's shortcuts: `MODEL`, `MODEL@latest` and `MODEL@greatest` (all the
    greatest by semver, as in `gto show`), `MODEL@vX.Y.Z`, `MODEL#STAGE` (its current version)."""
    wanted = shortcut(ref)
    if wanted is None:
        raise RegistryError(
            f"`{ref}` is not a version reference",
            hint="write MODEL, MODEL@vX.Y.Z, MODEL@latest, MODEL@greatest or MODEL#STAGE",
        )
    model = wanted.model
    reg = Registry(git)
    state = reg.read(model)
    info: VersionInfo | None
    if wanted.version:
        info = state.find(model, wanted.version)
    elif wanted.stage:
        a = state.assignments(model).get(wanted.stage)
        if a is not None and a.version is None:
            raise RegistryError(
                f"{model}#{wanted.stage} is commit {a.sha[:12]}, which is no registered version",
                hint=f"register it, or see `lepton-ci versions {model}`",
            )
        info = a.version if a else None
        if info is None:
            raise RegistryError(
                f"no version of {model} is in stage `{wanted.stage}`",
                hint=f"see `lepton-ci versions {model}`",
            )
    else:
        info = state.latest(model)
    if info is None:
        raise RegistryError(
            f"{model} has no registered version", hint="register one with `lepton-ci register`"
        )
    stages = sorted(s for s, v in state.stages(model).items() if v.version == info.version)
    return Shown(info, stages, reg.record(info.tag))
