"""Reading metrics and params files (JSON or YAML), flattened to dotted keys."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lepton_ci.core import yamlfile
from lepton_ci.core.errors import InputError


def _load(path: Path, what: str, produced_by: str) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found", hint=produced_by)
    text = yamlfile.read_text(path, what, InputError)
    if path.suffix != ".json":
        return yamlfile.load(text, str(path), what, InputError)[0]
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(path, pairs))
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: the {what} file is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{path}: the {what} file is nested too deeply to read") from None


class _DuplicateKey(InputError, ValueError):
    """A JSON object names one key twice (JSON readers keep the last one)."""


def _no_duplicates(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(
                f"{path}: key `{k}` appears twice in one object; JSON keeps only the last one",
                hint="write each key once",
            )
        out[k] = v
    return out


def flatten(data: Any, path: Path | None = None) -> dict[str, Any]:
    """Nested mappings as dotted keys (`{"a": {"b": 1}}` -> `a.b`); iterative, so any depth a
    parser accepts is fine. Two spellings of one key (`a.b` and `a: {b}`) are refused."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{prefix}{k}.", v) for k, v in reversed(list(node.items())))
            continue
        key = prefix[:-1]
        if key in out:
            where = f"{path}: " if path else ""
            raise InputError(
                f"{where}`{key}` is written twice (once nested, once with dots)",
                hint="keep one spelling of each key",
            )
        out[key] = node
    return out


def read_metrics(paths: list[Path]) -> dict[str, float]:
    out: dict[str, float] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        data = _load(
            path,
            "metrics",
            "make the evaluate command write it, or fix `metrics:` in lepton.yaml",
        )
        if not isinstance(data, dict):
            raise InputError(
                f"{path}: metrics must be a mapping of name to number, got {type(data).__name__}",
                hint='write e.g. {"accuracy": 0.97}',
            )
        for key, value in flatten(data, path).items():
            if key in out:
                raise InputError(
                    f"metric `{key}` is written by both {origin[key]} and {path}",
                    hint="give the metric one home, or nest each file's metrics under a "
                    "distinct key (e.g. `train:` / `test:`)",
                )
            out[key], origin[key] = _number(path, key, value), path
    return out


def _number(path: Path, key: str, value: Any) -> float:
    shown = _show(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(
            f"{path}: metric `{key}` is {shown}, not a number",
            hint="write metrics as plain numbers",
        )
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise InputError(
            f"{path}: metric `{key}` is {shown}; NaN and infinity cannot be gated (nor "
            "numbers beyond ±1.8e308)",
            hint="fix the evaluation so it produces a finite value",
        )
    return f


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return "an integer too long to show"
    return text if len(text) <= 60 else text[:60] + "..."


def _json_keys(path: Path, key: str, value: Any) -> None:
    """A param's value goes into the record (JSON, keys sorted): a mapping inside a list must
    have text keys, as YAML's `null:`, `1:` or `true:` are not (iterative: any depth)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            bad = next((k for k in node if not isinstance(k, str)), _NONE)
            if bad is not _NONE:
                raise InputError(
                    f"{path}: param `{key}` holds a mapping whose key {bad!r} is not text",
                    hint="quote the key in the params file (e.g. `'null':`, `'1':`)",
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


_NONE = object()


def read_params(paths: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        data = _load(path, "params", "create it or remove it from `params:` in lepton.yaml")
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InputError(f"{path}: params must be a mapping, got {type(data).__name__}")
        for k, v in flatten(data, path).items():
            _json_keys(path, k, v)
            if k in out:
                raise InputError(
                    f"{path}: param `{k}` is also set in {origin[k]}",
                    hint="give each param one home",
                )
            out[k], origin[k] = v, path
    return out
