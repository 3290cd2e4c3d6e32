"""What `lepton-ci init` can learn from a repository before asking anything.

The scripts that exist (and the interpreter that runs them), an existing metrics file and the
metric names in it, the files a training run produces, and a gate direction per metric name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from lepton_ci.init import scripts

METRICS_FILES = (
    "metrics.json",
    "metrics.yaml",
    "metrics.yml",
    "eval.json",
    "results.json",
    "scores.json",
)
# params files a training reads, best first; `run` reads YAML and JSON
PARAMS_FILES = tuple(
    f"{stem}.{ext}"
    for stem in ("params", "hparams", "hyperparams", "config/params", "conf/params")
    for ext in ("yaml", "yml", "json")
)
SKIP_DIRS = {"node_modules", "site-packages", "__pycache__", "venv", "env", "build", "dist"}
SEARCH_DEPTH = 2  # a monorepo's models/<name>/train.py is found, deeper is not
MAX_OUTPUTS = 5
OUTPUT_PATTERNS = ("*.pkl", "*.joblib", "*.pt", "*.pth", "*.onnx", "*.safetensors", "*.h5")

# metric name patterns -> direction; the first match wins (so `*_error_rate` is lower)
# `/` and `.` separate a metric's namespace (`val/loss`, `eval.loss`) as `_` and `-` do
SEP = r"(^|[./_-])"
LOWER = re.compile(
    SEP + r"(rmse|mse|mae|mape|loss|error|err|wer|cer|perplexity|ppl|nll|brier|"
    r"log_?loss|ms|latency|seconds|secs|time|duration|size|bytes|mb)$",
    re.IGNORECASE,
)
HIGHER = re.compile(
    SEP + r"(acc|accuracy|f1|f1_macro|f1_micro|auc|roc_auc|pr_auc|auroc|precision|recall|"
    r"r2|map|ndcg|mrr|bleu|rouge\w*|iou|dice|score|top\d+|hit_rate|throughput)$",
    re.IGNORECASE,
)
# `class_share.3`, `label_share.cat`: a distribution (what `watch`'s drift SLO compares live
# predictions with), where neither more nor less is better: recorded, never gated.
SHARE = re.compile(r"(^|[./_-])share[./_-][^./]+$", re.IGNORECASE)
TIMING = re.compile(SEP + r"(ms|latency|seconds|secs|time|duration)$", re.IGNORECASE)
# preferred key metric, best first
KEY_ORDER = ("accuracy", "acc", "f1", "auc", "roc_auc", "r2", "rmse", "mae", "loss")


@dataclass
class Found:
    """One model's directory and what was found in it."""

    path: Path
    train: scripts.Scripts
    evaluate: scripts.Scripts
    metrics: Path | None = None
    params: Path | None = None


def interpreter() -> str:
    """The Python command that exists here: Debian and Ubuntu have `python3` only."""
    if shutil.which("python3"):
        return "python3"
    return "python" if shutil.which("python") else "python3"


def _first(directory: Path, names: tuple[str, ...]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def _dirs(root: Path, depth: int) -> Iterator[Path]:
    yield root
    if depth == 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or child.name in SKIP_DIRS:
            continue
        if (child / "pyvenv.cfg").exists():
            continue
        yield from _dirs(child, depth - 1)


def find_models(root: Path) -> list[Found]:
    """The directory of every train script: the root alone if it has one, else each
    directory below it (to SEARCH_DEPTH) that has one, as in a monorepo."""
    at_root = scripts.find(root, "train")
    if at_root.chosen is not None:
        return [_found(root, at_root)]
    found: list[Found] = []
    claimed: set[Path] = set()
    for d in _dirs(root, SEARCH_DEPTH):
        if d == root:
            continue
        train = scripts.find(d, "train")
        if train.chosen is None or train.chosen in claimed:  # `x/scripts/` is x's
            continue
        claimed.add(train.chosen)
        found.append(_found(d, train))
    return found


def _found(directory: Path, train: scripts.Scripts) -> Found:
    return Found(
        path=directory,
        train=train,
        evaluate=scripts.find(directory, "evaluate"),
        metrics=_first(directory, METRICS_FILES),
        params=params_file(directory),
    )


def notebooks(root: Path) -> list[Path]:
    """Training notebooks with no exported script, to say what to export."""
    return scripts.find(root, "train").notebooks


def params_file(directory: Path) -> Path | None:
    """The params file of a model: the first of PARAMS_FILES that holds a mapping."""
    for name in PARAMS_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data:
            return path
    return None


def metric_names(path: Path) -> list[str]:
    """The numeric entries of a metrics file, flattened to dotted names as `run` reads them;
    an unreadable file gives none (init then says what to fill in)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return []
    names: list[str] = []

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, int | float) and not isinstance(node, bool) and prefix:
            names.append(prefix[:-1])

    walk(data, "")
    return names


def direction(name: str) -> str | None:
    """`lower` or `higher` when the name says which is better, else None."""
    if LOWER.search(name):
        return "lower"
    if HIGHER.search(name):
        return "higher"
    return None


def is_share(name: str) -> bool:
    return bool(SHARE.search(name))


def is_timing(name: str) -> bool:
    return bool(TIMING.search(name))


def key_metric(names: list[str]) -> str | None:
    """The metric a version is judged by: a known quality metric, not a timing."""
    candidates = [n for n in names if direction(n) and not is_timing(n)]
    for preferred in KEY_ORDER:
        for n in candidates:
            if re.search(rf"{SEP}{preferred}$", n, re.IGNORECASE):
                return n
    return candidates[0] if candidates else None


def snapshot(directory: Path) -> dict[str, float]:
    """Files below `directory` and their mtimes, to see what a training run wrote."""
    out = {}
    for dirpath, dirnames, names in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        for n in names:
            p = Path(dirpath) / n
            try:
                out[str(p.relative_to(directory))] = p.stat().st_mtime
            except OSError:
                continue
    return out


def existing_outputs(directory: Path) -> list[str]:
    """Model files a training run left next to its script earlier, if any."""
    found = {p.name for pattern in OUTPUT_PATTERNS for p in directory.glob(pattern)}
    return sorted(n for n in found if not n.endswith((".py", ".sh", ".yaml", ".yml")))[:MAX_OUTPUTS]


def written(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Files new or changed between two snapshots, sources left out."""
    changed = [p for p, t in after.items() if before.get(p) != t]
    return sorted(p for p in changed if not p.endswith((".py", ".pyc", ".sh")))


def top_level(paths: list[str]) -> list[str]:
    """Files, with those below a directory folded into the directory (`checkpoints`)."""
    return sorted({p.split("/", 1)[0] for p in paths})


# where Hydra and its kind keep what a training reads (`conf/config.yaml`, `configs/*.json`)
CONFIG_DIRS = ("conf", "config", "configs")
CONFIG_FILES = tuple(f"{stem}.{ext}" for stem in ("config",) for ext in ("yaml", "yml", "json"))
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
VENV_PYTHON = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*\.?venv/bin/python[\d.]*)(?![\w.])")


def config_inputs(directory: Path) -> list[str]:
    """Config directories and files a training reads without naming them in a params file:
    a change to one must train again, so they go in `code:`."""
    out = []
    for name in CONFIG_DIRS:
        d = directory / name
        if (
            d.is_dir()
            and not d.is_symlink()
            and any(p.suffix in CONFIG_SUFFIXES and p.is_file() for p in d.rglob("*"))
        ):
            out.append(name)
    out += [n for n in CONFIG_FILES if (directory / n).is_file()]
    return out


def command_files(command: str | None, directory: Path) -> list[str]:
    """The files a command names that exist in `directory` (its script, whatever it is)."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return []
    # the interpreter or shell that runs the script is not an input of the model
    runner = bool(words) and re.fullmatch(r"(python[\d.]*|bash|sh|zsh)", Path(words[0]).name)
    out = []
    for w in words[1:] if runner else words:
        path = directory / w
        if w and not w.startswith("-") and path.is_file() and not path.is_symlink():
            try:
                out.append(path.resolve().relative_to(directory.resolve()).as_posix())
            except ValueError:  # outside the model's directory
                continue
    return out


@dataclass
class Venv:
    """A virtualenv's interpreter, relative to the root, and whether the training runs it."""

    python: str
    sure: bool


def venv_python(root: Path, directory: Path, scripts_run: list[Path]) -> Venv | None:
    """The venv interpreter a train or evaluate script runs (sure when it exists), else one in
    the repository (a suggestion: the commands may not run it)."""
    for script in scripts_run:
        try:
            text = script.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        m = VENV_PYTHON.search(text)
        if m is None:
            continue
        # not resolved: a venv's python is a link to the system's
        path = Path(os.path.normpath(directory.resolve() / m[1]))
        try:
            rel = path.relative_to(root.resolve()).as_posix()
        except ValueError:
            return Venv(m[1], sure=False)
        return Venv(rel, sure=path.is_file())
    for d in (directory, root):
        for name in (".venv", "venv"):
            if (d / name / "bin" / "python").exists():
                rel = os.path.relpath(d / name / "bin" / "python", root)
                return Venv(rel, sure=False)
    return None
