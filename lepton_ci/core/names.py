"""GTO's name grammar (gto/constants.py), the one rule for model and stage names.

A model name is `NAME` or `DIR:NAME` (GTO's "fullname", e.g. `models:clf`); in a tag the `:`
is written `=` (`models=clf@v0.1.0`), since git forbids `:` in ref names.
"""

from __future__ import annotations

import re

NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9\-/_]*[a-zA-Z0-9])?"
_DIRNAME = r"[a-zA-Z0-9\-_./]+"
MODEL = rf"(?:{_DIRNAME}:)?{NAME}"
MODEL_IN_TAG = rf"(?:{_DIRNAME}=)?{NAME}"
MODEL_RE = re.compile(rf"^{MODEL}$")  # the pattern pydantic checks too; in Python: valid_*
STAGE_RE = re.compile(rf"^{NAME}$")


def valid_model(name: str) -> bool:
    """GTO's grammar, whole (`$` alone lets `m\n` through), and a name git takes in a ref."""
    return _ref_safe(name, MODEL_RE)


def valid_stage(name: str) -> bool:
    """The same for a stage name."""
    return _ref_safe(name, STAGE_RE)


def _ref_safe(name: str, rule: re.Pattern[str]) -> bool:
    if not rule.fullmatch(name):
        return False
    # git refuses what GTO's grammar lets through: `a//b`, `..`, `.x` and `x.lock` segments.
    parts = in_tag(name).split("/")
    return ".." not in name and all(
        p and not p.startswith(".") and not p.endswith((".lock", ".")) for p in parts
    )


def in_tag(model: str) -> str:
    """The model name as it is written in a tag name."""
    return model.replace(":", "=")


def from_tag(artifact: str) -> str:
    return artifact.replace("=", ":")
