"""Read-only questions about the registry: `versions`, `history MODEL`, `show MODEL[@V]`.

Each answers data (a `Table` of rows and the records behind them, or a `Shown`), never text
to print: the CLI prints the same answer as a table or as JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.git import Git
from lepton_ci.core.printer import Table
from lepton_ci.versions.registry import Registry, VersionInfo

if TYPE_CHECKING:
    from lepton_ci.core.record import Record  # pydantic: only `show` parses a record


def when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def versions(git: Git, model: str | None = None, *, include_all: bool = False) -> Table:
    state = Registry(git).read(model)
    found = [
        (m, v)
        for m in ([model] if model else state.models())
        for v in state.versions(m, include_deregistered=include_all)
    ]
    records = [
        {
            "model": m,
            "version": str(v.version),
            "tag": v.tag,
            "sha": v.sha,
            "stages": sorted(v.stages),
            "verdict": v.verdict,
            "author": v.who,
            "created_at": v.time,
            "deregistered": v.deregistered,
        }
        for m, v in found
    ]
    rows = [
        (
            m,
            str(v.version) + (" (deregistered)" if v.deregistered else ""),
            ",".join(sorted(v.stages)) or "-",
            v.verdict or "-",
            when(v.time),
            v.who,
            v.sha[:10],
        )
        for m, v in found
    ]
    return Table(
        ("model", "version", "stages", "gates", "created", "by", "commit"),
        list(rows),
        records,
        empty="no versions registered" + (f" for {model}" if model else ""),
    )


def history(git: Git, model: str | None = None) -> Table:
    state = Registry(git).read(model)
    events = state.history(model)
    by_sha = {
        m: {v.sha: str(v.version) for v in state.versions(m, include_deregistered=True)}
        for m in state.models()
    }
    records = [
        {
            "tag": e.tag,
            "model": e.model,
            "action": e.action.value,
            "version": e.version,
            "stage": e.stage,
            "sha": e.sha,
            "who": e.who,
            "time": e.time,
        }
        for e in events
    ]
    rows = [
        (
            when(e.time),
            e.who,
            e.action.value,
            e.model,
            (e.version or by_sha.get(e.model, {}).get(e.sha, e.sha[:10]))
            + (f" -> {e.stage}" if e.stage else ""),
            e.tag,
        )
        for e in events
    ]
    return Table(
        ("when", "who", "action", "model", "what", "tag"), rows, records, "no registry events"
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
    """One version, `MODEL` (the latest) or `MODEL@vX.Y.Z`, with its record when it has one."""
    model, _, version = ref.partition("@")
    reg = Registry(git)
    state = reg.read(model)
    info = state.find(model, version) if version else state.latest(model)
    if info is None:
        raise RegistryError(
            f"{model} has no registered version", hint="register one with `lepton-ci register`"
        )
    stages = sorted(s for s, v in state.stages(model).items() if v.version == info.version)
    return Shown(info, stages, reg.record(info.tag))
