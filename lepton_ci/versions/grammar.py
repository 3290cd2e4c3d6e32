"""GTO's git tag grammar: registrations, stage assignments and their cancellations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lepton_ci.core.names import MODEL, MODEL_IN_TAG, NAME, from_tag, in_tag
from lepton_ci.core.semver import SEMVER_PATTERN, Version

TAG_RE = re.compile(
    rf"^(?P<artifact>{MODEL_IN_TAG})"
    rf"(((#(?P<stage>{NAME})|@(?P<version>v{SEMVER_PATTERN}))(?P<cancel>!?))"
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


@dataclass(slots=True, unsafe_hash=True)  # one per tag read: not frozen, for speed
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
    model = from_tag(m["artifact"])
    if m["version"]:
        v = m["version"]
        action = Action.DEREGISTER if cancel else Action.REGISTER
        return TagName(model, action, version=v, counter=counter)
    if m["stage"]:
        action = Action.UNASSIGN if cancel else Action.ASSIGN
        return TagName(model, action, stage=m["stage"], counter=counter)
    action = Action.DEPRECATE if m["deprecated"] else Action.CREATE
    return TagName(model, action, counter=counter)


def version_tag(model: str, version: Version) -> str:
    return f"{in_tag(model)}@{version}"


def stage_tag(model: str, stage: str, counter: int) -> str:
    return f"{in_tag(model)}#{stage}#{counter}"


def version_glob(model: str) -> str:
    """`git tag --list` pattern of the model's version tags."""
    return f"{in_tag(model)}@v*"


@dataclass(frozen=True)
class Shortcut:
    """GTO's shortcuts: `m@v1.2.3`, `m#stage`; `m`, `m@latest`, `m@greatest` (neither set)."""

    model: str
    version: str | None = None
    stage: str | None = None


_SHORTCUT_RE = re.compile(
    rf"^(?P<model>{MODEL})(?:#(?P<stage>{NAME})|@(?P<version>latest|greatest|v{SEMVER_PATTERN}))?$"
)


def shortcut(ref: str) -> Shortcut | None:
    m = _SHORTCUT_RE.match(ref)
    if not m:
        return None
    v = m["version"]
    return Shortcut(
        m["model"],
        version=v if v not in (None, "latest", "greatest") else None,
        stage=m["stage"],
    )
