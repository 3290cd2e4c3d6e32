"""The one printer: operations return rows or objects, the CLI prints them as a table or JSON.

Like GTO's `format_echo`: a query answers `Table(headers, rows)` once and both printers serve
it, so the text table and `--json` cannot disagree about what a command found.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from lepton_ci.core.escape import log_text
from lepton_ci.core.gcpause import gc_paused


class Table:
    """Rows of plain values; `records` carries the full objects for `--json`. Records may be
    given as a function: a listing of 10,000 versions printed as text never builds them."""

    def __init__(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        records: Sequence[Any] | Callable[[], Sequence[Any]] = (),
        empty: str = "nothing to show",
    ) -> None:
        self.headers, self.rows, self.empty = headers, rows, empty
        self._records = records

    @property
    def records(self) -> Sequence[Any]:
        if callable(self._records):
            self._records = self._records()
        return self._records

    @gc_paused
    def text(self) -> str:
        if not self.rows:
            return self.empty
        table = [list(map(str, self.headers)), *(list(map(str, r)) for r in self.rows)]
        widths = [max(map(len, column)) for column in zip(*table, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)  # one format for all rows: 10,000 fast
        return "\n".join(fmt.format(*row).rstrip() for row in table)


def jsonable(obj: Any) -> Any:
    """Dataclasses, pydantic models, and anything with `as_dict()`, as plain JSON values."""
    if hasattr(obj, "as_dict"):
        return jsonable(obj.as_dict())
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def to_json(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys)


def echo(text: str, stream: IO[str] | None = None) -> None:
    """Print for a person or a CI log: names from users cannot start a workflow command or
    hide text with control characters (JSON escapes them itself, so it passes unchanged)."""
    out = stream or sys.stdout
    text = log_text(text)
    out.write(text if text.endswith("\n") else text + "\n")


def emit(result: Any, *, as_json: bool, text: str | None = None, indent: int | None = 2) -> None:
    """Print `result` as JSON, or else as `text` (a Table prints itself)."""
    if as_json:
        records = result.records if isinstance(result, Table) else result
        echo(to_json(records, indent=indent))
    elif isinstance(result, Table):
        echo(result.text() if text is None else text)
    else:
        echo(text if text is not None else str(result))


def some(items: Sequence[str], limit: int = 5, sep: str = ", ") -> str:
    """The first `limit` items, and how many were left out."""
    shown = sep.join(items[:limit])
    left = len(items) - limit
    return f"{shown}{sep}... and {left} more" if left > 0 else shown
