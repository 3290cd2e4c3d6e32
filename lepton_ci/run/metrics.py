"""Reading metrics and params files (JSON or YAML), flattened to dotted keys."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core.errors import InputError


def _load(path: Path, what: str, produced_by: str) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found", hint=produced_by)
    try:
        text = path.read_text(encoding="utf-8")  # not UTF-8: a ValueError too
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise InputError(f"{path}: {what} file is not valid JSON/YAML: {e}") from e


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data} if prefix else {}


def read_metrics(paths: list[Path]) -> dict[str, float]:
    out: dict[str, float] = {}
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
        for key, value in flatten(data).items():
            out[key] = _number(path, key, value)
    return out


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(
            f"{path}: metric `{key}` is {value!r}, not a number",
            hint="write metrics as plain numbers",
        )
    f = float(value)
    if not math.isfinite(f):
        raise InputError(
            f"{path}: metric `{key}` is {value!r}; NaN and infinity cannot be gated",
            hint="fix the evaluation so it produces a finite value",
        )
    return f


def read_params(paths: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        data = _load(path, "params", "create it or remove it from `params:` in lepton.yaml")
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InputError(f"{path}: params must be a mapping, got {type(data).__name__}")
        for k, v in flatten(data).items():
            if k in out:
                raise InputError(
                    f"{path}: param `{k}` is also set in {origin[k]}",
                    hint="give each param one home",
                )
            out[k], origin[k] = v, path
    return out
