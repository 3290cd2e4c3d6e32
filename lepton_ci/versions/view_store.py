"""Where a model's view is kept, and what a kept file must look like to be trusted.

One file per model in `<git dir>/lepton-ci/views` (named by a hash of the model), and a file
per part beside it; each names the lepton-ci that wrote it, the model and the listing digest it
was derived from. A file of another writer, model or digest is not read; one of the wrong shape
or types is treated as missing, so its view is derived again (see model_view).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lepton_ci import __version__
from lepton_ci.core import atomic
from lepton_ci.versions.model_view import commits_column, event_of

_WRITER = f"5/lepton-ci {__version__}"  # 5: history rows carry the counter
# A version as kept: tag, major, minor, patch, pre, build, commit, time, tagger, verdict,
# deregistered, stages. Checked as a whole (one set lookup per row), as the tag index is.
_VERSION_TYPES: tuple[tuple[type, ...], ...] = (
    (str,), (int,), (int,), (int,), (str,), (str,), (str,), (int,), (str,), (str, type(None)),
    (bool,), (list,),
)  # fmt: skip
_VERSION_SIGNATURES = frozenset(itertools.product(*_VERSION_TYPES))  # with a verdict or none


# A history row as kept: tag, model, action, label, stage, commit, who, tagger, time, counter.
_ROW_TYPES: tuple[tuple[type, ...], ...] = (
    (str,), (str,), (str,), (str, type(None)), (str, type(None)), (str,), (str,), (str,), (int,),
    (int, type(None)),
)  # fmt: skip
_ROW_SIGNATURES = frozenset(itertools.product(*_ROW_TYPES))


class ViewStore:
    """The kept views of one repository, one file per model in `<git dir>/lepton-ci/views`."""

    def __init__(self, base: Path | None) -> None:
        self.base = base / "views" if base is not None else None

    def _path(self, model: str, part: str = "") -> Path | None:
        if self.base is None:
            return None
        name = hashlib.blake2b(model.encode(), digest_size=12).hexdigest()
        return self.base / f"{name}{'.' + part if part else ''}.json"

    def load(self, model: str, listing_digest: str) -> dict[str, Any] | None:
        """The main view, if it was kept for exactly these tags."""
        data = self._load(model, listing_digest, "")
        return data if data is not None and _valid(_check, data) else None

    def part(self, model: str, listing_digest: str, name: str) -> Any:
        """A part kept beside the main view (`parts()`), or None."""
        data = self._load(model, listing_digest, name)
        if data is None or not _valid(_PART_CHECKS[name], data):
            return None
        return data[name]

    def _load(self, model: str, listing_digest: str, part: str) -> dict[str, Any] | None:
        path = self._path(model, part)
        if path is None:
            return None
        try:
            data = json.loads(atomic.read_text(path))
            if (
                data["writer"] != _WRITER
                or data["model"] != model
                or data["listing"] != listing_digest
            ):
                return None
            return data  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None  # none kept, or one we cannot trust: derived again

    def save(self, model: str, listing_digest: str, view: dict[str, Any], part: str = "") -> None:
        path = self._path(model, part)
        if path is None:
            return
        data = {"writer": _WRITER, "model": model, "listing": listing_digest, **view}
        with contextlib.suppress(OSError):  # a read-only repository derives it every time
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(path, json.dumps(data, separators=(",", ":")))


def _valid(check: Callable[[dict[str, Any]], None], data: dict[str, Any]) -> bool:
    try:
        check(data)
    except (ValueError, LookupError, TypeError, AttributeError):  # LookupError: a key missing,
        return False  # or a list too short to index (an IndexError)
    return True


def _check_history(data: dict[str, Any]) -> None:
    signatures = _ROW_SIGNATURES
    for row in data["history"]:
        if tuple(map(type, row)) not in signatures:
            raise TypeError("view history row")


def _check_keys(data: dict[str, Any]) -> None:
    for key, tags in data["keys"].items():
        if type(key) is not str or type(tags) is not list or not all(type(t) is str for t in tags):
            raise TypeError("view cache keys")


def _check_rows(rows: Any) -> int:
    """Version rows of the kept types; their count of deregistered versions."""
    if type(rows) is not list:
        raise TypeError("view rows")
    signatures = _VERSION_SIGNATURES
    deregistered = 0
    for row in rows:
        if tuple(map(type, row)) not in signatures:
            raise TypeError("view row")
        if row[11] and not all(type(s) is str for s in row[11]):
            raise TypeError("view stages")
        deregistered += row[10]
    return deregistered


def _check(data: dict[str, Any]) -> None:
    """Types a reader relies on; anything else raises (and the view is derived again)."""
    head, count, shas = data["head"], data["count"], data["shas"]
    if type(count) is not int or type(shas) is not str or type(data["assigned"]) is not list:
        raise TypeError("view columns")
    dereg_head = _check_rows(head)
    if len(head) > count or shas.count("\n") != count + 1 or not shas.startswith("\n"):
        raise ValueError("view columns")
    if len(head) == count and dereg_head != data["deregistered"]:
        raise ValueError("view count")
    if not shas.startswith(commits_column(head)):
        raise ValueError("view columns")  # the commits column begins with the newest rows'
    for stage, sha, row, event in data["assigned"]:
        if not (isinstance(stage, str) and isinstance(sha, str)):
            raise TypeError("view assignment")
        if row is not None:
            _check_rows([row])
        event_of(event)  # raises on a wrong shape or action
    if not isinstance(data["deprecated"], bool) or type(data["next_counter"]) is not int:
        raise TypeError("view facts")
    if data["last_time"] is not None and type(data["last_time"]) is not int:
        raise TypeError("view facts")
    if type(data["events"]) is not int or type(data["deregistered"]) is not int:
        raise TypeError("view facts")


def _check_all_rows(data: dict[str, Any]) -> None:
    _check_rows(data["rows"])


_PART_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "rows": _check_all_rows,
    "history": _check_history,
    "keys": _check_keys,
}
