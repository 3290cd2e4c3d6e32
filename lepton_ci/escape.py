"""Escaping user and PR data for where it lands: Markdown cells, Mermaid labels, HTML, YAML."""

from __future__ import annotations

import html
import re

_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_ISSUE_REF = re.compile(r"#(?=\d)")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
ZWSP = "\u200b"


def md_text(value: object) -> str:
    """Inline Markdown text: no formatting, links, HTML, @mentions or #references take effect."""
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _MENTION.sub("@" + ZWSP, s)
    return _ISSUE_REF.sub("#" + ZWSP, s)


def md_cell(value: object) -> str:
    """A Markdown table cell: also no line breaks (they would end the row)."""
    return md_text(value).replace("\n", "<br>")


def md_code(value: object) -> str:
    """Inline code span that no backtick in the value can close early."""
    s = str(value).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def mermaid_label(value: object) -> str:
    """A quoted Mermaid label: quotes and markup become entity codes Mermaid decodes."""
    s = str(value).replace("\n", " ")
    return "".join(f"#{ord(c)};" if c in '"#;<>&`[]{}()|' else c for c in s)


def html_text(value: object) -> str:
    return html.escape(str(value), quote=True)
