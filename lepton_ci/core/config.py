"""lepton.yaml, modelled with pydantic. Unknown keys are errors that name file, key and fix."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lepton_ci.core import docs, paths, yamlfile
from lepton_ci.core.config_file import MAX_BYTES
from lepton_ci.core.config_file import find_config as find_config  # re-exported
from lepton_ci.core.errors import ConfigError
from lepton_ci.core.names import valid_model, valid_stage

MAX_ERRORS = 20  # a file of 300,000 unknown keys gets 20 lines, not 33 MB
# Deploy environment names (they become Kubernetes names): lowercase, digits, `-`, `/`.
NAME_RE = re.compile(r"^[a-z][a-z0-9-/]*[a-z0-9]$")

Command = str | list[str]


class Strict(BaseModel):
    # defer_build: a validator is built when a model first validates, not at import. Building
    # all twenty (each embedding its nested ones) cost 70-90 ms of every command's start; one
    # for the whole Config costs 5. So defaults below are factories: a default instance made
    # here would build its validator at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Gate(Strict):
    """How one metric is judged against its bounds and against the baseline."""

    direction: Literal["higher", "lower"] = Field(
        "higher", description="`higher` or `lower`: which way is better"
    )
    min: float | None = Field(None, description="absolute lower bound: the gate fails below it")
    max: float | None = Field(None, description="absolute upper bound: the gate fails above it")
    max_regression: Annotated[float, Field(ge=0)] | None = Field(
        None, description="allowed loss against the baseline, in the metric's own units"
    )
    max_regression_pct: Annotated[float, Field(ge=0)] | None = Field(
        None, description="allowed loss against the baseline, in percent of the baseline"
    )
    noise: Annotated[float, Field(ge=0)] = Field(
        0.0, description="a change this small counts as unchanged"
    )
    informational: bool = Field(False, description="shown in reports, never fails")
    key: bool = Field(
        False, description="the headline metric: tag subject, PR comment chart, site charts"
    )

    @model_validator(mode="after")
    def _bounds(self) -> Gate:
        for name in ("min", "max", "max_regression", "max_regression_pct", "noise"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"`{name}` must be a finite number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        return self


class CardConfig(Strict):
    """Facts for the model card that the run cannot measure."""

    description: str = Field("", description="what the model is, for the card's opening paragraph")
    intended_use: str = Field("", description="what it is for (and not for)")
    limitations: str = Field("", description="what it gets wrong, what data it has not seen")
    license: str | None = Field(
        None, description="an SPDX-like id for the card's front matter, e.g. bsd-3-clause"
    )
    datasets: list[str] = Field(
        default_factory=list,
        description="dataset ids for the card's front matter; none listed, none invented",
    )
    tags: list[str] = Field(
        default_factory=list, description="Hugging Face tags for the front matter"
    )
    task: str = Field("other", description="Hugging Face task type, e.g. image-classification")
    library_name: str | None = Field(None, description="Hub library, e.g. scikit-learn")
    template: str | None = Field(
        None, description="your own Jinja2 card template (relative to lepton.yaml)"
    )
    path: str = Field(
        "model_cards/{model}/{version}.md",
        description="where `lepton-ci card` writes; `{model}` and `{version}` are filled in",
    )


def _check_globs(v: list[str] | None, *, absolute_ok: bool) -> list[str] | None:
    """Globs are relative to the model's folder (`path:`) and stay in it: what they match is
    keyed, cached and laid into the image by its path there. Only `data:` may also name files
    elsewhere by absolute path (a mounted dataset); `..` is refused everywhere."""
    for pattern in v or []:
        if not pattern.strip():
            raise ValueError("an empty pattern matches nothing; remove it")
        if pattern.startswith("/"):
            if not absolute_ok:
                raise ValueError(
                    f"`{pattern}` is an absolute path: these patterns are relative to the "
                    "model's folder (`path:`); only `data:` may name files by absolute path"
                )
            if pattern.strip("/") == "":
                raise ValueError("`/` is the whole file system; name the data's folder")
        if ".." in pattern.split("/"):
            where = "; data outside it may be named by absolute path" if absolute_ok else ""
            raise ValueError(
                f"`{pattern}` leaves the model's folder (`..`): patterns are relative to "
                f"`path:` and stay inside it{where}"
            )
    return v


class ImageConfig(Strict):
    """How the model's container image is built and where it is pushed."""

    name: str = Field(description="repository, e.g. 127.0.0.1:5000/digits or ghcr.io/acme/digits")
    builder: Literal["layers", "dockerfile"] | None = Field(
        None,
        description="`layers` (no daemon) or `dockerfile` (Docker Engine API); default: "
        "`layers` when `base` is set",
    )
    base: str | None = Field(None, description="base image in a registry (layers builder)")
    dockerfile: str = Field(
        "Dockerfile", description="the Dockerfile, relative to `context` (dockerfile builder)"
    )
    context: str = Field(
        ".", description="build context, relative to the model's directory (dockerfile builder)"
    )
    files: list[str] | None = Field(None, description="code layer globs (default: `code`)")
    workdir: str = Field("/app", description="where the code and model layers land in the image")
    entrypoint: list[str] = Field(
        default_factory=list, description="the image's entrypoint, an argv list"
    )
    cmd: list[str] = Field(default_factory=list, description="the image's default arguments")
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the image"
    )
    ports: list[int] = Field(default_factory=list, description="ports the image exposes")
    labels: dict[str, str] = Field(default_factory=dict, description="extra image labels")
    source: str | None = Field(None, description="org.opencontainers.image.source URL")
    insecure: bool | None = Field(None, description="plain HTTP (default: only for localhost)")
    compression: Literal["auto", "gzip", "none"] = Field(
        "auto",
        description="model layer: gzip, none (plain tar), or auto (none when gzip cannot "
        "shrink the weights by 10%)",
    )
    requirements: str | None = Field(
        None,
        description="pinned requirements file (relative to the model dir) installed as the "
        "dependency layer (layers builder)",
    )
    python: str | None = Field(
        None, description='the base image\'s Python, e.g. "3.11" (default: read from the base)'
    )
    platform: str | None = Field(
        None,
        description="wheel platform tag, e.g. manylinux_2_36_x86_64 (default: read from the base)",
    )

    @field_validator("files")
    @classmethod
    def _files_globs(cls, v: list[str] | None) -> list[str] | None:
        return _check_globs(v, absolute_ok=False)

    @field_validator("python", mode="before")
    @classmethod
    def _python_is_text(cls, v: Any) -> Any:
        if isinstance(v, float):  # YAML reads 3.10 as the number 3.1
            raise ValueError('quote the version: `python: "3.11"` (YAML reads 3.10 as 3.1)')
        return v

    @property
    def kind(self) -> str:
        return self.builder or ("layers" if self.base else "dockerfile")

    @model_validator(mode="after")
    def _layers_need_base(self) -> ImageConfig:
        if self.kind == "layers" and not self.base:
            raise ValueError("the `layers` builder needs `base:` (an image in a registry)")
        if self.kind != "layers" and self.requirements:
            raise ValueError(
                "`requirements:` is for the `layers` builder; with a Dockerfile, install "
                "the requirements in the Dockerfile"
            )
        if self.python is not None and not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise ValueError(f'`python: {self.python}` must be MAJOR.MINOR, e.g. "3.11"')
        if self.platform is not None and not re.fullmatch(
            r"(manylinux|musllinux)_\d+_\d+_(x86_64|aarch64|armv7l|ppc64le|s390x)", self.platform
        ):
            raise ValueError(
                f"`platform: {self.platform}` is not a wheel platform tag like "
                "manylinux_2_36_x86_64 or musllinux_1_2_aarch64"
            )
        return self


class HttpCheck(Strict):
    path: str = Field("/healthz", description="path to call")
    status: int = Field(200, description="status the answer must have")
    body_contains: str | None = Field(None, description="text the answer's body must contain")


class GoldenCheck(Strict):
    """A known request and the answer it must get (numbers within `tolerance`)."""

    path: str = Field("/predict", description="path to POST the request to")
    request: Any = Field(description="the JSON body sent")
    expect: Any = Field(
        description="the JSON answer expected (numbers compared within `tolerance`)"
    )
    tolerance: Annotated[float, Field(ge=0)] = Field(
        0.0, description="largest difference allowed for each number"
    )


class LatencyCheck(Strict):
    path: str = Field("/healthz", description="path to time")
    p95_ms: Annotated[
        float, Field(gt=0, description="bound on the p95 latency over the samples, in ms")
    ]


class PrometheusCheck(Strict):
    url: str = Field(description="Prometheus base URL")
    query: str = Field(
        description="an instant PromQL query; every series must be within the bounds"
    )
    max: float | None = Field(None, description="upper bound of every series")
    min: float | None = Field(None, description="lower bound of every series")


class ChecksConfig(Strict):
    count: Annotated[int, Field(ge=1)] = Field(5, description="samples in the health window")
    interval: Annotated[float, Field(ge=0)] = Field(0.5, description="seconds between samples")
    failure_threshold: Annotated[int, Field(ge=1)] = Field(
        1, description="failing samples that fail the release"
    )
    timeout: Annotated[float, Field(gt=0)] = Field(5.0, description="seconds each probe may take")
    http: list[HttpCheck] = Field(
        default_factory=lambda: [HttpCheck()], description="status and body checks"
    )
    golden: list[GoldenCheck] = Field(
        default_factory=list, description="known requests and the predictions they must get"
    )
    latency: LatencyCheck | None = Field(None, description="a p95 latency bound")
    prometheus: PrometheusCheck | None = Field(None, description="a Prometheus query within bounds")


METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class DriftSLO(Strict):
    """Live predictions by class against the distribution the evaluation recorded (PSI)."""

    metric: str = Field(description="counter of predictions with one label per class")
    label: str = Field("class", description="the label that names the class")
    max_psi: Annotated[
        float,
        Field(gt=0, description="population stability index above which the SLO breaches"),
    ]
    window: str = Field("5m", description="PromQL range the live distribution is taken over")
    min_predictions: Annotated[int, Field(ge=1)] = Field(
        100, description="fewer live predictions in the window are `no-data`, not judged"
    )
    reference: str | None = Field(
        None, description="record metrics prefix of the evaluated shares (default: LABEL_share)"
    )

    @field_validator("label")
    @classmethod
    def _label_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):  # `$` would let "class\n" through
            raise ValueError(f"`{v}` is not a Prometheus label name")
        return v

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, v: str) -> str:
        if not METRIC_NAME.fullmatch(v):
            raise ValueError(f"`{v}` is not a Prometheus metric name (letters, digits, `_`, `:`)")
        return v

    @field_validator("window")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", v):
            raise ValueError(f"`{v}` is not a PromQL duration such as 5m or 1h30m")
        return v

    @property
    def reference_prefix(self) -> str:
        return self.reference or f"{self.label}_share"


class SLO(Strict):
    """One objective: a PromQL query within `max`/`min`, or a `drift` bound."""

    name: str = Field(description="letters, digits, `-`, `_`, `.`; unique in the environment")
    query: str | None = Field(
        None, description="a PromQL query; the worst series it returns is judged"
    )
    max: float | None = Field(None, description="upper bound for the query")
    min: float | None = Field(None, description="lower bound for the query")
    drift: DriftSLO | None = Field(
        None, description="predicted classes against the evaluation's shares"
    )

    @model_validator(mode="after")
    def _one_form(self) -> SLO:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", self.name):
            raise ValueError(f"SLO name `{self.name}` must be letters, digits, `-`, `_`, `.`")
        if (self.query is None) == (self.drift is None):
            raise ValueError(f"SLO `{self.name}` needs exactly one of `query` or `drift`")
        if self.query is not None and self.max is None and self.min is None:
            raise ValueError(f"SLO `{self.name}` needs `max` or `min` for its query")
        if self.drift is not None and (self.max is not None or self.min is not None):
            raise ValueError(f"SLO `{self.name}`: a drift SLO is bounded by `drift.max_psi`")
        for bound in (self.max, self.min):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"SLO `{self.name}`: bounds must be finite numbers")
        return self


class WatchConfig(Strict):
    """SLOs on live traffic, evaluated against Prometheus by `lepton-ci watch`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)
    prometheus: str | None = Field(None, description="base URL (or env LEPTON_PROMETHEUS_URL)")
    # Upper bounds: a sleep or timeout past the platform's time_t is an OverflowError, not a wait.
    interval: Annotated[float, Field(gt=0, le=86400)] = Field(
        30.0, description="seconds between evaluations (without `--once`)"
    )
    for_: Annotated[int, Field(ge=1, le=1000, alias="for")] = Field(
        2, description="consecutive breaching evaluations before acting (`--once`: 1)"
    )
    on_breach: Literal["rollback", "alert"] = Field(
        "rollback",
        description="`rollback` puts the last healthy revision back; `alert` only records",
    )
    timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="seconds for each Prometheus answer (3 tries)"
    )
    metrics_prefix: str | None = Field(
        None, description="prefix of the server's metrics in dashboards (default: model name)"
    )
    slos: Annotated[list[SLO], Field(min_length=1, description="the objectives")]
    requests: str | None = Field(
        None,
        description="PromQL giving the requests a revision answered; `$window` stands for the "
        "time it served (e.g. `3600s`). For `stages.*.requires.min_requests`: `promote` asks it "
        "over each interval a version served, and `watch` keeps it on the serving revision "
        "each evaluation (default: `sum(increase(<metrics_prefix>_requests_total[$window]))`)",
    )

    @field_validator("requests")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None and "$window" not in v:
            raise ValueError(
                "the requests query must read `[$window]`, the time the revision has served, "
                "e.g. `sum(increase(digits_requests_total[$window]))`; a fixed range would "
                "count the release before it, or miss traffic"
            )
        return v

    @field_validator("metrics_prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None and not METRIC_NAME.fullmatch(v):
            raise ValueError(f"`{v}` is not a Prometheus metric name prefix (letters, digits, `_`)")
        return v

    @model_validator(mode="after")
    def _unique(self) -> WatchConfig:
        names = [s.name for s in self.slos]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"SLO names must be unique; repeated: {', '.join(dup)}")
        return self


class GatewayRef(Strict):
    """The Gateway an HTTPRoute attaches to (Gateway API `parentRefs`)."""

    name: str = Field(description="the Gateway's name")
    namespace: str | None = Field(None, description="its namespace (default: the environment's)")
    section_name: str | None = Field(None, description="one listener of it (`sectionName`)")


class RolloutConfig(Strict):
    """How a new revision takes over: all at once, step by step (`canary`), or first beside
    the serving one on a copy of its requests (`shadow`)."""

    strategy: Literal["all-at-once", "canary", "shadow"] = Field(
        "all-at-once",
        description="`all-at-once` replaces the serving revision after its checks; `canary` "
        "gives it `steps` of the traffic in turn; `shadow` mirrors live requests to it and "
        "compares its answers with the serving revision's, answering clients from the latter",
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100],
        description="canary: the candidate's share of requests at each step, in percent, "
        "rising, ending at 100",
    )
    interval: Annotated[float, Field(gt=0, le=86400)] = Field(
        60.0, description="canary: seconds each step serves before it is judged"
    )
    requests: Annotated[int, Field(ge=1)] = Field(
        500, description="shadow: mirrored requests compared before the verdict"
    )
    min_agreement: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None,
        description="shadow, classification: the share of predictions both revisions answer "
        "alike at least, compared one by one (a request may carry several; default 0.98 "
        "unless `max_error` is set)",
    )
    max_error: Annotated[float, Field(ge=0)] | None = Field(
        None,
        description="shadow, regression: the mean absolute difference between the two "
        "revisions' predictions at most",
    )
    timeout: Annotated[float, Field(gt=0, le=86400)] = Field(
        600.0, description="shadow: seconds to wait for `requests` mirrored requests"
    )
    traffic: Literal["gateway", "replicas"] = Field(
        "gateway",
        description="kubernetes: `gateway` splits by Gateway API HTTPRoute weights; `replicas` "
        "(clusters without a Gateway) by the two Deployments' replica counts behind one "
        "Service, so a step's share is rounded to what the replica counts can give",
    )
    gateway: GatewayRef | None = Field(
        None, description="kubernetes, `traffic: gateway`: the Gateway the HTTPRoute attaches to"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RolloutConfig:
        if self.steps != sorted(set(self.steps)) or self.steps[-1:] != [100]:
            raise ValueError(
                f"rollout.steps {self.steps} must rise strictly and end at 100 (the candidate "
                "serves everything at the last step), e.g. [10, 50, 100]"
            )
        if self.min_agreement is not None and self.max_error is not None:
            raise ValueError(
                "rollout: set `min_agreement` (classification) or `max_error` (regression), "
                "not both"
            )
        return self

    @property
    def agreement(self) -> float | None:
        """The shadow gate's agreement bound: as set, else 0.98 unless `max_error` judges."""
        if self.min_agreement is not None:
            return self.min_agreement
        return None if self.max_error is not None else 0.98


def requests_query(model: str, watch: WatchConfig | None) -> str:
    """`watch.requests`, or its default from the server's metric prefix."""
    if watch is not None and watch.requests is not None:
        return watch.requests
    prefix = (watch.metrics_prefix if watch else None) or re.sub(r"[^a-zA-Z0-9_]", "_", model)
    return f"sum(increase({prefix}_requests_total[$window]))"


class DeployEnvironment(Strict):
    namespace: str = Field(
        "default", description="Kubernetes namespace (podman: part of the pod names)"
    )
    replicas: Annotated[int, Field(ge=0)] = Field(
        1, description="pod count (not rendered with `hpa`: the autoscaler's)"
    )
    port: int = Field(8080, description="port the server listens on in the container")
    host_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="podman: published on 127.0.0.1"
    )
    url: str | None = Field(None, description="base URL the health checks call")
    resources: dict[str, Any] = Field(
        default_factory=dict,
        description="the container's `resources:` (requests, limits), as Kubernetes writes them",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the container"
    )
    readiness_path: str = Field("/readyz", description="readiness probe path")
    liveness_path: str = Field("/healthz", description="liveness probe path")
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="free-form values for your own templates (`values` in their context)",
    )
    service_monitor: bool = Field(False, description="render a prometheus-operator ServiceMonitor")
    hpa: dict[str, Any] | None = Field(
        None, description="a HorizontalPodAutoscaler: `{min, max, cpu}` (defaults 1, 3, 80 %)"
    )
    rollout_timeout: Annotated[float, Field(gt=0)] = Field(
        120.0, description="seconds the rollout may take before it counts as failed"
    )
    # The cluster counts it from the last progress, so it must be below rollout_timeout for its
    # verdict (and its reason) to arrive before lepton-ci's own budget runs out.
    progress_deadline: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="kubernetes: seconds a rollout may make no progress before the cluster "
        "reports ProgressDeadlineExceeded (the Deployment's progressDeadlineSeconds); below "
        "`rollout_timeout`, default half of it",
    )
    rollback_timeout: Annotated[float, Field(gt=0)] = Field(
        120.0, description="seconds the automatic revert may take"
    )
    on_first_failure: Literal["remove", "scale-to-zero"] = Field(
        "remove", description="a failing first release: `remove` it, or `scale-to-zero`"
    )
    checks: ChecksConfig = Field(
        default_factory=ChecksConfig, description="the health window after each rollout"
    )
    watch: WatchConfig | None = Field(
        None, description="SLOs on live traffic for `lepton-ci watch`"
    )
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig,
        description="how a new revision takes over: `all-at-once`, `canary` or `shadow`",
    )

    @model_validator(mode="after")
    def _deadline_below_budget(self) -> DeployEnvironment:
        if self.progress_deadline is not None and self.progress_deadline >= self.rollout_timeout:
            raise ValueError(
                f"progress_deadline ({self.progress_deadline}) must be below rollout_timeout "
                f"({self.rollout_timeout:g}): the cluster counts it from the rollout's last "
                "progress, so an equal or longer deadline is never what ends a stalled rollout"
            )
        return self

    def progress_deadline_seconds(self) -> int:
        """The Deployment's progressDeadlineSeconds: as set, else half the rollout budget."""
        return self.progress_deadline or max(1, int(self.rollout_timeout // 2))

    def check_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        if self.host_port:
            return f"http://127.0.0.1:{self.host_port}"
        raise ValueError("set `url` (or `host_port` for podman) so health checks can reach it")


class DeployConfig(Strict):
    target: Literal["podman", "kubernetes"] = Field(
        "podman", description="`podman` (pods on this host) or `kubernetes` (a cluster)"
    )
    templates: str | None = Field(None, description="directory of templates that add/override")
    state_dir: str = Field(
        paths.DEPLOY_STATE, description="podman: where the release history is kept"
    )
    field_manager: str = Field(
        "lepton-ci", description="kubernetes: the server-side apply field manager"
    )
    # The workflows a person starts (rollback, promote, stage tag) are in no GitHub concurrency
    # group, where a newer waiting job would replace theirs, so this wait is their queue.
    lock_timeout: Annotated[float, Field(ge=0)] = Field(
        900.0,
        description="seconds a deploy, rollback or watch revert waits for another of the same "
        "environment",
    )
    environments: Annotated[
        dict[str, DeployEnvironment],
        Field(min_length=1, description="deploy environments by name (lowercase, digits, `-`)"),
    ]

    @model_validator(mode="after")
    def _reachable(self) -> DeployConfig:
        for name, env in self.environments.items():
            if not NAME_RE.match(name):
                raise ValueError(f"environment name `{name}` is not valid (lowercase, digits, -)")
            if not env.url and not env.host_port:
                raise ValueError(
                    f"environment `{name}` needs `url` (or `host_port` with podman) so health "
                    "checks can reach it"
                )
            strategy = env.rollout.strategy
            if self.target == "podman" and strategy != "all-at-once" and not env.host_port:
                # without it there is no splitter: every deploy would fail at the canary
                raise ValueError(
                    f"environment `{name}`: rollout.strategy `{strategy}` on podman needs "
                    "`host_port` (the splitter listens on it and splits the requests between "
                    "the two revisions); add `host_port: <port>` or use `all-at-once`"
                )
        return self


class ModelConfig(Strict):
    path: str = Field(".", description="directory the commands run in, relative to lepton.yaml")
    train: Command | None = Field(
        None, description="train command: a shell string (`sh -c`) or an argv list"
    )
    evaluate: Command | None = Field(None, description="evaluate command, run after `train`")
    params: list[str] = Field(
        default_factory=list,
        description="params files (YAML or JSON), flattened to dotted keys; part of the "
        "run-cache key",
    )
    code: list[str] = Field(
        ["**/*.py"], description="globs of the code the run depends on, relative to `path`"
    )
    data: list[str] = Field(
        default_factory=list,
        description="data globs or directories (relative, or absolute for mounted data); a "
        "pattern matching nothing is an error",
    )
    outputs: list[str] = Field(
        default_factory=list,
        description="artifacts the commands must produce (kept in the run-cache, laid into "
        "the image)",
    )
    metrics: Annotated[
        list[str],
        Field(
            min_length=1,
            description="JSON or YAML files of metric name -> number (nested keys are flattened)",
        ),
    ]
    gates: dict[str, Gate] = Field(
        default_factory=dict,
        description="gates by metric name; metrics without a gate are informational",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for the commands"
    )
    timeout_minutes: Annotated[float, Field(gt=0)] = Field(
        60.0, description="each command's time limit"
    )
    card: CardConfig = Field(default_factory=CardConfig, description="facts for the model card")
    image: ImageConfig | None = Field(None, description="the container image (`lepton-ci build`)")
    deploy: DeployConfig | None = Field(
        None, description="where and how releases are deployed (`lepton-ci deploy`)"
    )

    @field_validator("code", "outputs")
    @classmethod
    def _relative_globs(cls, v: list[str]) -> list[str]:
        return _check_globs(v, absolute_ok=False) or []

    @field_validator("data")
    @classmethod
    def _data_globs(cls, v: list[str]) -> list[str]:
        return _check_globs(v, absolute_ok=True) or []

    @field_validator("train", "evaluate")
    @classmethod
    def _nonempty_command(cls, v: Command | None) -> Command | None:
        if v is not None and (not v if isinstance(v, list) else not v.strip()):
            raise ValueError("command is empty; give a shell command string or an argv list")
        return v

    @model_validator(mode="after")
    def _has_command(self) -> ModelConfig:
        if self.train is None and self.evaluate is None:
            raise ValueError("a model needs `train`, `evaluate` or both")
        return self


_TEAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9_][A-Za-z0-9._-]*")


class PromotionPolicy(Strict):
    """Who may promote to a stage: any listed user, a member of a listed team (`org/slug`), or
    anyone with at least `permission` on the repository."""

    users: list[str] = Field(default_factory=list, description="GitHub logins who may promote")
    teams: list[str] = Field(
        default_factory=list, description="teams whose members may promote, as ORG/TEAM-SLUG"
    )
    permission: Literal["read", "triage", "write", "maintain", "admin"] | None = Field(
        None, description="anyone with at least this permission on the repository may promote"
    )

    @field_validator("teams")
    @classmethod
    def _team_form(cls, v: list[str]) -> list[str]:
        for t in v:
            # The parts go into API paths: `acme/..` would ask about the whole organization.
            if not _TEAM.fullmatch(t):
                raise ValueError(f"team `{t}` must be written as ORG/TEAM-SLUG")
        return v


_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`20s`, `30m`, `48h`, `2d`, or parts of them together (`1h30m`), in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"`{text}` is not a duration: write a whole number and a unit, `s`, `m`, `h` or "
            "`d`, e.g. `20s`, `30m`, `48h` (or `1h30m`)"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds > MAX_DURATION:
        # A soak's "can pass at" is now + what is left: past year 9999 that is no date at all
        # (an OverflowError at promotion), and a year is longer than any soak means to be.
        raise ValueError(f"`{text}` is longer than a year (365d): write at most `365d`")
    return seconds


MAX_DURATION = 365 * 86400


class Requires(Strict):
    """What a version must have done in an earlier stage before it is promoted here."""

    stage: str = Field(description="the stage a version must have been in first")
    soak: str | None = Field(
        None,
        description="how long it must have served in that stage's deploy environment, e.g. "
        "`20s`, `30m`, `48h` (from its revision history)",
    )
    no_breach: bool = Field(
        False,
        description="`true`: refused if `watch` recorded an SLO breach on any revision of the "
        "version in that environment",
    )
    min_requests: Annotated[int, Field(ge=0)] = Field(
        0,
        description="requests it must have served there, as `watch` counted them "
        "(`watch.requests`)",
    )

    @field_validator("soak")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @property
    def soak_seconds(self) -> int:
        return 0 if self.soak is None else parse_duration(self.soak)

    @property
    def looks_at_history(self) -> bool:
        """Does this rule need the environment's revision history (not only the tags)?"""
        return self.soak is not None or self.no_breach or self.min_requests > 0


class StageConfig(Strict):
    requires: Requires | None = Field(
        None,
        description="a stage a version must have been in first (`requires: staging`), or a "
        "mapping that also asks what happened there: `{stage: staging, soak: 48h, "
        "no_breach: true, min_requests: 1000}`",
    )
    description: str = Field("", description="what the stage is for")
    allow: PromotionPolicy | None = Field(
        None, description="who may promote to this stage (default: anyone the workflow runs for)"
    )
    allow_unrecorded: bool = Field(
        False,
        description="promote versions whose tag carries no record (registered by GTO or by "
        "hand): their gates cannot be checked",
    )

    @field_validator("requires", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        return {"stage": v} if isinstance(v, str) else v

    @property
    def required_stage(self) -> str | None:
        return None if self.requires is None else self.requires.stage


class CacheConfig(Strict):
    dir: str = Field(paths.RUN_CACHE, description="run-cache directory, relative to lepton.yaml")
    enabled: bool = Field(True, description="`false`: every run trains")


class EnvironmentConfig(Strict):
    lock: list[str] = Field(
        default=[], description="lock files whose content is recorded with the environment"
    )
    python: str | None = Field(
        None,
        description="the interpreter the train and evaluate commands run (a path relative to "
        "lepton.yaml, or a name looked up on PATH); default: the one their commands name, else "
        "`python3` on PATH",
    )

    @field_validator("python")
    @classmethod
    def _interpreter(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v.startswith("-")):
            raise ValueError(
                "give an interpreter: a path such as `.venv/bin/python`, or a name on PATH "
                "such as `python3.12`"
            )
        return v


# A branch or tag by its full name: `main` alone could be either, or a remote's.
_POLICY_REF = re.compile(r"refs/(heads|tags)/[A-Za-z0-9._][A-Za-z0-9._/-]*")


class PolicyConfig(Strict):
    """Where `promote`, `accept-tag` and `rollback` read the stages policy from."""

    ref: str | None = Field(
        None,
        description="a protected branch or tag, e.g. refs/heads/release (default: the "
        "repository's default branch); honoured only as the default branch's lepton.yaml says",
    )

    @field_validator("ref")
    @classmethod
    def _full_ref(cls, v: str | None) -> str | None:
        if v is not None and (
            not _POLICY_REF.fullmatch(v) or ".." in v or v.endswith((".", "/", ".lock"))
        ):
            raise ValueError(
                "give a branch or tag by its full name, e.g. `refs/heads/main` or "
                "`refs/tags/policy`"
            )
        return v


_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9_.-]+")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


class TrustIdentity(Strict):
    """A keyless signer `verify` accepts: the workflow file of `repository` at `ref`, as the
    OIDC issuer vouches for it (Fulcio writes it into the signing certificate)."""

    issuer: str = Field(GITHUB_ISSUER, description="the OIDC issuer (default: GitHub Actions)")
    repository: str = Field(description="OWNER/NAME of the repository whose workflow signs")
    workflow: str = Field(description="path of the release workflow, .github/workflows/X.yml")
    ref: str = Field("refs/heads/main", description="the ref it runs from (the default branch)")

    @field_validator("issuer")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://") or any(c.isspace() for c in v):
            raise ValueError(f"`{v}` is not an https:// URL of an OIDC issuer")
        return v

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not _REPO.fullmatch(v):
            raise ValueError(f"`{v}` is not OWNER/NAME")
        return v

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, v: str) -> str:
        if not re.fullmatch(r"\.github/workflows/[A-Za-z0-9_.-]+\.ya?ml", v):
            raise ValueError(
                f"`{v}` is not a workflow path such as .github/workflows/model-main.yml"
            )
        return v

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not re.fullmatch(r"refs/(heads|tags)/[^\s]+", v):
            raise ValueError(f"`{v}` is not a full ref such as refs/heads/main")
        return v

    @property
    def subject(self) -> str:
        """The certificate identity (SAN) Fulcio gives this workflow."""
        return f"https://github.com/{self.repository}/{self.workflow}@{self.ref}"


class TrustConfig(Strict):
    """Who may sign versions and images, and whether unsigned ones are refused."""

    require: bool = Field(
        False,
        description="promote, accept-tag, build --version and deploy refuse a version (or "
        "image) that does not verify",
    )
    keys: list[str] = Field(default=[], description="public keys (PEM) accepted, paths from here")
    identities: list[TrustIdentity] = Field(default=[], description="keyless signers accepted")
    signing_key: str | None = Field(
        None,
        description="private key (PEM) register and build sign with, a path from here; "
        "LEPTON_SIGNING_KEY and --signing-key take precedence",
    )
    sigstore: str | None = Field(
        None,
        description="a Sigstore client trust config (JSON) for a private Sigstore instance "
        "(default: the public-good instance)",
    )

    @field_validator("keys")
    @classmethod
    def _key_paths(cls, v: list[str]) -> list[str]:
        for k in v:
            if not k.strip():
                raise ValueError("an empty key path; give the path of a public key (PEM)")
        return v

    @model_validator(mode="after")
    def _someone(self) -> TrustConfig:
        if self.require and not self.keys and not self.identities:
            raise ValueError(
                "`require: true` with no `keys` or `identities` accepts no signer, so nothing "
                "could ever be promoted; add the public key (`keys: [release.pub]`) or the "
                "release workflow (`identities:`)"
            )
        return self


class Config(Strict):
    version: Literal[1] = Field(1, description="the schema version of lepton.yaml")
    models: Annotated[
        dict[str, ModelConfig],
        Field(
            min_length=1, description="models by name (GTO's name grammar; a monorepo has several)"
        ),
    ]
    stages: dict[str, StageConfig] = Field(
        default_factory=dict,
        description="the stages versions are promoted to: a mapping, or a list of names",
    )
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig,
        description="where `promote`, `accept-tag` and `rollback` read the stages policy from",
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, description="the run-cache")
    environment: EnvironmentConfig = Field(
        default_factory=EnvironmentConfig, description="the training environment"
    )
    trust: TrustConfig = Field(
        default_factory=TrustConfig, description="who may sign versions, and whether it is required"
    )

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {name: {} for name in v}
        return v

    @field_validator("stages")
    @classmethod
    def _no_cycle(cls, stages: dict[str, StageConfig]) -> dict[str, StageConfig]:
        for name in stages:
            chain = [name]
            while (nxt := stages[chain[-1]].required_stage) in stages and nxt is not None:
                if nxt in chain:
                    cycle = " -> ".join([*chain[chain.index(nxt) :], nxt])
                    raise ValueError(
                        f"stages require each other in a cycle ({cycle}), so no version could "
                        "ever be promoted; remove one `requires:`"
                    )
                chain.append(nxt)
        return stages

    @field_validator("models")
    @classmethod
    def _one_state_file_each(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        by_slug: dict[str, str] = {}
        for name in models:
            other = by_slug.setdefault(paths.slug(name), name)
            if other != name:
                raise ValueError(
                    f"models `{other}` and `{name}` would share one state file "
                    f"(.lepton/runs/{paths.slug(name)}.json); rename one of them"
                )
        return models

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in models:
            _check_name("model", name, valid_model, ", optionally prefixed by `DIR:`")
        return models

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages: dict[str, StageConfig]) -> dict[str, StageConfig]:
        # Checked on the field, so the error points at `stages`, not at "(top level)".
        for name, stage in stages.items():
            _check_name("stage", name, valid_stage, "")
            required = stage.required_stage
            if required is not None and required not in stages:
                raise ValueError(
                    f"stage `{name}` requires `{required}`, which is not a declared stage"
                )
        return stages


def _check_name(kind: str, name: str, valid: Callable[[str], bool], more: str) -> None:
    if not valid(name):
        raise ValueError(
            f"{kind} name {json.dumps(name, ensure_ascii=False)} is not valid: use letters, "
            f"digits, `-`, `_` and single `/`, starting and ending with a letter or digit"
            f"{more} (GTO's name grammar, as git takes it in a tag)"
        )


class LoadedConfig:
    """A validated config with the file it came from; paths resolve against its directory."""

    def __init__(self, config: Config, path: Path) -> None:
        self.config = config
        self.path = path
        self.root = path.parent

    def model(self, name: str | None) -> tuple[str, ModelConfig]:
        models = self.config.models
        if name is None:
            if len(models) == 1:
                return next(iter(models.items()))
            raise ConfigError(
                f"{self.path} declares {len(models)} models: {', '.join(models)}",
                hint="choose one with --model NAME",
            )
        if name not in models:
            close = difflib.get_close_matches(name, list(models), n=1)
            raise ConfigError(
                f"{self.path}: no model `{name}`; declared: {', '.join(models)}",
                hint=f"did you mean `{close[0]}`?" if close else "add it under `models:`",
            )
        return name, models[name]

    def model_dir(self, model: ModelConfig) -> Path:
        return (self.root / model.path).resolve()

    def cache_dir(self) -> Path:
        # Links are not followed here: an error about the cache names the link, not the
        # device it points at (`.lepton/cache -> /dev/null`).
        return Path(os.path.abspath(self.root / self.config.cache.dir))  # noqa: PTH100


def load(path: Path) -> LoadedConfig:
    text = yamlfile.read_text(path, "config", ConfigError, max_bytes=MAX_BYTES)
    return LoadedConfig(parse(text, str(path)), path)


def parse(text: str, source: str) -> Config:
    """Validate a config's text; errors name `source` (a path, or `REF:PATH` in git)."""
    data, node = yamlfile.load(text, source, "config", ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}",
            hint="start with `models:`",
        )
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = _line_map(node)
        errors = e.errors()
        shown = [_describe(source, err, lines) for err in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            shown.append(f"... and {len(errors) - MAX_ERRORS} more errors")
        raise ConfigError(
            "\n".join(shown),
            hint="the keys and their values: " + docs.page("reference/config"),
            file=source,
            line=_line_of(_loc(errors[0]), lines),
        ) from None


def load_from(explicit: str | None = None, cwd: Path | None = None) -> LoadedConfig:
    return load(find_config(explicit, cwd))


# -- error messages ------------------------------------------------------------------------


def _line_map(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each key path to its 1-based line so errors can point into the file."""
    out: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        if id(n) in seen:  # an alias points at a node already mapped: its lines are known
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                p = (*path, str(k.value))
                out[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                p = (*path, str(i))
                out[p] = v.start_mark.line + 1
                walk(v, p)

    if node is not None:
        walk(node, ())
    return out


def _unwrap(ann: Any) -> Any:
    """Strip Optional/Annotated/containers down to the model class a key path walks into."""
    while True:
        origin = typing.get_origin(ann)
        if origin is Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (Union, types.UnionType):
            models = [a for a in typing.get_args(ann) if isinstance(a, type)]
            ann = next((a for a in models if issubclass(a, BaseModel)), None)
        else:
            return ann


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    cls: Any = Config
    i = 0
    while i < len(loc):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return []
        field = cls.model_fields.get(str(loc[i]))
        if field is None:
            return []
        ann = _unwrap(field.annotation)
        if typing.get_origin(ann) in (dict, list):
            ann = _unwrap(typing.get_args(ann)[-1])
            i += 1  # skip the user's key (model name, metric name, ...) or the list index
        cls = ann
        i += 1
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [f.alias or name for name, f in cls.model_fields.items()]
    return []


def _loc(err: Any) -> tuple[str, ...]:
    loc = tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    # pydantic puts union branch names (str, list[str]) into loc; they mean nothing to a user.
    return tuple(p for p in loc if p not in ("str", "list[str]"))


def _line_of(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """The line of the deepest key of loc that the file has."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _describe(path: str, err: Any, lines: dict[tuple[str, ...], int]) -> str:
    loc = _loc(err)
    key = ".".join(loc) or "(top level)"
    line = _line_of(loc, lines)
    where = f"{path}:{line}" if line else str(path)
    typ = err["type"]
    if typ == "extra_forbidden":
        known = _fields_at(tuple(err["loc"][:-1]))
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
        return f"{where}: `{key}`: unknown key; {fix}"
    if typ == "missing":
        return f"{where}: `{key}`: required key is missing; add `{loc[-1]}:` here"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{where}: `{key}`: {msg}{shown}"
