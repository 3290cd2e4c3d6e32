"""The PR comment body and the report bundle that carries it across the fork boundary.

The comment is found again by a hidden marker per (model, workflow); a second hidden line
carries the head sha, run id and a digest of the content, so an unchanged report is not
edited and an older run does not overwrite a newer one.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from lepton_ci.core import templating
from lepton_ci.core.errors import RecordError
from lepton_ci.core.hashing import hash_bytes
from lepton_ci.core.names import MODEL_RE
from lepton_ci.core.record import Record, load, read_text
from lepton_ci.core.shadows import ShadowResult
from lepton_ci.run import changes
from lepton_ci.versions.registry import Registry

LIMIT = 65536
CHART_POINTS = 10
# Least important first: trimmed in this order when the body is over GitHub's limit.
OPTIONAL_SECTIONS = ("packages", "chart", "lineage", "params", "details")
TEMPLATE = "pr_comment.md.j2"
_META = re.compile(r"<!-- lepton-ci:meta (\{.*?\}) -->")
_FOOTER = re.compile(r"^<sub>.*</sub>$", re.MULTILINE)


class Point(BaseModel):
    # validators built on first use, as core/config.Strict says
    model_config = ConfigDict(extra="forbid", defer_build=True)
    label: str = Field(max_length=80)
    value: float


WORKFLOW_MAX = 200  # characters of a workflow's name a bundle carries


class BundleMeta(BaseModel):
    """Facts about the run that produced a bundle; validated before a trusted job uses them."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    model: str = Field(pattern=MODEL_RE.pattern, max_length=200)  # GTO's grammar
    workflow: str = Field(max_length=WORKFLOW_MAX)
    head_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    pr: int | None = None
    repo: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    run_id: int = 0
    history: list[Point] = []


def marker(model: str, workflow: str) -> str:
    return f"<!-- lepton-ci:sticky model={quote(model)} workflow={quote(workflow, safe='')} -->"


def parse_meta(body: str) -> dict[str, Any]:
    m = _META.search(body)
    if not m:
        return {}
    try:
        data = json.loads(m[1])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def history(registry: Registry, rec: Record) -> list[Point]:
    """The key metric over the last registered versions, plus this candidate."""
    key = next((g for g in rec.gates if g.key), None) or next(
        (g for g in rec.gates if g.verdict != "info"), None
    )
    if key is None or key.candidate is None:
        return []
    points = []
    # Only the newest versions are charted, so only their records are read.
    newest = (v for v in registry.read(rec.model).versions(rec.model) if v.sha != rec.git.sha)
    shown = [v.tag for v in reversed(list(itertools.islice(newest, CHART_POINTS - 1)))]
    records = registry.records(shown)
    for tag in shown:
        value = records[tag].metrics.get(key.metric) if tag in records else None
        if value is not None:
            points.append(Point(label=tag.split("@")[1], value=value))
    points.append(Point(label="this PR", value=key.candidate))
    return points


@dataclass
class Rendered:
    body: str
    digest: str
    trimmed: list[str]


def render(
    rec: Record,
    meta: BundleMeta,
    *,
    limit: int = LIMIT,
    shadows: Sequence[ShadowResult] = (),
) -> Rendered:
    """The comment; `shadows`: this record's shadow rollouts (core/shadows.py), read by the
    trusted job from git, never from the bundle (which a fork's run wrote)."""
    key = next((g for g in rec.gates if g.key), None) or next(
        (g for g in rec.gates if g.verdict != "info"), None
    )
    context: dict[str, Any] = {
        "record": rec,
        "marker": templating.Safe(marker(meta.model, meta.workflow)),
        "changes": changes.between(rec),
        "failed": [g for g in rec.gates if g.verdict == "fail"],
        "key": key,
        "points": meta.history if len(meta.history) >= 2 else [],
        "shadows": sorted(shadows, key=lambda x: x.env),
    }
    trimmed: list[str] = []
    rows = list(rec.gates)
    while True:
        sections = [s for s in OPTIONAL_SECTIONS if s not in trimmed]
        content = templating.render(
            TEMPLATE,
            {
                **context,
                "sections": sections,
                "rows": rows,
                "trimmed": trimmed,
                "hidden_rows": len(rec.gates) - len(rows),
            },
        )
        # The footer (run link, cache hit) describes the run, not the report: a re-run that
        # reproduces the same report must not edit the comment.
        digest = hash_bytes(_FOOTER.sub("", content).encode())
        meta_line = (
            "<!-- lepton-ci:meta "
            + json.dumps(
                {"sha": meta.head_sha, "run": meta.run_id, "digest": digest}, sort_keys=True
            ).replace(">", "\\u003e")
            + " -->\n"
        )
        body = content.rstrip("\n") + "\n" + meta_line
        if len(body) <= limit:
            return Rendered(body, digest, trimmed)
        if sections:
            trimmed.append(sections[0])
            continue
        # Still too long: keep failing and key rows, drop the rest of the table.
        kept = [g for g in rows if g.verdict == "fail" or g.key][:50]
        if len(kept) == len(rows):
            kept = kept[: max(1, len(kept) // 2)]
        if not kept or len(kept) == len(rows):
            raise RecordError(f"the comment of {rec.model} cannot be made to fit {limit} chars")
        rows = kept
        if "metric rows" not in trimmed:
            trimmed.append("metric rows")


# -- bundle ---------------------------------------------------------------------------------


def write_bundle(directory: Path, rec: Record, meta: BundleMeta) -> Path:
    # Through write_text: a file where the folder belongs (`.lepton/report` a file) is a
    # StateError naming it, not exit 70, and a reader never sees half a bundle file.
    from lepton_ci.core.atomic import write_text

    write_text(directory / "record.json", rec.to_json())
    write_text(directory / "meta.json", meta.model_dump_json(indent=2))
    write_text(directory / "comment.md", render(rec, meta).body)
    return directory


def read_bundle(directory: Path) -> tuple[Record, BundleMeta]:
    """Read a bundle from an untrusted run: both files are validated, nothing is executed,
    and the comment is rendered again here rather than taken from the bundle."""
    from pydantic import ValidationError

    for name in ("record.json", "meta.json"):
        if not (directory / name).is_file():
            raise RecordError(
                f"{directory}: not a report bundle (no {name})",
                hint="download the artifact that `lepton-ci run` wrote (.lepton/report/<model>)",
            )
    damaged = "the bundle is damaged; re-run the PR's workflow"
    rec = load(directory / "record.json", hint=damaged)
    meta_text = read_text(directory / "meta.json", damaged)  # not UTF-8: a clear error
    try:
        meta = BundleMeta.model_validate_json(meta_text)
    except ValidationError as e:
        first = e.errors()[0]
        raise RecordError(
            f"{directory}/meta.json: invalid: `{'.'.join(map(str, first['loc']))}`: {first['msg']}"
        ) from None
    if meta.model != rec.model or meta.head_sha != (rec.git.pr_head or rec.git.sha):
        raise RecordError(f"{directory}: meta.json and record.json disagree")
    return rec, meta
