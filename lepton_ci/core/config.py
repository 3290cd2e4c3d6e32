"""lepton.yaml, modelled with pydantic. Unknown keys are errors that name file, key and fix."""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lepton_ci.core import paths
from lepton_ci.core.errors import ConfigError

CONFIG_NAME = "lepton.yaml"
# GTO's artifact/stage name grammar, so our tags stay readable by GTO.
NAME_RE = re.compile(r"^[a-z][a-z0-9-/]*[a-z0-9]$")

Command = str | list[str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(Strict):
    """How one metric is judged against its bounds and against the baseline."""

    direction: Literal["higher", "lower"] = "higher"
    min: float | None = None
    max: float | None = None
    max_regression: Annotated[float, Field(ge=0)] | None = None
    max_regression_pct: Annotated[float, Field(ge=0)] | None = None
    noise: Annotated[float, Field(ge=0)] = 0.0
    informational: bool = False
    key: bool = False

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

    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    license: str | None = None
    datasets: list[str] = []
    tags: list[str] = []
    task: str = Field("other", description="Hugging Face task type, e.g. image-classification")
    template: str | None = None
    path: str = "model_cards/{model}/{version}.md"


class ImageConfig(Strict):
    """How the model's container image is built and where it is pushed."""

    name: str = Field(description="repository, e.g. 127.0.0.1:5000/digits or ghcr.io/acme/digits")
    builder: Literal["layers", "dockerfile"] | None = None
    base: str | None = Field(None, description="base image in a registry (layers builder)")
    dockerfile: str = "Dockerfile"
    context: str = "."
    files: list[str] | None = Field(None, description="code layer globs (default: `code`)")
    workdir: str = "/app"
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    ports: list[int] = []
    labels: dict[str, str] = {}
    source: str | None = Field(None, description="org.opencontainers.image.source URL")
    insecure: bool | None = Field(None, description="plain HTTP (default: only for localhost)")

    @property
    def kind(self) -> str:
        return self.builder or ("layers" if self.base else "dockerfile")

    @model_validator(mode="after")
    def _layers_need_base(self) -> ImageConfig:
        if self.kind == "layers" and not self.base:
            raise ValueError("the `layers` builder needs `base:` (an image in a registry)")
        return self


class HttpCheck(Strict):
    path: str = "/healthz"
    status: int = 200
    body_contains: str | None = None


class GoldenCheck(Strict):
    """A known request and the answer it must get (numbers within `tolerance`)."""

    path: str = "/predict"
    request: Any
    expect: Any
    tolerance: Annotated[float, Field(ge=0)] = 0.0


class LatencyCheck(Strict):
    path: str = "/healthz"
    p95_ms: Annotated[float, Field(gt=0)]


class PrometheusCheck(Strict):
    url: str
    query: str
    max: float | None = None
    min: float | None = None


class ChecksConfig(Strict):
    count: Annotated[int, Field(ge=1)] = 5
    interval: Annotated[float, Field(ge=0)] = 0.5
    failure_threshold: Annotated[int, Field(ge=1)] = 1
    timeout: Annotated[float, Field(gt=0)] = 5.0
    http: list[HttpCheck] = [HttpCheck()]
    golden: list[GoldenCheck] = []
    latency: LatencyCheck | None = None
    prometheus: PrometheusCheck | None = None


class DeployEnvironment(Strict):
    namespace: str = "default"
    replicas: Annotated[int, Field(ge=0)] = 1
    port: int = 8080
    host_port: int | None = Field(None, description="podman: published on 127.0.0.1")
    url: str | None = Field(None, description="base URL the health checks call")
    resources: dict[str, Any] = {}
    env: dict[str, str] = {}
    readiness_path: str = "/readyz"
    liveness_path: str = "/healthz"
    values: dict[str, Any] = {}
    service_monitor: bool = False
    hpa: dict[str, Any] | None = None
    rollout_timeout: Annotated[float, Field(gt=0)] = 120.0
    rollback_timeout: Annotated[float, Field(gt=0)] = 120.0
    on_first_failure: Literal["remove", "scale-to-zero"] = "remove"
    checks: ChecksConfig = ChecksConfig()

    def check_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        if self.host_port:
            return f"http://127.0.0.1:{self.host_port}"
        raise ValueError("set `url` (or `host_port` for podman) so health checks can reach it")


class DeployConfig(Strict):
    target: Literal["podman", "kubernetes"] = "podman"
    templates: str | None = Field(None, description="directory of templates that add/override")
    state_dir: str = paths.DEPLOY_STATE
    field_manager: str = "lepton-ci"
    lock_timeout: Annotated[float, Field(ge=0)] = 60.0
    environments: Annotated[dict[str, DeployEnvironment], Field(min_length=1)]

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
        return self


class ModelConfig(Strict):
    path: str = Field(".", description="directory the commands run in, relative to lepton.yaml")
    train: Command | None = None
    evaluate: Command | None = None
    params: list[str] = []
    code: list[str] = ["**/*.py"]
    data: list[str] = []
    outputs: list[str] = []
    metrics: Annotated[list[str], Field(min_length=1)]
    gates: dict[str, Gate] = {}
    env: dict[str, str] = {}
    timeout_minutes: Annotated[float, Field(gt=0)] = 60.0
    card: CardConfig = CardConfig()
    image: ImageConfig | None = None
    deploy: DeployConfig | None = None

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

    users: list[str] = []
    teams: list[str] = []
    permission: Literal["read", "triage", "write", "maintain", "admin"] | None = None

    @field_validator("teams")
    @classmethod
    def _team_form(cls, v: list[str]) -> list[str]:
        for t in v:
            # The parts go into API paths: `acme/..` would ask about the whole organization.
            if not _TEAM.fullmatch(t):
                raise ValueError(f"team `{t}` must be written as ORG/TEAM-SLUG")
        return v


class StageConfig(Strict):
    requires: str | None = None
    description: str = ""
    allow: PromotionPolicy | None = None


class CacheConfig(Strict):
    dir: str = paths.RUN_CACHE
    enabled: bool = True


class EnvironmentConfig(Strict):
    lock: list[str] = Field(
        default=[], description="lock files whose content stands for the environment"
    )


class Config(Strict):
    version: Literal[1] = 1
    models: Annotated[dict[str, ModelConfig], Field(min_length=1)]
    stages: dict[str, StageConfig] = {}
    cache: CacheConfig = CacheConfig()
    environment: EnvironmentConfig = EnvironmentConfig()

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {name: {} for name in v}
        return v

    @model_validator(mode="after")
    def _names(self) -> Config:
        for kind, names in (("model", self.models), ("stage", self.stages)):
            for name in names:
                if not NAME_RE.match(name):
                    raise ValueError(
                        f"{kind} name `{name}` is not valid: use two or more lowercase letters,"
                        " digits, `-` and `/`, starting with a letter and ending with a letter"
                        " or digit (GTO's tag grammar)"
                    )
        for name, stage in self.stages.items():
            if stage.requires is not None and stage.requires not in self.stages:
                raise ValueError(
                    f"stage `{name}` requires `{stage.requires}`, which is not a declared stage"
                )
        return self


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
        return (self.root / self.config.cache.dir).resolve()


def find_config(explicit: str | None = None, cwd: Path | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found", hint="check the --config path")
        return p.resolve()
    start = (cwd or Path.cwd()).resolve()
    for d in (start, *start.parents):
        p = d / CONFIG_NAME
        if p.is_file():
            return p
        if (d / ".git").exists():
            break
    raise ConfigError(
        f"no {CONFIG_NAME} in {start} or its parents up to the repository root",
        hint=f"create {CONFIG_NAME} (see the README's config reference) or pass --config PATH",
    )


def load(path: Path) -> LoadedConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte {e.object[e.start]:#04x})",
            hint="save the file as UTF-8",
            file=str(path),
            line=line,
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"{where}: not valid YAML: {problem}",
            hint="fix the YAML syntax at that line",
            file=str(path),
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
        ) from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}",
            hint="start with `models:`",
        )
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        lines = _line_map(node)
        raise ConfigError(
            "\n".join(_describe(path, err, lines) for err in e.errors()),
            hint="see the config reference in the README",
            file=str(path),
            line=_line_of(_loc(e.errors()[0]), lines),
        ) from None
    return LoadedConfig(cfg, path)


def load_from(explicit: str | None = None, cwd: Path | None = None) -> LoadedConfig:
    return load(find_config(explicit, cwd))


def names_environment(explicit: str | None, name: str) -> bool:
    """`history NAME`: is NAME a deploy environment (and no model)? Without a config, no."""
    try:
        models = load_from(explicit).config.models
    except ConfigError:
        return False
    return name not in models and any(
        m.deploy and name in m.deploy.environments for m in models.values()
    )


# -- error messages ------------------------------------------------------------------------


def _line_map(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each key path to its 1-based line so errors can point into the file."""
    out: dict[tuple[str, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
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
        if typing.get_origin(ann) is dict:
            ann = _unwrap(typing.get_args(ann)[1])
            i += 1  # skip the user's key (model name, metric name, ...)
        cls = ann
        i += 1
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
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


def _describe(path: Path, err: Any, lines: dict[tuple[str, ...], int]) -> str:
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
