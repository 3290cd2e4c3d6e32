"""One typed outputs object per Actions step, written through the runtime.

The field names ARE the outputs each `actions/<step>/action.yml` declares (`_` for `-`); a test
holds the two together, so no step writes an undeclared output or leaves a declared one unset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from lepton_ci.core.gha import Runtime


@dataclass
class StepOutputs:
    step: ClassVar[str]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name.replace("_", "-") for f in dataclasses.fields(cls)]

    def as_dict(self) -> dict[str, str]:
        return {
            f.name.replace("_", "-"): str(getattr(self, f.name)) for f in dataclasses.fields(self)
        }

    def write(self, rt: Runtime, *, required: tuple[str, ...] = ()) -> None:
        rt.set_outputs(self.as_dict(), required=required)


@dataclass
class RunOutputs(StepOutputs):
    """With several models, every value but `verdict` and `report` is a JSON object by model."""

    step: ClassVar[str] = "run"
    verdict: str
    record: str
    cache_hit: str
    version: str
    baseline: str
    report: str


@dataclass
class RegisterOutputs(StepOutputs):
    step: ClassVar[str] = "register"
    version: str
    tag: str
    sha: str


@dataclass
class PromoteOutputs(StepOutputs):
    step: ClassVar[str] = "promote"
    tag: str
    version: str
    sha: str


@dataclass
class CardOutputs(StepOutputs):
    step: ClassVar[str] = "card"
    card: str


@dataclass
class CommentOutputs(StepOutputs):
    step: ClassVar[str] = "comment"
    comment_id: str
    comment_url: str
    action: str


@dataclass
class BuildOutputs(StepOutputs):
    step: ClassVar[str] = "build"
    digest: str
    image: str
    ref: str
    tags: str
    uploaded_bytes: str


@dataclass
class DeployOutputs(StepOutputs):
    step: ClassVar[str] = "deploy"
    status: str
    revision: str
    serving_revision: str
    serving_version: str


@dataclass
class RollbackOutputs(StepOutputs):
    step: ClassVar[str] = "rollback"
    status: str
    revision: str
    serving_revision: str
    serving_version: str


@dataclass
class WatchOutputs(StepOutputs):
    """`status`: healthy, breached or unknown (Prometheus down or a query refused)."""

    step: ClassVar[str] = "watch"
    status: str
    breached: str
    action: str
    serving_version: str
    evidence: str
    issue: str
    act: str  # "true": judged only, and a breach awaits the job that acts


@dataclass
class AcceptTagOutputs(StepOutputs):
    """`accept-tag` has no action of its own; the tag workflow reads these."""

    step: ClassVar[str] = "accept-tag"
    model: str
    version: str
    stage: str
    deploy: str  # "true": the tag workflow deploys the stage; "false": already done, or none


BY_STEP: dict[str, type[StepOutputs]] = {
    c.step: c
    for c in (
        RunOutputs,
        RegisterOutputs,
        PromoteOutputs,
        CardOutputs,
        CommentOutputs,
        BuildOutputs,
        DeployOutputs,
        RollbackOutputs,
        WatchOutputs,
        AcceptTagOutputs,
    )
}
