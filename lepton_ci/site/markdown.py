"""The Markdown that model cards use, as HTML, with no raw HTML let through.

Cards are written by `templates/model_card.md.j2` (or a user's template) with every value
escaped as Markdown text, so a small subset is all they need: YAML front matter, headings,
pipe tables, bullet lists, paragraphs, fenced code, code spans, `**strong**`, http(s) links
and `<br>` in table cells. Anything else is shown as its escaped text: never interpreted.
"""

from __future__ import annotations

import html
import re

_ESCAPABLE = r"[!-/:-@\[-`{-~]"
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<ctext>.+?)(?<!`)(?P=ticks)(?!`))"
    rf"|\\(?P<esc>{_ESCAPABLE})"
    r"|(?P<br><br\s*/?>)"
    r"|(?P<ent>&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
)
# After escaping, markup characters that came from escapes or code are numeric references,
# so these only see the author's own markup.
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_LINK = re.compile(r"\[([^\[\]]+)\]\((https?://[^\s()<>\"']+)\)")
_MARKUP = str.maketrans({c: f"&#{ord(c)};" for c in "*_[]()`\\"})
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_TABLE_SEP = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _text(s: str) -> str:
    return html.escape(s, quote=True).translate(_MARKUP)


def inline(s: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(s):
        out.append(html.escape(s[pos : m.start()], quote=True))
        if m["code"] is not None:
            body = m["ctext"]
            if len(body) > 1 and body.startswith(" ") and body.endswith(" "):
                body = body[1:-1]
            out.append(f"<code>{_text(body)}</code>")
        elif m["esc"] is not None:
            out.append(f"&#{ord(m['esc'])};")
        elif m["br"] is not None:
            out.append("<br>")
        else:
            out.append(m["ent"])
        pos = m.end()
    out.append(html.escape(s[pos:], quote=True))
    text = "".join(out)
    text = _STRONG.sub(r"<strong>\1</strong>", text)
    return _LINK.sub(r'<a href="\2">\1</a>', text)


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip() for c in _CELL_SPLIT.split(s)]


def _table(rows: list[str], sep: str) -> str:
    aligns = []
    for c in _cells(sep):
        right, left = c.endswith(":"), c.startswith(":")
        aligns.append("center" if left and right else "right" if right else "")
    head, body = _cells(rows[0]), [_cells(r) for r in rows[1:]]

    def cell(tag: str, i: int, text: str) -> str:
        a = aligns[i] if i < len(aligns) else ""
        cls = f' class="{a}"' if a else ""
        return f"<{tag}{cls}>{inline(text)}</{tag}>"

    out = ["<table>", "<thead><tr>"]
    out += [cell("th", i, c) for i, c in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for r in body:
        cells = (r + [""] * len(head))[: len(head)]
        out.append("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def to_html(text: str, *, heading_offset: int = 1) -> str:
    """Render a card; headings are shifted down so the page keeps one `<h1>`."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    i = 0
    if lines and lines[0] == "---":
        end = next((j for j in range(1, len(lines)) if lines[j] == "---"), None)
        if end is not None:
            meta = "\n".join(lines[1:end])
            if meta.strip():
                out.append(
                    "<details><summary>Metadata (front matter)</summary>"
                    f"<pre>{html.escape(meta)}</pre></details>"
                )
            i = end + 1
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + "\n".join(inline(p) for p in para) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif line.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : j]))}</code></pre>")
            i = j + 1
        elif m := _HEADING.match(line):
            flush()
            level = min(len(m[1]) + heading_offset, 6)
            out.append(f"<h{level}>{inline(m[2])}</h{level}>")
            i += 1
        elif (
            line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1])
        ):
            flush()
            rows = [line]
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(lines[j])
                j += 1
            out.append(_table(rows, lines[i + 1]))
            i = j
        elif _BULLET.match(line):
            flush()
            items = []
            while i < len(lines) and (b := _BULLET.match(lines[i])):
                items.append(f"<li>{inline(b[1])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para.append(line)
            i += 1
    flush()
    return "\n".join(out)
