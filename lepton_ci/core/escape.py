"""Escaping user and PR data for where it lands: log lines, Markdown cells, Mermaid labels, HTML.

Every escaper first drops control characters and bidirectional overrides (U+202E makes a name
read backwards): nothing a user named can reorder, hide or forge text where it is shown.
"""

from __future__ import annotations

import html
import json
import re

_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_ISSUE_REF = re.compile(r"#(?=\d)")
# Links and images need `[`, emphasis `*`/`_`, code a backtick, tables `|`; `<`/`&` are HTML-
# escaped first. `(`, `!`, `+` are harmless without these, so they stay readable.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_COMMENT_END = re.compile(r"(--!?)>")
# A heading or quote can start a value; a list marker only matters after a newline inside one
# (a value's own leading "-" or "1." is nearly always a number).
_LINE_START = re.compile(r"(?:^|(?<=\n))([#>])|(?<=\n)([+-])")
_ORDERED = re.compile(r"(?<=\n)(\d+)\.")
ZWSP = "\u200b"
# C0 (but tab and newline), DEL, C1, bidi embeddings/overrides/isolates and marks.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The runner reads a workflow command from any line that starts with `::` after blanks, and
# the legacy `##[command]` form anywhere in a line.
_COMMAND_START = re.compile(r"^(\s*):(?=:)", re.MULTILINE)
_LEGACY_COMMAND = re.compile(r"##\[")


def clean(value: object) -> str:
    """The text without control characters or bidi overrides; line breaks become `\n`."""
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    s = s.replace("\u2028", "\n").replace("\u2029", "\n")
    return _INVISIBLE.sub("", s)


def clean_line(value: object) -> str:
    """One line of clean text (a tag subject, a log line)."""
    return " ".join(clean(value).split("\n"))


def one_line(value: object) -> str:
    """A name as printed in a table or a message: as it is, or JSON-quoted when it holds what
    a terminal would break, hide or pad (a newline, a control character, edge blanks)."""
    s = str(value)
    plain = s.isprintable() and s.strip() == s and not s.startswith('"')
    return s if plain else json.dumps(s, ensure_ascii=False)


def log_text(value: object) -> str:
    """Text for a CI log: clean, and no line of it can be read as a workflow command."""
    s = _COMMAND_START.sub(lambda m: m[1] + ":" + ZWSP, clean(value))
    return _LEGACY_COMMAND.sub("##" + ZWSP + "[", s)


def md_text(value: object) -> str:
    """Inline Markdown text: no formatting, links, HTML, @mentions or #references take effect."""
    # `<` and `&` as entities (a value may land inside an HTML block such as <summary>, where
    # a backslash escapes nothing); `>` cannot open a tag, so it stays readable (`1.9.1 ->
    # 1.6.1` in a card printed as text) and is escaped only where it starts a quote.
    s = clean(value).replace("&", "&amp;").replace("<", "&lt;")
    # ...except after `--` (`-->`, `--!>`): that would close an HTML comment of ours.
    s = _COMMENT_END.sub(r"\1&gt;", s)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _LINE_START.sub(lambda m: "\\" + (m[1] or m[2]), s)  # no headings, quotes, lists
    s = _ORDERED.sub(r"\1\\.", s)
    s = _MENTION.sub("@" + ZWSP, s)
    return _ISSUE_REF.sub("#" + ZWSP, s)


def md_cell(value: object) -> str:
    """A Markdown table cell: also no line breaks (they would end the row)."""
    return md_text(value).replace("\n", "<br>")


def md_code(value: object) -> str:
    """Inline code span that no backtick in the value can close early."""
    s = clean_line(value)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def mermaid_label(value: object) -> str:
    """Text inside a quoted Mermaid label: only a safe alphabet survives, the rest becomes `_`.

    Mermaid's own escapes differ between diagram types, so a whitelist is the one rule that
    holds for all of them; it also keeps a value from closing the fenced block.
    """
    return "".join(c if c.isalnum() or c in " .,:/%+-_=" else "_" for c in clean(value))[:80]


# Bidirectional controls reorder the text that follows them on screen (CVE-2021-42574): a name
# holding U+202E can make a page say what its source does not. Shown as their code point.
_BIDI = {c: f"<U+{c:04X}>" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F))}
_BIDI.update({c: f"<U+{c:04X}>" for c in range(0x2066, 0x206A)})


def bidi_visible(value: str) -> str:
    """The text with every bidirectional control replaced by a visible `<U+202E>`."""
    return value if value.isascii() else value.translate(_BIDI)


def html_text(value: object) -> str:
    return html.escape(clean(value), quote=True)


def md_fence(value: object, info: str = "") -> str:
    """A fenced code block no backtick run inside the value can close."""
    s = clean(value)
    longest = max((len(m) for m in re.findall(r"`{3,}", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{s}\n{fence}"
