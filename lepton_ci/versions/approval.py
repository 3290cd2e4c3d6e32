"""What a release manager approves: the candidate beside the version serving now in the target
stage, side by side: gates verdict, metrics, and what each did where it served (time served,
requests, SLO breaches). One table for the `model-promote` step summary (Markdown) and for the
site's version page (the same rows, rendered by its template)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lepton_ci.core.escape import md_cell
from lepton_ci.core.record import Record
from lepton_ci.core.revisions import Revision
from lepton_ci.versions.soak import Evidence, evidence, span


@dataclass
class Side:
    """One column: a version, its record, and what it did in one environment."""

    version: str
    record: Record | None
    env: str
    soak: Evidence | None  # None: the environment's history was not read here
    why_not: str = ""  # why the history was not read

    @property
    def verdict(self) -> str:
        return self.record.verdict if self.record is not None else "no record"


def side(
    version: str,
    record: Record | None,
    env: str,
    revisions: list[Revision] | str,
    now: datetime,
) -> Side:
    """`revisions` the environment's history, or why it could not be read."""
    if isinstance(revisions, str):
        return Side(version, record, env, None, revisions)
    return Side(version, record, env, evidence(revisions, env, version, now))


def _metric(rec: Record | None, name: str) -> str:
    if rec is None or name not in rec.metrics:
        return "—"
    return f"{rec.metrics[name]:.6g}"


def rows(candidate: Side, serving: Side | None) -> list[tuple[str, str, str]]:
    """(what, candidate, serving) rows, as plain text; the caller escapes for its format."""
    sides = [candidate, serving]

    def each(f: object) -> tuple[str, str]:
        got = [f(s) if s is not None else "—" for s in sides]  # type: ignore[operator]
        return got[0], got[1]

    def served(s: Side) -> str:
        if s.soak is None:
            return f"not read ({s.why_not})" if s.why_not else "—"
        now = " (serving now)" if s.soak.serving_since is not None else ""
        return f"{span(s.soak.served_s)} in {s.env}{now}"

    def requests(s: Side) -> str:
        if s.soak is None or s.soak.counted_at is None:
            return "—" if s.soak is None else "not counted"
        return f"{s.soak.requests:.0f}"

    def breaches(s: Side) -> str:
        return "—" if s.soak is None else s.soak.breach_text

    out = [
        ("version", *each(lambda s: s.version)),
        ("gates", *each(lambda s: s.verdict)),
    ]
    names = sorted(
        {n for s in sides if s is not None and s.record is not None for n in s.record.metrics}
    )
    out += [(n, *each(lambda s, n=n: _metric(s.record, n))) for n in names]
    out += [
        ("served", *each(served)),
        ("requests", *each(requests)),
        ("SLO breaches", *each(breaches)),
    ]
    return out


def markdown(stage: str, candidate: Side, serving: Side | None) -> str:
    """The step summary's table; every value is escaped for a Markdown table cell."""
    now = serving.version if serving is not None else "nothing yet"
    head = (
        f"### {md_cell(candidate.version)} for `{md_cell(stage)}`, beside what serves there now "
        f"({md_cell(now)})\n\n"
        f"| | candidate | serving in {md_cell(stage)} |\n|---|---|---|\n"
    )
    body = "".join(
        f"| {md_cell(what)} | {md_cell(a)} | {md_cell(b)} |\n"
        for what, a, b in rows(candidate, serving)
    )
    return head + body
