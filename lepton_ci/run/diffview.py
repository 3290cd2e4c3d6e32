"""The metrics and params diff of a record against its baseline, as table, Markdown or JSON."""

from __future__ import annotations

import json
from typing import Any

from lepton_ci.core.escape import clean_line, md_cell, md_code, one_line
from lepton_ci.core.record import Environment, GateResult, Record
from lepton_ci.run.gates import ParamChange, diff_params
from lepton_ci.versions.queries import Shown, when

STATUS = {
    "improved": "better",
    "regressed": "worse",
    "unchanged": "same",
    "new": "new",
    "missing": "missing",
    "removed": "removed",
}
MARKS = {"pass": "✅ pass", "fail": "❌ fail", "info": "ℹ️ info"}  # noqa: RUF001


def num(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def change(g: GateResult) -> str:
    """Arrow for where the value moved, word for whether that is good for this metric."""
    if g.delta is None:
        return STATUS[g.status]
    arrow = "▲" if g.delta > 0 else "▼" if g.delta < 0 else "="
    pct = f" ({g.delta_pct:+.2f}%)" if g.delta_pct is not None else ""
    return f"{arrow} {g.delta:+.6g}{pct} {STATUS[g.status]}"


def params_changes(rec: Record) -> list[ParamChange]:
    return diff_params(rec.params, rec.baseline.params if rec.baseline else None)


def as_json(rec: Record) -> str:
    data: dict[str, Any] = {
        "model": rec.model,
        "candidate_version": rec.candidate_version,
        "baseline": rec.baseline.tag if rec.baseline else None,
        "verdict": rec.verdict,
        "metrics": [g.model_dump(mode="json") for g in rec.gates],
        "params": [
            {"name": p.name, "baseline": p.baseline, "candidate": p.candidate, "status": p.status}
            for p in params_changes(rec)
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True)


def as_table(rec: Record) -> str:
    base = rec.baseline.tag if rec.baseline else "no baseline (first version)"
    rows = [("metric", "baseline", "candidate", "change", "gate")]
    for g in rec.gates:
        rows.append((one_line(g.metric), num(g.baseline), num(g.candidate), change(g), g.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"{rec.model} {rec.candidate_version}  vs  {base}   verdict: {rec.verdict.upper()}"]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for g in rec.gates:
        for reason in g.reasons:
            lines.append(f"  {one_line(g.metric)}: {reason}")
    changes = params_changes(rec)
    if changes:
        lines.append("params:")
        for p in changes:
            lines.append(f"  {one_line(p.name)}: {p.baseline!r} -> {p.candidate!r} ({p.status})")
    return "\n".join(lines)


def as_markdown(rec: Record) -> str:
    base = md_code(rec.baseline.tag) if rec.baseline else "no baseline (first version)"
    out = [
        f"**{md_cell(rec.model)}** {md_code(rec.candidate_version or '')} vs {base}: "
        f"{MARKS[rec.verdict]}",
        "",
        "| metric | baseline | candidate | change | gate |",
        "|---|---:|---:|---:|---|",
    ]
    for g in rec.gates:
        verdict = MARKS[g.verdict]
        if g.reasons:
            verdict += ": " + md_cell("; ".join(g.reasons))
        out.append(
            f"| {md_cell(g.metric)} | {num(g.baseline)} | {num(g.candidate)} | {change(g)} "
            f"| {verdict} |"
        )
    changes = params_changes(rec)
    if changes:
        out += ["", "| param | baseline | candidate |", "|---|---|---|"]
        for p in changes:
            out.append(
                f"| {md_cell(p.name)} | {md_cell(_v(p.baseline))} | {md_cell(_v(p.candidate))} |"
            )
    return "\n".join(out) + "\n"


def _v(x: Any) -> str:
    return "—" if x is None else json.dumps(x) if not isinstance(x, str) else x


def render(rec: Record, fmt: str) -> str:
    return {"json": as_json, "markdown": as_markdown, "table": as_table}[fmt](rec)


def version_text(shown: Shown) -> str:
    """`lepton-ci show`: one registered version, its stages, metrics and lineage."""
    info, rec = shown.info, shown.record
    lines = [
        f"{info.tag}  commit {info.sha[:12]}  by {info.who}  {when(info.time)}  "
        f"stages: {','.join(shown.stages) or '-'}"
    ]
    if rec is None:
        return "\n".join([*lines, "(no evidence record in this tag)"])
    lines += [
        as_table(rec).rstrip("\n"),
        f"inputs: code {rec.lineage.code_digest[:20]}…  data {rec.lineage.data_digest[:20]}…",
    ]
    lines += [
        f"artifact: {path} {entry.hash[:20]}… ({entry.size} bytes)"
        for path, entry in rec.outputs.items()
    ]
    return "\n".join(lines + environment_lines(rec.environment))


def environment_lines(env: Environment) -> list[str]:
    """The training environment in a few lines: interpreter, Python, notable frameworks."""
    where = ", ".join(filter(None, [env.platform, env.os]))
    lines = [f"environment: Python {env.python}" + (f" ({where})" if where else "")]
    if env.interpreter:
        lines.append(f"  interpreter: {env.interpreter} ({env.interpreter_source or '?'})")
    if env.packages:
        notable = ", ".join(f"{n} {v}" for n, v in env.notable()) or "none of the notable ones"
        lines.append(f"  frameworks: {notable} ({len(env.packages)} packages in all)")
    elif not env.interpreter:  # a record from before the interpreter was asked
        lines.append(f"  packages: not listed (digest of {env.packages_source})")
    if env.locks:
        lines.append(f"  locks: {', '.join(sorted(env.locks))}")
    if env.accelerator:
        lines.append(f"  accelerator: {env.accelerator.text()}")
    return [clean_line(line) for line in lines]  # a tag's record is anyone's text
