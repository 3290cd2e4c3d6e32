"""What went into a run: code and data files, params files, and the environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from lepton_ci.core import paths
from lepton_ci.core.config import EnvironmentConfig
from lepton_ci.core.errors import InputError
from lepton_ci.core.hashing import StatCache, combine, hash_bytes
from lepton_ci.core.record import Environment, FileEntry, Lineage
from lepton_ci.run import accelerator, interpreter

_SKIP_DIRS = {".git", paths.STATE, "__pycache__", ".venv", "node_modules", ".mypy_cache"}


def expand(root: Path, patterns: list[str], *, what: str, required: bool) -> list[Path]:
    """Files matched by globs relative to root, or absolute ones (lepton.yaml allows them
    under `data:` only); a matched directory brings all files in it. A pattern glob cannot
    take is an InputError naming it, never a crash."""
    found: set[Path] = set()
    for pattern in patterns:
        base, rel = (Path("/"), pattern.lstrip("/")) if pattern.startswith("/") else (root, pattern)
        try:
            matches = list(base.glob(rel))
        except (ValueError, NotImplementedError) as e:
            raise InputError(
                f"{what} pattern `{pattern}` is not a pattern lepton-ci can match ({e})",
                hint=f"fix the path under `{what}:` in lepton.yaml",
            ) from None
        if not matches and required:
            raise InputError(
                f"{what} pattern `{pattern}` matches no file"
                + ("" if base != root else f" under {root}"),
                hint=f"fix the path under `{what}:` in lepton.yaml",
            )
        for m in matches:
            if m.is_dir():
                found.update(f for f in m.rglob("*") if f.is_file())
            elif m.is_file():
                found.add(m)
    return sorted(f for f in found if not _SKIP_DIRS.intersection(Path(key(root, f)).parts))


def key(root: Path, f: Path) -> str:
    """A file's name in the record: its path under root, or its absolute path (data elsewhere)."""
    return (f.relative_to(root) if f.is_relative_to(root) else f).as_posix()


def entries(root: Path, files: list[Path], cache: StatCache) -> dict[str, FileEntry]:
    return {key(root, f): FileEntry(hash=cache.hash(f), size=f.stat().st_size) for f in files}


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


def environment(
    root: Path,
    cfg: EnvironmentConfig,
    commands: Mapping[str, str | list[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    cache_dir: Path,
    warn: Callable[[str], None] = lambda _text: None,
) -> Environment:
    """The environment the train and evaluate commands run in, asked of their interpreter
    (see run/interpreter.py), with the lock files' digests, the OS and the GPU if any."""
    locks = {}
    for name in cfg.lock:
        p = root / name
        if not p.is_file():
            raise InputError(
                f"lock file {p} not found", hint="fix `environment.lock` in lepton.yaml"
            )
        locks[name] = hash_bytes(p.read_bytes())
    found = interpreter.resolve(commands, configured=cfg.python, root=root, cwd=cwd, env=env)
    if found.guessed:
        warn(found.guessed)
    memo = interpreter.Memo(cache_dir / "interpreters.json")
    probe_env = {**env, "PATH": found.path_env} if found.path_env is not None else env
    answer = interpreter.ask(found, cwd=cwd, env=probe_env, memo=memo)
    gpu = accelerator.detect(env, memo)
    memo.save()
    return Environment(
        python=answer.version,
        platform=answer.platform,
        packages_digest=packages_digest(answer.packages, locks),
        packages_source="interpreter",
        interpreter=found.path,
        interpreter_source=found.source,
        packages=answer.packages,
        locks=locks,
        os=os_name(),
        accelerator=gpu,
    )


def packages_digest(packages: list[str], locks: dict[str, str]) -> str:
    lines = [*packages, *(f"lock {name}\0{digest}" for name, digest in sorted(locks.items()))]
    return hash_bytes("\n".join(lines).encode())


def os_name() -> str:
    """`Linux 6.1.0-18-amd64 (Debian GNU/Linux 12 (bookworm))`: the kernel and, where
    os-release says it, the distribution."""
    uname = os.uname()
    distro = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text(errors="replace").splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = f" ({line.partition('=')[2].strip().strip(chr(34))})"
    return f"{uname.sysname} {uname.release}{distro}"
