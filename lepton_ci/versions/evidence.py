"""The evidence record of a registered version (from its tag), else of the model's last run."""

from __future__ import annotations

from lepton_ci.core import record as record_mod
from lepton_ci.core.context import Context
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.record import Record
from lepton_ci.versions.registry import Registry


def load(ctx: Context, model: str, version: str | None = None) -> Record:
    if version is None:
        return record_mod.load(ctx.record_path(model))
    reg = Registry(ctx.git)
    info = reg.read(model).find(model, version)
    rec = reg.record(info.tag)
    if rec is None:
        raise RegistryError(
            f"{info.tag} carries no evidence record",
            hint="register versions with `lepton-ci register`",
        )
    return rec
