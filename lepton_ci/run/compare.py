"""`lepton-ci diff A B`: the metrics and params of any two revisions or versions, side by side.

Each side is read from a version's record, or from the files committed at that revision (as
`dvc metrics diff` reads them), or from the work tree. Unchanged rows are hidden unless asked
for, values print YAML-style (`null`, `true`) and numbers are rounded to `precision` decimals.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from lepton_ci.core.context import Context
from lepton_ci.core.errors import InputError
from lepton_ci.core.escape import md_cell, md_code
from lepton_ci.run import snapshot
from lepton_ci.run.gates import evaluate_metric
from lepton_ci.run.snapshot import Snapshot

WORDS = {"improved": "better", "regressed": "worse"}
# Control and format characters (newlines that would start a `::command::` line, U+202E):
# shown as escapes in the text table, never acted on by a terminal or the Actions log.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _inline(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


class _Absent:
    """Not there at that revision (unlike a value that is null)."""

    def __repr__(self) -> str:
        return "-"


ABSENT: Any = _Absent()


@dataclass
class Row:
    kind: str  # metric or param
    name: str
    a: Any
    b: Any
    change: float | None
    status: str  # unchanged, changed, new, removed; a gated metric: improved or regressed


@dataclass
class Comparison:
    model: str
    a: Snapshot
    b: Snapshot
    rows: list[Row] = field(default_factory=list)

    def render(self, fmt: str, precision: int = 5, show_all: bool = False) -> str:
        return render(self, fmt, precision=precision, show_all=show_all)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "a": {"ref": self.a.label, "sha": self.a.sha, "source": self.a.source},
            "b": {"ref": self.b.label, "sha": self.b.sha, "source": self.b.source},
            "metrics": [_row_dict(r) for r in self.rows if r.kind == "metric"],
            "params": [_row_dict(r) for r in self.rows if r.kind == "param"],
        }


def _row_dict(r: Row) -> dict[str, Any]:
    a, b = (None if x is ABSENT else x for x in (r.a, r.b))
    return {"name": r.name, "a": a, "b": b, "change": r.change, "status": r.status}


def _status(a: Any, b: Any) -> str:
    if a is ABSENT:
        return "new"
    if b is ABSENT:
        return "removed"
    return "unchanged" if a == b and type(a) is type(b) else "changed"


def compare(ctx: Context, model: str | None, revs: list[str]) -> Comparison:
    """`revs`: A, or A and B (B defaults to the work tree, as in `dvc metrics diff`)."""
    if not 1 <= len(revs) <= 2:
        raise InputError(
            f"diff takes one or two revisions, got {len(revs)}",
            hint="lepton-ci diff A [B], e.g. `lepton-ci diff v1.0.0 HEAD`",
        )
    model, cfg = ctx.cfg.model(model)
    a, b = revs[0], revs[1] if len(revs) == 2 else snapshot.WORKSPACE
    left, right = snapshot.at(ctx, model, cfg, a), snapshot.at(ctx, model, cfg, b)
    out = Comparison(model, left, right)
    for name in sorted(set(left.metrics) | set(right.metrics)):
        x, y = left.metrics.get(name, ABSENT), right.metrics.get(name, ABSENT)
        gate = cfg.gates.get(name)
        res = evaluate_metric(name, _or_none(y), _or_none(x), gate)
        status = _status(x, y)
        if gate is not None and not gate.informational and status == "changed":
            status = res.status  # only a gate knows which direction is better
        out.rows.append(Row("metric", name, x, y, res.delta, status))
    for name in sorted(set(left.params) | set(right.params)):
        x, y = left.params.get(name, ABSENT), right.params.get(name, ABSENT)
        change = y - x if _number(x) and _number(y) else None
        out.rows.append(Row("param", name, x, y, change, _status(x, y)))
    return out


def _or_none(x: Any) -> Any:
    return None if x is ABSENT else x


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def value(x: Any, precision: int) -> str:
    """A value as YAML writes it: `null`, `true`, numbers rounded to `precision` decimals;
    `-` when it is not there at all."""
    if x is ABSENT:
        return "-"
    if _number(x) and math.isfinite(x):
        return str(round(x, precision))
    text = yaml.safe_dump(x, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _change(r: Row, precision: int) -> str:
    if r.change is None or r.status == "unchanged":
        return r.status
    word = f" ({WORDS[r.status]})" if r.status in WORDS else ""
    return f"{round(r.change, precision):+}{word}"


def render(c: Comparison, fmt: str, *, precision: int = 5, show_all: bool = False) -> str:
    if not 0 <= precision <= 20:
        raise InputError(f"--precision {precision}: give 0 to 20 decimals", hint="e.g. 5")
    rows = [r for r in c.rows if show_all or r.status != "unchanged"]
    if fmt == "json":
        data = c.as_dict()
        if not show_all:
            for kind in ("metrics", "params"):
                data[kind] = [r for r in data[kind] if r["status"] != "unchanged"]
        return json.dumps(data, indent=2)
    head = _inline(f"{c.model}: {c.a.label} ({c.a.source})  ->  {c.b.label} ({c.b.source})")
    if fmt == "markdown":
        return _markdown(c, rows, precision)
    if not rows:
        return f"{head}\nno changes" + ("" if show_all else " (--all shows unchanged rows)")
    table: list[tuple[str, str, str, str]] = [
        ("", _inline(c.a.label), _inline(c.b.label), "change")
    ]
    for kind in ("metric", "param"):
        group = [r for r in rows if r.kind == kind]
        if group:
            table.append((f"{kind}s:", "", "", ""))
        for r in group:
            a, b = _inline(value(r.a, precision)), _inline(value(r.b, precision))
            table.append((f"  {_inline(r.name)}", a, b, _change(r, precision)))
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(t, widths, strict=True)).rstrip() for t in table]
    return "\n".join([head, *lines])


def _markdown(c: Comparison, rows: list[Row], precision: int) -> str:
    a, b = md_cell(_inline(c.a.label)), md_cell(_inline(c.b.label))
    out = [f"**{md_cell(c.model)}**: {md_code(_inline(c.a.label))} → {md_code(_inline(c.b.label))}"]
    for kind in ("metric", "param"):
        group = [r for r in rows if r.kind == kind]
        if group:
            out += ["", f"| {kind} | {a} | {b} | change |", "|---|---:|---:|---|"]
        for r in group:
            cells = [r.name, value(r.a, precision), value(r.b, precision), _change(r, precision)]
            out.append("| " + " | ".join(md_cell(_inline(x)) for x in cells) + " |")
    if not rows:
        out += ["", "no changes"]
    return "\n".join(out) + "\n"
