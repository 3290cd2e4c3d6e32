"""A model's metrics and params at one revision: from a version's record, else from the files.

Versions registered by GTO (or by hand) carry no record. Their metrics and params are then read
from the model's metrics and params files as committed at that revision, as `dvc metrics diff`
does, so the first gated run after switching from GTO/DVC really compares with something.
The file names come from today's lepton.yaml.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_ci.core.config import ModelConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import InputError, LeptonError
from lepton_ci.core.record import Record
from lepton_ci.run.metrics import read_metrics, read_params
from lepton_ci.versions.registry import Registry

WORKSPACE = "workspace"


@dataclass
class Snapshot:
    label: str  # what the user named: a version tag, a revision, or `workspace`
    sha: str | None  # None for the work tree
    source: str  # where the numbers were read from, in words
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    record: Record | None = None
    missing: list[str] = field(default_factory=list)  # files absent at that revision


def from_files(ctx: Context, cfg: ModelConfig, sha: str | None, label: str) -> Snapshot:
    """The metrics and params files at commit `sha` (or in the work tree when None)."""
    workdir = ctx.cfg.model_dir(cfg)
    top = ctx.git.toplevel().resolve()
    where = "the work tree" if sha is None else f"the files at {sha[:12]}"
    snap = Snapshot(label, sha, f"{where} ({', '.join(cfg.metrics)})")
    shown: dict[str, str] = {}  # scratch copy -> the name the user wrote
    with tempfile.TemporaryDirectory(prefix="lepton-snapshot-") as tmp:
        found: dict[str, list[Path]] = {"metrics": [], "params": []}
        for kind, names in (("metrics", cfg.metrics), ("params", cfg.params)):
            for name in names:
                path = (workdir / name).resolve()
                if sha is None:
                    if path.is_file():
                        found[kind].append(path)
                    else:
                        snap.missing.append(name)
                    continue
                if not path.is_relative_to(top):
                    snap.missing.append(f"{name} (outside the repository)")
                    continue
                blob = ctx.git.blob(sha, path.relative_to(top).as_posix())
                if blob is None:
                    snap.missing.append(name)
                    continue
                # Same file name (its suffix decides JSON or YAML), one directory per file.
                copy = Path(tmp) / kind / str(len(shown)) / path.name
                copy.parent.mkdir(parents=True)
                copy.write_bytes(blob)
                shown[str(copy)] = name
                found[kind].append(copy)
        try:
            snap.metrics = read_metrics(found["metrics"])
            snap.params = read_params(found["params"])
        except LeptonError as e:
            message = e.message  # name the revision's file, not the scratch copy
            for scratch, name in shown.items():
                message = message.replace(scratch, name)
            raise InputError(f"{message} (in {where})", hint=e.hint) from None
    return snap


def at_version(ctx: Context, model: str, cfg: ModelConfig, version: str) -> Snapshot:
    """A registered version: its record when it has one, else its files."""
    reg = Registry(ctx.git)
    info = reg.read(model).find(model, version.rpartition("@")[2])
    rec = reg.record(info.tag)
    if rec is None:
        return from_files(ctx, cfg, info.sha, info.tag)
    return Snapshot(
        info.tag, info.sha, f"the record in tag {info.tag}", rec.metrics, rec.params, rec
    )


def at(ctx: Context, model: str, cfg: ModelConfig, ref: str) -> Snapshot:
    """`ref` is a version (`v1.2.0`, `MODEL@v1.2.0`), any git revision, or `workspace`."""
    if ref.startswith("-") or not ref.isprintable():
        raise InputError(f"{ref!a} is not a revision", hint="name a version or a revision")
    if ref == WORKSPACE:
        return from_files(ctx, cfg, None, WORKSPACE)
    bare = ref.removeprefix(f"{model}@")
    if bare.startswith("v") and not ctx.git.rev_exists(ref):
        snap = at_version(ctx, model, cfg, bare)
        snap.label = ref
        return snap
    if not ctx.git.rev_exists(ref):
        raise InputError(
            f"`{ref}` is neither a version of {model} nor a git revision",
            hint=f"name a version (`lepton-ci versions {model}`), a commit, a branch, or "
            f"`{WORKSPACE}` for the files in the work tree",
        )
    sha = ctx.git.out("rev-parse", "--verify", f"{ref}^{{commit}}")
    state = Registry(ctx.git).read(model)
    on_commit = state.on_commit(model, sha)
    if on_commit:  # a registered commit: its record says more than the files
        snap = at_version(ctx, model, cfg, str(on_commit[0].version))
        snap.label = ref
        return snap
    return from_files(ctx, cfg, sha, ref)
