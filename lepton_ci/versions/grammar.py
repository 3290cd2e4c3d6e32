"""GTO's git tag grammar: registrations, stage assignments and their cancellations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lepton_ci.core.semver import SEMVER_PATTERN, Version

_NAME = r"[a-z][a-z0-9-/]*[a-z0-9]"
TAG_RE = re.compile(
    rf"^(?P<artifact>{_NAME})"
    rf"(((#(?P<stage>{_NAME})|@(?P<version>v{SEMVER_PATTERN}))(?P<cancel>!?))"
    r"|@((?P<deprecated>deprecated)|(?P<created>created)))"
    r"(#(?P<counter>[0-9]+))?$"
)


class Action(StrEnum):
    REGISTER = "register"
    DEREGISTER = "deregister"
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    DEPRECATE = "deprecate"
    CREATE = "create"


@dataclass(frozen=True)
class TagName:
    model: str
    action: Action
    version: str | None = None
    stage: str | None = None
    counter: int | None = None


def parse(name: str) -> TagName | None:
    """Parse a tag name in GTO's grammar; None for any tag that is not ours."""
    m = TAG_RE.match(name)
    if not m:
        return None
    counter = int(m["counter"]) if m["counter"] else None
    cancel = bool(m["cancel"])
    if m["version"]:
        v = m["version"]
        action = Action.DEREGISTER if cancel else Action.REGISTER
        return TagName(m["artifact"], action, version=v, counter=counter)
    if m["stage"]:
        action = Action.UNASSIGN if cancel else Action.ASSIGN
        return TagName(m["artifact"], action, stage=m["stage"], counter=counter)
    action = Action.DEPRECATE if m["deprecated"] else Action.CREATE
    return TagName(m["artifact"], action, counter=counter)


def version_tag(model: str, version: Version) -> str:
    return f"{model}@{version}"


def stage_tag(model: str, stage: str, counter: int) -> str:
    return f"{model}#{stage}#{counter}"
