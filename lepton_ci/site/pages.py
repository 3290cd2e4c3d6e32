"""Render the site's pages with jinja2's HTML autoescape, so every name, subject and message
from a tag, record or revision file is text, never markup. Links are built here, from values
checked to be what they claim (versions that have a page, http(s) URLs)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from lepton_ci import __version__
from lepton_ci.core import templating
from lepton_ci.core.escape import bidi_visible
from lepton_ci.core.record import FileEntry, Record
from lepton_ci.core.revisions import HEALTHY, Revision
from lepton_ci.image import metadata as imagemeta
from lepton_ci.report import card as card_mod
from lepton_ci.run import changes
from lepton_ci.run.gates import diff_params
from lepton_ci.site import chart
from lepton_ci.site import markdown as md
from lepton_ci.site.commits import Graph
from lepton_ci.site.data import Model, Version
from lepton_ci.versions import approval

PAGE_SIZE = 50  # versions per page of a model's table
TIMELINE_LIMIT = 200
REVISION_LIMIT = 50


@dataclass
class SiteInfo:
    title: str
    head: str
    repo_url: str | None  # https://github.com/OWNER/NAME, or None when not known
    repo_name: str
    base_url: str | None
    tool_version: str = __version__
    # "now" for the time a serving revision has served so far
    built_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _num(x: float | None, digits: int = 6) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _signed(x: float | None) -> str:
    return "" if x is None else f"{x:+.6g}"


def _short(value: str) -> str:
    """A content hash cut to 16 hex digits for reading; the full one is in the tag's record."""
    algo, _, hexes = value.rpartition(":")
    return f"{algo}:{hexes[:16]}…" if len(hexes) > 16 else value


def _http(value: object) -> str:
    """A link target only if it is a plain http(s) URL (no javascript:, no data:)."""
    return str(templating.url(value))


def _visible(value: Any) -> Any:
    """Every printed text shows bidirectional controls as `<U+202E>` (escaping keeps them);
    markup built here has had its own text passed through this already."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return bidi_visible(value)
    return value


def _visible_data(value: Any) -> Any:
    if isinstance(value, str):
        return bidi_visible(value)
    if isinstance(value, dict):
        return {_visible_data(k): _visible_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_data(v) for v in value]
    return value


def _environment() -> Any:
    # Not the sandbox: these templates are ours (a user can replace the card, never these),
    # and the sandbox's attribute checks cost a third of a 1,000-version build. Every value
    # they print is still autoescaped.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(templating.template_dir() / "site")),
        undefined=StrictUndefined,
        autoescape=True,
        finalize=_visible,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        day=_day,
        num=_num,
        signed=_signed,
        http=_http,
        short=_short,
        json=lambda v: json.dumps(v, sort_keys=True),
    )
    return env


class Renderer:
    def __init__(self, site: SiteInfo, graph: Graph, root: Path) -> None:
        self.site = site
        self.graph = graph
        self.root = root  # where a user's card template is found
        self.env = _environment()
        self._templates: dict[str, Any] = {}

    # -- links and small pieces ------------------------------------------------------------

    def _repo(self, path: str) -> str | None:
        return f"{self.site.repo_url}/{path}" if self.site.repo_url else None

    def _code_link(self, path: str, text: str) -> Markup:
        url = self._repo(path)
        if url is None:
            return Markup("<code>{}</code>").format(text)
        return Markup('<a href="{}"><code>{}</code></a>').format(url, text)

    def commit_link(self, sha: str) -> Markup:
        return self._code_link(f"commit/{quote(sha, safe='')}", sha[:10])

    def tag_link(self, tag: str) -> Markup:
        return self._code_link(f"releases/tag/{quote(tag, safe='')}", tag)

    @staticmethod
    def verdict(v: str | None) -> Markup:
        if v == "pass":
            return Markup('<span class="pass">✓ passed</span>')
        if v == "fail":
            return Markup('<span class="fail">✗ failed</span>')
        return Markup("not recorded")

    @staticmethod
    def arrow(delta: float) -> str:
        return "▲ " if delta > 0 else "▼ " if delta < 0 else "= "

    @staticmethod
    def probes(r: Revision) -> str:
        if not r.probes:
            return ""
        ok = sum(p.ok for p in r.probes)
        failed = [p.check for p in r.probes if not p.ok]
        text = f"{ok}/{len(r.probes)} ok"
        return text + (f"; failed: {', '.join(sorted(set(failed)))}" if failed else "")

    def _render(self, name: str, **context: Any) -> str:
        if name not in self._templates:
            self._templates[name] = self.env.get_template(name)
        common = {
            "site": self.site,
            "verdict": self.verdict,
            "arrow": self.arrow,
            "commit_link": self.commit_link,
            "tag_link": self.tag_link,
            "probes": self.probes,
        }
        return str(self._templates[name].render(**common, **context))

    # -- pages -------------------------------------------------------------------------------

    def index(self, models: list[Model]) -> str:
        return self._render(
            "index.html.j2", title="Models", root="", path="index.html", crumbs=[], models=models
        )

    def model_pages(self, m: Model) -> Iterator[tuple[str, str]]:
        """(file name, html) of each page of the model's versions table."""
        pages = max(1, -(-len(m.versions) // PAGE_SIZE))
        charts = self.charts(m)
        have = {v.name for v in m.versions}

        def version_link(name: str) -> Markup:
            """A link only to a page that exists: a revision file's `version` is just text."""
            if name not in have:
                return escape(bidi_visible(name))
            return Markup('<a href="{}.html">{}</a>').format(name, name)

        for n in range(1, pages + 1):
            rows = m.versions[(n - 1) * PAGE_SIZE : n * PAGE_SIZE]
            yield (
                page_file(n),
                self._render(
                    "model.html.j2",
                    title=m.name if n == 1 else f"{m.name}, page {n}",
                    root="../../",
                    path=f"models/{m.slug}/{page_file(n)}",
                    crumbs=[(m.name, "index.html")],
                    m=m,
                    rows=rows,
                    page_no=n,
                    pages=pages,
                    first=(n - 1) * PAGE_SIZE + 1,
                    last=(n - 1) * PAGE_SIZE + len(rows),
                    page_file=page_file,
                    charts=charts if n == 1 else [],
                    version_link=version_link,
                    timeline_limit=TIMELINE_LIMIT,
                    revision_limit=REVISION_LIMIT,
                ),
            )

    def charts(self, m: Model) -> list[dict[str, Any]]:
        out = []
        oldest_first = [v for v in reversed(m.versions) if not v.info.deregistered]
        for i, metric in enumerate(m.charted()):
            points = [
                chart.Point(v.name, v.record.metrics[metric], v.record.verdict == "fail")
                for v in oldest_first
                if v.record is not None and metric in v.record.metrics
            ]
            gate = m.gates.get(metric)
            lower, upper = (gate.min, gate.max) if gate else (None, None)
            bounds = ", ".join(
                f"{w} {_num(b, 4)}" for w, b in (("min", lower), ("max", upper)) if b is not None
            )
            svg = chart.svg(metric, points, lower=lower, upper=upper, chart_id=f"chart{i}")
            if not svg:  # no version has a finite value of it
                continue
            # chart.svg escapes every text it writes
            out.append({"metric": metric, "svg": Markup(svg), "bounds": bounds})  # noqa: S704
        return out

    def version_page(self, m: Model, v: Version, newer: Version | None) -> str:
        rec = v.record
        card_html: Markup | None = None
        params: list[Any] = []
        log: list[str] = []
        compare_previous = False
        if rec is not None:
            log = self.graph.subjects(rec.baseline.sha, rec.git.sha) if rec.baseline else []
            if m.card.template:  # the user's own card: render it, then its Markdown as HTML
                text = card_mod.render_with(rec, m.card, self.root, log, with_front_matter=False)
                card_html = Markup(md.to_html(bidi_visible(text)))  # noqa: S704 (to_html escapes all text)
            prev = v.previous
            # The card already compares with the baseline; most often that IS the previous one.
            if prev and prev.record and (rec.baseline is None or rec.baseline.tag != prev.info.tag):
                compare_previous = True
                params = diff_params(rec.params, prev.record.params)
        rollback_to = self.rollback_targets(m, v)
        diff = changes.between(rec) if rec is not None else None
        promotable = v.info.verdict != "fail" and not v.info.deregistered
        return self._render(
            "version.html.j2",
            title=f"{m.name} {v.name}",
            root="../../",
            path=f"models/{m.slug}/{v.page}",
            crumbs=[(m.name, "index.html"), (v.name, v.page)],
            m=m,
            v=v,
            newer=newer,
            card=card_html,
            changelog=log,
            changes=diff,
            files=input_files(rec) if rec is not None else None,
            compare_previous=compare_previous,
            params_diff=params,
            promotable=promotable,
            buttons=self.buttons(promotable, v, rollback_to),
            rollback_to=rollback_to,
            image=self.image(m, v),
            beside=self.beside(m, v) if promotable else [],
        )

    def beside(self, m: Model, v: Version) -> list[dict[str, Any]]:
        """For each stage serving another version: this one beside it, as a release manager
        approving the promotion sees it (metrics, gates, time served, requests, breaches)."""
        envs = {e.name: e for e in m.environments}

        def history(name: str) -> list[Revision] | str:
            env = envs.get(name)
            if env is None:
                return f"no deploy environment `{name}`"
            return env.note if env.note and not env.revisions else env.revisions

        out = []
        for stage, serving in m.stages.items():
            if serving.name == v.name:
                continue
            where = m.requires.get(stage, stage)
            t = self.site.built_at
            candidate = approval.side(v.name, v.record, where, history(where), t)
            now = approval.side(serving.name, serving.record, stage, history(stage), t)
            out.append({"stage": stage, "serving": serving, "rows": approval.rows(candidate, now)})
        return out

    def rollback_targets(self, m: Model, v: Version) -> list[tuple[str, int]]:
        """Per environment, the newest healthy revision that ran this version, unless this
        version is what the environment serves now (nothing to roll back to)."""
        out = []
        for env in m.environments:
            serving = next((r for r in env.revisions if r.status == "deployed"), None)
            if serving is not None and serving.version == v.name:
                continue
            rev = next(
                (r for r in env.revisions if r.version == v.name and r.status in HEALTHY), None
            )
            if rev is not None:
                out.append((env.name, rev.number))
        return out

    def buttons(
        self, promotable: bool, v: Version, rollback_to: list[tuple[str, int]]
    ) -> list[dict[str, str]]:
        promote = self._repo("actions/workflows/model-promote.yml")
        rollback = self._repo("actions/workflows/model-rollback.yml")
        if promote is None or rollback is None:
            return []
        out = []
        # GitHub cannot pre-fill a dispatch form: the label says what to enter.
        if promotable:
            out.append({"url": promote, "label": f"Promote {v.name} (run model-promote)…"})
        for env, number in rollback_to:
            out.append(
                {
                    "url": rollback,
                    "label": f"Roll {env} back to revision {number} (model-rollback)…",
                }
            )
        return out

    @staticmethod
    def image(m: Model, v: Version) -> dict[str, Any] | None:
        if m.image_name is None or v.record is None:
            return None
        digests: dict[str, list[str]] = {}
        for env in m.environments:
            for r in env.revisions:
                if r.version == v.name and "@sha256:" in r.image:
                    where = digests.setdefault(r.image.split("@", 1)[1], [])
                    where.append(f"{env.name} revision {r.number}")
        return {"name": m.image_name, "tags": imagemeta.tags(v.record, {}), "digests": digests}

    def compare(self, m: Model) -> tuple[str, str]:
        """The compare page and its data script (a script file, so it also works from file://
        where a page cannot fetch JSON)."""
        data = {
            "model": m.name,
            "versions": [
                {
                    "version": v.name,
                    "metrics": v.record.metrics if v.record else {},
                    "params": v.record.params if v.record else {},
                }
                for v in m.versions
            ],
        }
        # Parsed, not an object literal: in a literal `"__proto__": {...}` sets the prototype and
        # that metric vanishes. `<` as \u003c: the text can never close a script element.
        text = json.dumps(_visible_data(data), sort_keys=True)
        js = "window.leptonVersions = JSON.parse(" + json.dumps(text).replace("<", "\\u003c") + ")"
        page = self._render(
            "compare.html.j2",
            title=f"Compare {m.name}",
            root="../../",
            path=f"models/{m.slug}/compare.html",
            crumbs=[(m.name, "index.html"), ("compare", "compare.html")],
            m=m,
        )
        return page, js + ";\n"


@dataclass
class InputFiles:
    """The input files a version page lists with their hashes: every one for a first
    version, else those added or modified since the baseline (the rest are counted)."""

    base: str | None  # the baseline's tag, when it recorded its files
    rows: list[tuple[str, str, FileEntry, str]]  # kind, path, entry, what happened
    same: int
    removed: list[str]


def input_files(rec: Record) -> InputFiles:
    old = rec.baseline.lineage if rec.baseline else None
    kinds = (
        ("code", rec.lineage.code, old.code if old else None),
        ("data", rec.lineage.data, old.data if old else None),
        ("params", rec.lineage.params_files, old.params_files if old else None),
    )
    rows, same, removed = [], 0, []
    for kind, files, before in kinds:
        for path, entry in sorted(files.items()):
            if before is None:
                rows.append((kind, path, entry, "first version"))
            elif path not in before:
                rows.append((kind, path, entry, "added"))
            elif before[path].hash != entry.hash:
                rows.append((kind, path, entry, "modified"))
            else:
                same += 1
        removed += sorted(set(before or {}) - set(files))
    base = rec.baseline.tag if rec.baseline and old else None
    return InputFiles(base, rows, same, removed)


def page_file(n: int) -> str:
    return "index.html" if n == 1 else f"page-{n}.html"
