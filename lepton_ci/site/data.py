"""The facts the site shows, gathered with a handful of git calls: the tag registry, each
model's version records (one call per model), the commit graph (one call), and the deploy
histories the podman target keeps in files.

The kubernetes target keeps its history in ConfigMaps in the cluster; a site built in CI
cannot reach that, so those environments say where to look instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from lepton_ci.core import shadows as shadows_mod
from lepton_ci.core.config import CardConfig, Gate, LoadedConfig
from lepton_ci.core.errors import InputError, RegistryError
from lepton_ci.core.git import Git
from lepton_ci.core.record import GateResult, Record
from lepton_ci.core.revisions import Revision
from lepton_ci.core.shadows import ShadowResult
from lepton_ci.site.commits import Graph
from lepton_ci.versions.grammar import Action
from lepton_ci.versions.registry import Event, Registry, VersionInfo


def slug(model: str) -> str:
    """A model's folder in the deploy state directory, as the deployers name it."""
    return model.replace("/", "--")


@dataclass
class Version:
    info: VersionInfo
    record: Record | None
    unreadable: bool = False  # the tag's message has JSON that is not a valid record
    previous: Version | None = None  # the next older registered version
    shadows: list[ShadowResult] = field(default_factory=list)  # by environment
    name: str = field(init=False)
    page: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = str(self.info.version)
        self.page = f"{self.name}.html"

    def key_gates(self, key: list[str]) -> list[GateResult | None]:
        """The gate result of each key metric, None where this version has none."""
        by_name = {g.metric: g for g in self.record.gates} if self.record else {}
        return [by_name.get(k) for k in key]


@dataclass
class Environment:
    name: str
    revisions: list[Revision]  # newest first
    note: str = ""


@dataclass
class StageEvent:
    event: Event
    version: str | None  # the version a stage tag points at, resolved through its commit


@dataclass
class Model:
    name: str
    versions: list[Version]  # newest first, deregistered ones included
    stages: dict[str, Version]
    timeline: list[StageEvent]  # newest first: promotions, unassignments, deregistrations
    deprecated: bool
    gates: dict[str, Gate]  # from lepton.yaml, when the model is declared there
    card: CardConfig
    configured: bool
    key: list[str]  # metrics shown in tables: key gates, else the first gated ones
    environments: list[Environment] = field(default_factory=list)
    image_name: str | None = None
    requires: dict[str, str] = field(default_factory=dict)  # stage -> stage required first

    @property
    def slug(self) -> str:
        """The model's folder in the site. Not `slug()`: that maps `a/b` and `a--b` (both valid
        names) to one folder; `_` is outside the name alphabet, so this mapping is one-to-one."""
        return self.name.replace("/", "_")

    @property
    def newest(self) -> Version | None:
        return next((v for v in self.versions if not v.info.deregistered), None)

    def charted(self) -> list[str]:
        """Gated metrics (not informational), in the config's order, then the records'."""
        names = [m for m, g in self.gates.items() if not g.informational]
        for v in reversed(self.versions):
            for g in v.record.gates if v.record else []:
                if g.verdict != "info" and g.metric not in names and g.metric not in self.gates:
                    names.append(g.metric)
        return names


def _key_metrics(gates: dict[str, Gate], versions: list[Version]) -> list[str]:
    key = [m for m, g in gates.items() if g.key]
    if key:
        return key
    for v in versions:
        if v.record is not None:
            key = [g.metric for g in v.record.gates if g.key]
            gated = [g.metric for g in v.record.gates if g.verdict != "info"]
            return key or gated[:2]
    return [m for m, g in gates.items() if not g.informational][:2]


def read_revisions(directory: Path) -> list[Revision]:
    """A podman environment's revisions, newest first; a broken file is named, not skipped."""
    if not directory.is_dir():
        return []
    revs = []
    for p in sorted(directory.glob("revision-*.json")):
        try:
            revs.append(Revision.model_validate_json(p.read_text(encoding="utf-8")))
        except (ValidationError, UnicodeDecodeError, OSError) as e:
            if isinstance(e, ValidationError):
                detail = e.errors()[0]["msg"]
            else:  # not UTF-8, or not a readable file (a directory, no permission)
                detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise InputError(
                f"{p}: not a deploy revision: {detail}",
                hint="restore the file from the machine that deployed, or delete it",
            ) from None
    return sorted(revs, key=lambda r: -r.number)


def _environments(cfg: LoadedConfig | None, model: str) -> tuple[list[Environment], str | None]:
    if cfg is None or model not in cfg.config.models:
        return [], None
    m = cfg.config.models[model]
    image = m.image.name if m.image else None
    if m.deploy is None:
        return [], image
    out = []
    for env in m.deploy.environments:
        if m.deploy.target == "kubernetes":
            out.append(
                Environment(
                    env,
                    [],
                    "kept in the cluster (one ConfigMap per revision), which the site does not "
                    f"read: run `lepton-ci history {env}` where the cluster is reachable",
                )
            )
            continue
        directory = cfg.root / m.deploy.state_dir / slug(model) / env
        revs = read_revisions(directory)
        note = "" if revs else "no deploy history on the machine that built this site"
        out.append(Environment(env, revs, note))
    return out, image


def _records(reg: Registry, model: str, tags: list[str]) -> tuple[dict[str, Record], set[str]]:
    """Every version's record with one git call, and the tags whose record is broken (made by
    hand, or by another tool): those versions go without, the rest are read as usual."""
    found = reg.records(tags)
    return found, reg.skipped & set(tags)


def _shadows(git: Git, versions: list[Version], shadowed: set[str]) -> None:
    for v in versions:
        digest = v.record.digest() if v.record is not None else None
        if digest in shadowed:
            found = shadows_mod.read(git, digest, remote=None)
            v.shadows = [found[k] for k in sorted(found)]


def collect(
    git: Git, cfg: LoadedConfig | None, only: str | None = None
) -> tuple[list[Model], Graph]:
    reg = Registry(git)
    state = reg.read(only)
    names = state.models()
    if only is not None and only not in names:
        known = ", ".join(Registry(git).read().models()) or "none"
        raise RegistryError(
            f"no registry tags for model `{only}` (models with tags: {known})",
            hint="check the name, and fetch tags (`git fetch --tags`)",
        )
    models = []
    heads: set[str] = set()
    # A clone fetches no refs/lepton-ci/ by itself: the shadow results, all in one fetch
    # (none where there is no `origin`, as in a local build), then listed with one call, so
    # a version's ref is read only if it exists.
    shadows_mod.fetch(git)
    shadowed = shadows_mod.recorded(git)
    for name in names:
        infos = state.versions(name, include_deregistered=True)
        records, unreadable = _records(reg, name, [i.tag for i in infos])
        versions = [Version(i, records.get(i.tag), i.tag in unreadable) for i in infos]
        for newer, older in itertools.pairwise(versions):
            newer.previous = older
        if shadowed:
            _shadows(git, versions, shadowed)
        by_name = {v.name: v for v in versions}
        stages = {s: by_name[str(i.version)] for s, i in sorted(state.stages(name).items())}
        by_sha = {}
        for v in sorted(versions, key=lambda v: v.info.version.sort_key()):
            by_sha[v.info.sha] = v.name  # the newest version on a commit, as stages resolve
        timeline = [
            StageEvent(e, e.version or by_sha.get(e.sha))
            for e in reversed(state.history(name))
            if e.action is not Action.REGISTER
        ]
        declared = cfg is not None and name in cfg.config.models
        mcfg = cfg.config.models[name] if cfg is not None and declared else None
        gates = dict(mcfg.gates) if mcfg else {}
        envs, image = _environments(cfg, name)
        models.append(
            Model(
                name=name,
                versions=versions,
                stages=stages,
                timeline=timeline,
                deprecated=state.deprecated(name),
                gates=gates,
                card=mcfg.card if mcfg else CardConfig(),
                configured=declared,
                key=_key_metrics(gates, versions),
                environments=envs,
                image_name=image,
                requires={
                    stage: sc.required_stage
                    for stage, sc in (cfg.config.stages.items() if cfg is not None else [])
                    if sc.required_stage is not None
                },
            )
        )
        heads.update(v.info.sha for v in versions)  # baselines are versions: in here too
    return models, Graph.read(git, heads)
