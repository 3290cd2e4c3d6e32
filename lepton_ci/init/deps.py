"""The project's own dependencies: what training needs in CI, and what the image serves with.

Training dependencies are installed by a workflow step `init` writes before `run`, into a
virtualenv outside the checkout (so `**/*.py` never hashes them as code) that is put first on
PATH, so the `python3` of the train command is the one that has them. From, best first: a lock
(`uv.lock` -> `uv sync`, `poetry.lock` -> `poetry install`), a training requirements file,
`requirements.txt`, then `pyproject.toml` (`pip install -e .`, with a training extra if any).
Every path in the step was chosen here, from files that exist, and is shell-quoted: nothing a
pull request controls at run time is spelled into the script.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

TRAIN_REQUIREMENTS = (
    "requirements-train.txt",
    "requirements-training.txt",
    "requirements/train.txt",
    "requirements/training.txt",
    "requirements.txt",
    "requirements/base.txt",
)
SERVE_REQUIREMENTS = (
    "requirements-serve.txt",
    "requirements-serving.txt",
    "requirements-inference.txt",
    "requirements/serve.txt",
    "requirements.txt",
)
TRAIN_EXTRAS = ("train", "training", "ml")
VENV = '"$RUNNER_TEMP/train-venv"'
TOOLS = '"$RUNNER_TEMP/lepton-tools"'
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")  # nothing a shell or YAML would read as syntax


@dataclass(frozen=True)
class Install:
    """How one directory's dependencies are installed, and from which file."""

    directory: str  # relative to the repository root, "." for the root
    source: str  # the file it comes from, relative to the root
    lines: tuple[str, ...]  # shell lines, run from the repository root


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else "."


def _extras(pyproject: Path) -> tuple[bool, str | None]:
    """Whether pyproject.toml declares dependencies, and its training extra if any."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        return False, None
    optional = project.get("optional-dependencies") or {}
    extra = next((e for e in TRAIN_EXTRAS if e in optional), None)
    return bool(project.get("dependencies") or extra), extra


def _install(root: Path, directory: Path) -> Install | None:
    here = _rel(root, directory)
    q = shlex.quote(here)
    pyproject = directory / "pyproject.toml"
    if (directory / "uv.lock").is_file() and pyproject.is_file():
        return Install(
            here,
            _rel(root, directory / "uv.lock"),
            (
                f"{TOOLS}/bin/python -m pip install -q uv",
                f"UV_PROJECT_ENVIRONMENT={VENV} {TOOLS}/bin/uv sync --frozen --project {q}",
            ),
        )
    if (directory / "poetry.lock").is_file() and pyproject.is_file():
        return Install(
            here,
            _rel(root, directory / "poetry.lock"),
            (
                f"{TOOLS}/bin/python -m pip install -q poetry",
                f"VIRTUAL_ENV={VENV} {TOOLS}/bin/poetry install --no-interaction --directory {q}",
            ),
        )
    for name in TRAIN_REQUIREMENTS:
        if (directory / name).is_file():
            source = _rel(root, directory / name)
            return Install(
                here,
                source,
                (f"{VENV}/bin/python -m pip install -r {shlex.quote(source)}",),
            )
    if pyproject.is_file():
        has_deps, extra = _extras(pyproject)
        if has_deps:
            target = shlex.quote(f"{here}[{extra}]" if extra else here)
            return Install(
                here,
                _rel(root, pyproject),
                (f"{VENV}/bin/python -m pip install -e {target}",),
            )
    return None


def training(root: Path, model_dirs: list[Path]) -> list[Install]:
    """One install per directory (the root, then each model's) that declares dependencies;
    paths a shell or YAML would read as syntax are left out (they are named in `skipped`)."""
    out: list[Install] = []
    seen: set[Path] = set()
    for directory in [root, *model_dirs]:
        if directory in seen:
            continue
        seen.add(directory)
        found = _install(root, directory)
        if found is not None:
            out.append(found)
    return out


def unsafe(installs: list[Install]) -> list[str]:
    """Sources whose path is not plain enough to be written into a workflow."""
    return [i.source for i in installs if not SAFE_PATH.fullmatch(i.source)]


def step_text(installs: list[Install], indent: str) -> str:
    """The workflow step that installs `installs` into a virtualenv first on PATH."""
    uses_tools = any(TOOLS in line for i in installs for line in i.lines)
    script = [
        f"python3 -m venv {VENV}",
        *([f"python3 -m venv {TOOLS}"] if uses_tools else []),
        *(line for i in installs for line in i.lines),
        # later steps (the train command's `python3`) run in this virtualenv
        f'echo {VENV[:-1]}/bin" >> "$GITHUB_PATH"',
    ]
    sources = ", ".join(i.source for i in installs)
    lines = [
        f"{indent}- name: Install the training dependencies ({sources})",
        f"{indent}  run: |",
        *(f"{indent}    {line}" for line in script),
    ]
    return "\n".join(lines) + "\n"


def serving(directory: Path, root: Path) -> str | None:
    """The requirements file an image serves with, relative to `directory`, if any."""
    for base in (directory, root):
        for name in SERVE_REQUIREMENTS:
            path = base / name
            if path.is_file():
                try:
                    return path.relative_to(directory).as_posix()
                except ValueError:  # the root's, for a model below it
                    return Path(*[".."] * len(directory.relative_to(root).parts), name).as_posix()
    return None
