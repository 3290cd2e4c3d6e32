"""What went into a run: code and data files, params files, and the environment."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from lepton_ci.core import paths
from lepton_ci.core.errors import InputError
from lepton_ci.core.hashing import StatCache, combine, hash_bytes
from lepton_ci.core.record import Environment, FileEntry, Lineage

_SKIP_DIRS = {".git", paths.STATE, "__pycache__", ".venv", "node_modules", ".mypy_cache"}


def expand(root: Path, patterns: list[str], *, what: str, required: bool) -> list[Path]:
    """Files matched by globs relative to root; a matched directory brings all files in it."""
    found: set[Path] = set()
    for pattern in patterns:
        matches = list(root.glob(pattern))
        if not matches and required:
            raise InputError(
                f"{what} pattern `{pattern}` matches no file under {root}",
                hint=f"fix the path under `{what}:` in lepton.yaml",
            )
        for m in matches:
            if m.is_dir():
                found.update(f for f in m.rglob("*") if f.is_file())
            elif m.is_file():
                found.add(m)
    return sorted(f for f in found if not _SKIP_DIRS.intersection(f.relative_to(root).parts))


def entries(root: Path, files: list[Path], cache: StatCache) -> dict[str, FileEntry]:
    return {
        f.relative_to(root).as_posix(): FileEntry(hash=cache.hash(f), size=f.stat().st_size)
        for f in files
    }


def digest(files: dict[str, FileEntry]) -> str:
    return combine({k: v.hash for k, v in files.items()})


def collect(
    root: Path,
    *,
    code: list[str],
    data: list[str],
    params: list[Path],
    outputs: set[Path],
    cache: StatCache,
) -> Lineage:
    code_files = [f for f in expand(root, code, what="code", required=False) if f not in outputs]
    data_files = [f for f in expand(root, data, what="data", required=True) if f not in outputs]
    code_e = entries(root, code_files, cache)
    data_e = entries(root, data_files, cache)
    return Lineage(
        code=code_e,
        data=data_e,
        params_files=entries(root, params, cache),
        code_digest=digest(code_e),
        data_digest=digest(data_e),
    )


def environment(root: Path, lock_files: list[str]) -> Environment:
    """Lock files stand for the environment when given; else the installed distributions."""
    if lock_files:
        parts = []
        for name in lock_files:
            p = root / name
            if not p.is_file():
                raise InputError(
                    f"lock file {p} not found", hint="fix `environment.lock` in lepton.yaml"
                )
            parts.append(f"{name}\0{hash_bytes(p.read_bytes())}")
        pkg_digest, source = hash_bytes("\n".join(parts).encode()), ",".join(lock_files)
    else:
        pkg_digest, source = hash_bytes("\n".join(installed()).encode()), "installed"
    return Environment(
        python=platform.python_version(),
        platform=f"{sys.platform}-{platform.machine()}",
        packages_digest=pkg_digest,
        packages_source=source,
    )


def installed() -> list[str]:
    """`name==version` of every distribution on sys.path. A wheel's metadata directory is
    named `name-version.dist-info` (the packaging spec), so its name says both; opening each
    METADATA (importlib.metadata's way) costs 100 ms for a hundred packages on every run."""
    found = []
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")  # noqa: PTH208 (names only: no Path per entry)
        except OSError:
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            dist, _, version = stem.partition("-")
            if dot and kind == "dist-info" and dist and version:
                found.append(f"{_normal(dist)}=={version}")
            elif dot and kind == "egg-info":  # setup.py develop and old sdists: read it
                from importlib import metadata

                d = metadata.PathDistribution(Path(entry or ".") / name)
                found.append(f"{_normal(d.metadata['Name'] or dist)}=={d.version}")
    return sorted(found)


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Ruamel.YAML` is `ruamel-yaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()
