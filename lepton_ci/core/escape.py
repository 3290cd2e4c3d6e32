"""Escaping user and PR data for where it lands: Markdown cells, Mermaid labels, HTML."""

from __future__ import annotations

import html
import re

_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_ISSUE_REF = re.compile(r"#(?=\d)")
# Links and images need `[`, emphasis `*`/`_`, code a backtick, tables `|`; `<`/`>` are HTML-
# escaped first. `(`, `!`, `+` are harmless without these, so they stay readable.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# A heading or quote can start a value; a list marker only matters after a newline inside one
# (a value's own leading "-" or "1." is nearly always a number).
_LINE_START = re.compile(r"(?:^|(?<=\n))([#>])|(?<=\n)([+-])")
_ORDERED = re.compile(r"(?<=\n)(\d+)\.")
ZWSP = "\u200b"
# Bidirectional controls reorder what a reader sees (a metric named "acc\u202e..." can show
# as another name or value): they are shown as their code point instead.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible_bidi(s: str) -> str:
    return _BIDI.sub(lambda m: f"(U+{ord(m[0]):04X})", s)


def md_text(value: object) -> str:
    """Inline Markdown text: no formatting, links, HTML, @mentions or #references take effect."""
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _LINE_START.sub(lambda m: "\\" + (m[1] or m[2]), s)  # no headings, quotes, lists
    s = _ORDERED.sub(r"\1\\.", s)
    s = _MENTION.sub("@" + ZWSP, s)
    return _visible_bidi(_ISSUE_REF.sub("#" + ZWSP, s))


def md_cell(value: object) -> str:
    """A Markdown table cell: also no line breaks (they would end the row)."""
    return md_text(value).replace("\n", "<br>")


def md_code(value: object) -> str:
    """Inline code span that no backtick in the value can close early."""
    s = _visible_bidi(str(value).replace("\n", " "))
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_block(value: object) -> str:
    """A fenced code block that no line of the value can close (its fence is longer than any
    backtick run in it), so the value stays text, never Markdown or HTML."""
    s = str(value)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{s}\n{fence}"


def mermaid_label(value: object) -> str:
    """Text inside a quoted Mermaid label: only a safe alphabet survives, the rest becomes `_`.

    Mermaid's own escapes differ between diagram types, so a whitelist is the one rule that
    holds for all of them; it also keeps a value from closing the fenced block.
    """
    return "".join(c if c.isalnum() or c in " .,:/%+-_=" else "_" for c in str(value))[:80]


def html_text(value: object) -> str:
    return _visible_bidi(html.escape(str(value), quote=True))
