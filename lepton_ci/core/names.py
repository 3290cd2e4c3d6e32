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
MODEL_RE = re.compile(rf"^{MODEL}$")
STAGE_RE = re.compile(rf"^{NAME}$")


def in_tag(model: str) -> str:
    """The model name as it is written in a tag name."""
    return model.replace(":", "=")


def from_tag(artifact: str) -> str:
    return artifact.replace("=", ":")
