"""Links into the docs site (docs/, published by .github/workflows/docs.yml) that lepton-ci's
own messages and the files `init` writes give; a test holds each to a page that exists."""

from __future__ import annotations

SITE = "https://lepton-ci.github.io/lepton-ci/"


def page(path: str, anchor: str = "") -> str:
    """The URL of docs/PATH.md (`reference/config`), at `#anchor` if given."""
    return f"{SITE}{path}/" + (f"#{anchor}" if anchor else "")
