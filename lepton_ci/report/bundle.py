"""`lepton-ci run` as a CI step: run the models, then leave each one's report bundle behind.

The bundle (record + comment metadata) is what the fork-safe comment job posts; the step's
outputs and summary are written here too, so the CLI only prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core import templating
from lepton_ci.core.context import Context
from lepton_ci.core.gha import Runtime
from lepton_ci.core.outputs import RunOutputs
from lepton_ci.core.record import Record
from lepton_ci.report import comment, publish
from lepton_ci.run import diffview
from lepton_ci.run import operation as runs
from lepton_ci.versions.registry import Registry


@dataclass
class RunReport:
    records: list[Record]
    bundles: dict[str, Path]
    record_paths: dict[str, Path]
    reports_dir: Path

    @property
    def verdict(self) -> str:
        return "fail" if any(r.verdict == "fail" for r in self.records) else "pass"

    def outputs(self) -> RunOutputs:
        if len(self.records) == 1:
            rec = self.records[0]
            return RunOutputs(
                verdict=rec.verdict,
                record=str(self.record_paths[rec.model]),
                cache_hit=str(rec.cache.hit).lower(),
                version=rec.candidate_version or "",
                baseline=rec.baseline.tag if rec.baseline else "",
                report=str(self.bundles[rec.model]),
            )

        def by_model(values: dict[str, object]) -> str:
            return json.dumps(values, sort_keys=True)

        return RunOutputs(
            verdict=self.verdict,
            record=by_model({r.model: str(self.record_paths[r.model]) for r in self.records}),
            cache_hit=by_model({r.model: r.cache.hit for r in self.records}),
            version=by_model({r.model: r.candidate_version or "" for r in self.records}),
            baseline=by_model(
                {r.model: r.baseline.tag if r.baseline else "" for r in self.records}
            ),
            report=str(self.reports_dir),
        )

    def announce(self, rt: Runtime) -> None:
        """Step summary per model, one annotation per failed gate, and the step outputs."""
        for rec in self.records:
            rt.summary(diffview.as_markdown(rec))
            for g in rec.gates:
                if g.verdict == "fail":
                    rt.error(f"{g.metric}: {'; '.join(g.reasons)}", title=f"{rec.model} gate")
        self.outputs().write(rt)


def run_and_bundle(ctx: Context, models: list[str], opts: runs.RunOptions) -> RunReport:
    for m in models:
        ctx.cfg.model(m)  # an unknown model fails before anything runs
    templating.warm(comment.TEMPLATE)  # while the run waits on git and on training
    records = runs.run(ctx, models, opts)
    registry = Registry(ctx.git)
    bundles = {
        rec.model: comment.write_bundle(
            ctx.paths.report_bundle(rec.model),
            rec,
            publish.meta_from_env(ctx.env, rec, registry),
        )
        for rec in records
    }
    paths = {rec.model: ctx.record_path(rec.model) for rec in records}
    return RunReport(records, bundles, paths, ctx.paths.reports)
