"""Which script trains (or evaluates) a model, among the names real repositories use.

In order of preference: the directory's own `train.py`, `train_model.py`, `train.sh`, then any
other `train*.py`/`train*.sh` there, then the same names in `scripts/`, `src/` and
`notebooks/` (where a notebook's exported script lives). Helpers (`train_utils.py`,
`test_train.py`) are not entry points. A notebook with no exported script is reported, not run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SUBDIRS = ("", "scripts", "src", "notebooks")
KINDS = {
    "train": (re.compile(r"train", re.I), ("train.py", "train_model.py", "train.sh")),
    "evaluate": (
        re.compile(r"eval", re.I),
        ("evaluate.py", "eval.py", "evaluate_model.py", "eval_model.py", "evaluate.sh", "eval.sh"),
    ),
}
SUFFIXES = (".py", ".sh")
# names of modules that a script imports rather than runs
HELPER = re.compile(
    r"(util|helper|common|config|_lib|dataset|loader|module|tests?_|_tests?$)", re.IGNORECASE
)


@dataclass
class Scripts:
    """The script chosen for one step, the other candidates, and notebooks not exported."""

    chosen: Path | None = None
    others: list[Path] = field(default_factory=list)
    notebooks: list[Path] = field(default_factory=list)


def _rank(directory: Path, path: Path, preferred: tuple[str, ...]) -> tuple[int, int, int, str]:
    rel = path.relative_to(directory)
    sub = SUBDIRS.index(rel.parent.as_posix() if rel.parent != Path() else "")
    name = path.name.lower()
    exact = preferred.index(name) if name in preferred else len(preferred)
    return (sub, exact, SUFFIXES.index(path.suffix), rel.as_posix())


def find(directory: Path, kind: str) -> Scripts:
    """The `kind` ("train" or "evaluate") scripts of the model in `directory`, best first."""
    start, preferred = KINDS[kind]
    found: list[Path] = []
    notebooks: list[Path] = []
    for sub in SUBDIRS:
        folder = directory / sub if sub else directory
        try:
            entries = sorted(p for p in folder.iterdir() if p.is_file())
        except OSError:
            continue
        for p in entries:
            if not start.match(p.stem) or HELPER.search(p.stem):
                continue
            if p.suffix in SUFFIXES:
                found.append(p)
            elif p.suffix == ".ipynb":
                notebooks.append(p)
    found.sort(key=lambda p: _rank(directory, p, preferred))
    exported = {p.with_suffix("") for p in found}
    return Scripts(
        chosen=found[0] if found else None,
        others=found[1:],
        notebooks=[n for n in notebooks if n.with_suffix("") not in exported],
    )


def command_for(script: Path, directory: Path, python: str) -> str:
    """The command that runs `script` from `directory` (the model's directory)."""
    rel = shlex.quote(script.relative_to(directory).as_posix())
    return f"bash {rel}" if script.suffix == ".sh" else f"{python} {rel}"
