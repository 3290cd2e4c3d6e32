"""Templates rendered in jinja2's sandbox with strict undefined values.

Markdown has no autoescape in jinja2, so this module adds one: every `{{ value }}` is escaped
as Markdown text unless a filter marked it safe (`cell`, `code`, `num`, `raw`, ...). A metric
name or commit subject can then never inject a link, a mention or an HTML tag by accident.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
from pathlib import Path
from typing import Any

from lepton_ci.core import docs, escape
from lepton_ci.core.errors import ConfigError


class Safe(str):
    """Text already fit for the output format."""

    __slots__ = ()


def _finalize_yaml(value: Any) -> Any:
    """In YAML templates every value is a JSON scalar or flow collection: valid, quoted YAML."""
    if isinstance(value, Safe):
        return value
    return json.dumps(value, sort_keys=True)


def _finalize(value: Any) -> Any:
    if isinstance(value, Safe):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    return escape.md_text(value)


def num(x: float | None, digits: int = 6) -> Safe:
    return Safe("—" if x is None else f"{x:.{digits}g}")


def signed(x: float | None, digits: int = 6) -> Safe:
    return Safe("—" if x is None else f"{x:+.{digits}g}")


def pct(x: float | None) -> Safe:
    return Safe("" if x is None else f"({x:+.2f}%)")


def short(value: object, n: int = 12) -> Safe:
    return Safe(escape.md_text(str(value)[:n]))


_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+$")


def url(value: object) -> Safe:
    """A link target: a plain http(s) URL or nothing (no `)` to break out, no javascript:)."""
    s = str(value or "")
    return Safe(s if _URL.match(s) and "(" not in s and ")" not in s else "")


FILTERS = {
    "url": url,
    "pct": pct,
    "cell": lambda v: Safe(escape.md_cell(v)),
    "code": lambda v: Safe(escape.md_code(v)),
    "mermaid": lambda v: Safe(escape.mermaid_label(v)),
    "html": lambda v: Safe(escape.html_text(v)),
    "num": num,
    "signed": signed,
    "raw": lambda v: Safe(str(v)),
    "short": short,
    "tojson": lambda v: Safe(json.dumps(v, sort_keys=True)),
}


def template_dir() -> Path:
    """Templates ship inside the package (a link to the repository's templates/)."""
    return Path(__file__).parent.parent / "templates"


def render(
    name: str,
    context: dict[str, Any],
    *,
    user_template: Path | None = None,
    user_dir: Path | None = None,
    yaml_output: bool = False,
) -> str:
    from jinja2 import TemplateError

    search = [str(template_dir())]
    if user_dir is not None:
        search.insert(0, str(user_dir))  # the user's templates add to and override ours
    if user_template is not None:
        if not user_template.is_file():
            raise ConfigError(
                f"template {user_template} not found",
                hint="fix `card.template` in lepton.yaml, or remove it to use the default",
            )
        search.insert(0, str(user_template.parent))
        name = user_template.name
    env = _environment(tuple(search), yaml_output)
    try:
        return str(env.get_template(name).render(**context))
    except TemplateError as e:
        where = user_template or template_dir() / name
        line = getattr(e, "lineno", None)
        raise ConfigError(
            f"{where}{':' + str(line) if line else ''}: template error: {e}",
            hint="fix the template; the values it may use: " + docs.page("reference/templates"),
        ) from e
    except UnicodeDecodeError as e:  # raised while loading, before jinja2 sees the text
        where = user_template or template_dir() / name
        raise ConfigError(
            f"{where}: not UTF-8 text (byte {e.start}: {e.reason})",
            hint="save the template as UTF-8",
        ) from None


def warm(name: str) -> threading.Thread:
    """Load one of our templates in a thread, so that importing jinja2 and loading the
    compiled template (25 ms) happens while the caller waits on other things: a run renders
    the PR comment only after training, and its git calls leave the interpreter idle too. Any
    error is left to the real render, which reports it."""

    def load() -> None:
        with contextlib.suppress(Exception):
            _environment((str(template_dir()),), False).get_template(name)

    thread = threading.Thread(target=load, name=f"warm {name}")
    thread.start()
    return thread


@functools.lru_cache(maxsize=16)
def _environment(search: tuple[str, ...], yaml_output: bool) -> Any:
    """One environment per search path: jinja2 then compiles each template once, not per call
    (the site renders a card per version)."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=FileSystemLoader(list(search)),
        bytecode_cache=_bytecode_cache(),
        undefined=StrictUndefined,
        finalize=_finalize_yaml if yaml_output else _finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env


def _bytecode_cache() -> Any:
    """Compiled templates kept between runs (the PR comment's takes 30 ms to compile, every
    run). Keyed by the template's path and a checksum of its source, so an edited template is
    compiled again. In the user's cache directory; none if that cannot be made."""
    import os

    from jinja2 import FileSystemBytecodeCache

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    directory = Path(base) / "lepton-ci" / "jinja"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return FileSystemBytecodeCache(str(directory))
