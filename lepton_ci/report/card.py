"""`lepton-ci card`: a versioned model card from the evidence record.

The YAML front matter follows the Hugging Face model-card metadata (`model-index`, `metrics`,
`datasets`, `license`, `library_name`, `pipeline_tag`, `tags`; checked with huggingface_hub in
the tests), dumped by PyYAML so every value is a correctly quoted scalar. The body comes
from templates/model_card.md.j2 or the user's own template. Same record, same bytes: the date is
the commit's, never the clock's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core import atomic, escape, templating
from lepton_ci.core.config import CardConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import RecordError
from lepton_ci.core.git import Git
from lepton_ci.core.record import Record
from lepton_ci.run import changes

STDOUT = Path("-")


@dataclass
class Card:
    path: Path
    text: str
    stream: bool = False  # written through to a device or FIFO (`--out /dev/stdout`)


def metric_id(name: str) -> str:
    """A Hub metric id (`type`): lowercase words joined by `_` (`speed.p95_ms` -> speed_p95_ms)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "metric"


def front_matter(rec: Record, card: CardConfig, digest: str | None = None) -> str:
    """Model-card metadata as the Hub writes it: only gated metrics are results (informational
    ones are not claims), each with an id and its name as written; no dataset is invented, so a
    card without `datasets:` has `results: []`."""
    ids: dict[str, str] = {}
    for g in rec.gates:
        if g.candidate is not None and g.verdict != "info":
            mid = metric_id(g.metric)
            ids[g.metric] = mid if mid not in ids.values() else f"{mid}_{len(ids) + 1}"
    metrics = [
        {"type": ids[g.metric], "value": g.candidate, "name": g.metric}
        for g in rec.gates
        if g.metric in ids
    ]
    meta: dict[str, Any] = {}
    if card.license:
        meta["license"] = card.license
    if card.library_name:
        meta["library_name"] = card.library_name
    if card.task != "other":
        meta["pipeline_tag"] = card.task
    if card.datasets:
        meta["datasets"] = list(card.datasets)
    meta["tags"] = [*card.tags, "lepton-ci"]
    if ids:
        meta["metrics"] = list(ids.values())
    results = []
    if card.datasets and metrics:
        dataset = {"name": card.datasets[0], "type": card.datasets[0]}
        results.append({"task": {"type": card.task}, "dataset": dataset, "metrics": metrics})
    meta["model-index"] = [{"name": rec.model, "results": results}]
    meta["lepton-ci"] = {
        "version": rec.candidate_version,
        "commit": rec.git.sha,
        "verdict": rec.verdict,
        "record-digest": digest or rec.digest(),
    }
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)


def changelog(git: Git, rec: Record) -> list[str]:
    if rec.baseline is None:
        return []
    out = git.run(
        ["log", "--no-merges", "--format=%s%x00", f"{rec.baseline.sha}..{rec.git.sha}"],
        check=False,
    )
    # NUL-separated: a subject may hold U+2028 or \x1c, which str.splitlines() splits at
    return [escape.clean_line(s.strip("\n")) for s in out.stdout.split("\0") if s.strip()]


def render(ctx: Context, rec: Record) -> str:
    _, cfg = ctx.cfg.model(rec.model)
    return render_with(rec, cfg.card, ctx.cfg.root, changelog(ctx.git, rec))


def render_with(
    rec: Record,
    card_cfg: CardConfig,
    root: Path,
    log: list[str],
    *,
    with_front_matter: bool = True,
) -> str:
    """The card from facts already at hand. The site renders a user's card template for each
    version: it reads the commit subjects of all of them in one git call, and leaves out the
    front matter (metadata for the Hugging Face Hub, not for a reader)."""
    digest = rec.digest()
    context = {
        "front_matter": templating.Safe(
            front_matter(rec, card_cfg, digest) if with_front_matter else ""
        ),
        "record": rec,
        "record_digest": digest,
        "card": card_cfg,
        "date": time.strftime("%Y-%m-%d", time.gmtime(rec.git.commit_time)),
        "changes": changes.between(rec),
        "changelog": log,
        "failed": [g for g in rec.gates if g.verdict == "fail"],
    }
    user = card_cfg.template
    return templating.render(
        "model_card.md.j2", context, user_template=root / user if user else None
    )


def card_path(ctx: Context, rec: Record) -> Path:
    _, cfg = ctx.cfg.model(rec.model)
    if not rec.candidate_version:
        raise RecordError(f"the record of {rec.model} has no version to name the card after")
    rel = cfg.card.path.format(model=rec.model, version=rec.candidate_version)
    return ctx.cfg.root / rel


def write(ctx: Context, rec: Record, out: Path | None = None) -> Card:
    """The card at `out` (a user's path: its folder must exist, a device or FIFO is written
    through, a directory refused) or at card.path in lepton.yaml (its folders are made)."""
    text = render(ctx, rec)
    if out == STDOUT:  # the caller prints it
        return Card(out, text, stream=True)
    if out is not None:
        return Card(out, text, atomic.write_output(out, text, option="--out"))
    path = card_path(ctx, rec)
    return Card(path, text, atomic.write_output(path, text, option="card.path", make_parents=True))


def write_step(ctx: Context, model: str | None, version: str | None, out: Path | None) -> Card:
    """`lepton-ci card`: the card of the last run or of a registered version, with the
    step's output."""
    from lepton_ci.core.outputs import CardOutputs
    from lepton_ci.versions import evidence

    name, _ = ctx.cfg.model(model)
    result = write(ctx, evidence.load(ctx, name, version), out)
    # `-` is no file a later step could read
    CardOutputs(card="" if result.path == STDOUT else str(result.path)).write(ctx.rt)
    return result
