"""Is a virtualenv that came from a cache what its lock installs, and nothing more?

Run by bootstrap.py (standard library only) on a virtualenv this job did not make, before any
of its Python runs: a `.pth` file or a `sitecustomize.py` runs at every interpreter start, so a
job that ran untrusted code and saved the virtualenv could otherwise run code in every job that
restores it. What is checked, without starting the virtualenv's interpreter:

- the interpreter links lead to the job's own Python, and `pyvenv.cfg` names its directory and
  keeps the system site-packages out;
- the distributions installed are exactly the ones the lock files pin, at their versions (the
  installer's own, pip and setuptools, only in a virtualenv pip made);
- every file a distribution's RECORD lists with a hash has that hash, and a RECORD lists no
  file without one but its own RECORD and bytecode in `__pycache__`;
- no other file is there: only the interpreter links, the activation scripts (never run by
  lepton-ci), the files uv and venv write at the top (pyvenv.cfg, CACHEDIR.TAG, ...) and
  bootstrap's stamp. lepton-ci's own package and every `__pycache__` are deleted before the
  check (bootstrap copies the package afresh; Python compiles again), so neither can carry
  anything in.

A RECORD is the installer's account of what it wrote, kept in the virtualenv itself: a forger
who rewrites a package file and its RECORD line together is not caught here. The keys keep
jobs that run untrusted code from saving what trusted jobs restore; this check catches what
gets past them in the usual ways (a stray `.pth`, a `sitecustomize.py`, an edited package file,
an extra package) without trusting the cached virtualenv's own claims about itself.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# Written by `uv venv` or `python -m venv` and read by neither lepton-ci nor Python's start-up.
TOP_FILES = {"pyvenv.cfg", "CACHEDIR.TAG", ".gitignore", ".lock", ".lepton-setup.json"}
ACTIVATE = re.compile(r"activate(_this\.py|\.[a-z0-9]+)?|Activate\.ps1|deactivate\.bat|pydoc\.bat")
INSTALLER_OWN = {"pip", "setuptools"}


class Mismatch(Exception):
    """The virtualenv is not what its lock installs; the message says what differs."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock_files: list[Path]) -> dict[str, str]:
    """name -> version, as the hash-pinned requirements files pin them."""
    out: dict[str, str] = {}
    for f in lock_files:
        for line in f.read_text(encoding="utf-8").splitlines():
            m = PIN.match(line)
            if m:
                out[canonical(m[1])] = m[2]
    return out


def site_packages(venv: Path) -> Path:
    v = sys.version_info
    return venv / "lib" / f"python{v.major}.{v.minor}" / "site-packages"


def prepare(venv: Path) -> None:
    """Delete what the check cannot vouch for and bootstrap rebuilds anyway."""
    site = site_packages(venv)
    shutil.rmtree(site / "lepton_ci", ignore_errors=True)
    for dirpath, dirnames, _ in os.walk(venv):
        if "__pycache__" in dirnames:
            shutil.rmtree(Path(dirpath) / "__pycache__", ignore_errors=True)
            dirnames.remove("__pycache__")


def check(venv: Path, lock_files: list[Path], installer: str) -> None:
    """Raise Mismatch naming the first difference found."""
    venv = venv.resolve()
    _check_interpreter(venv)
    site = site_packages(venv)
    if not site.is_dir():
        raise Mismatch(f"no {site.relative_to(venv)}")
    expected = pinned(lock_files)
    recorded: set[str] = set()
    found: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        name, version = _name_version(info)
        found[name] = version
        recorded |= _check_record(venv, site, info, f"{name} {version}")
    extra = {n: v for n, v in found.items() if n not in expected}
    if installer == "pip":
        extra = {n: v for n, v in extra.items() if n not in INSTALLER_OWN}
    if extra:
        n, v = sorted(extra.items())[0]
        raise Mismatch(f"{n} {v} is installed but not in the lock")
    for n, v in sorted(expected.items()):
        if found.get(n) != v:
            raise Mismatch(f"the lock pins {n} {v}, the virtualenv has {found.get(n) or 'none'}")
    _check_no_stray(venv, recorded)


def _check_interpreter(venv: Path) -> None:
    ours = Path(os.path.realpath(sys.executable))
    bin_dir = venv / "bin"
    links = sorted(bin_dir.glob("python*"))
    if not links:
        raise Mismatch("no bin/python")
    for link in links:
        if Path(os.path.realpath(link)) != ours:
            raise Mismatch(f"bin/{link.name} is not this job's Python ({ours})")
    try:
        cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        raise Mismatch("no pyvenv.cfg") from None
    keys = {}
    for line in cfg.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            keys[k.strip().lower()] = v.strip()
    homes = {Path(sys.executable).parent.resolve(), ours.parent}
    if Path(keys.get("home", "")).resolve() not in homes:
        raise Mismatch(f"pyvenv.cfg names home {keys.get('home')!r}, not this job's Python")
    if keys.get("include-system-site-packages", "false").lower() != "false":
        raise Mismatch("pyvenv.cfg lets the system site-packages in")


def _name_version(info: Path) -> tuple[str, str]:
    headers: dict[str, str] = {}
    try:
        text = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise Mismatch(f"{info.name} has no METADATA") from None
    for line in text.splitlines():
        if not line.strip():
            break
        k, sep, v = line.partition(":")
        if sep and k in ("Name", "Version"):
            headers.setdefault(k, v.strip())
    if "Name" not in headers or "Version" not in headers:
        raise Mismatch(f"{info.name}/METADATA names no Name and Version")
    return canonical(headers["Name"]), headers["Version"]


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_record(venv: Path, site: Path, info: Path, dist: str) -> set[str]:
    """The files `info`'s RECORD lists (as normalised absolute paths), each hash checked."""
    record = info / "RECORD"
    try:
        rows = list(csv.reader(record.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error):
        raise Mismatch(f"{info.name}/RECORD is missing or unreadable") from None
    own = str(record)
    listed = {own}
    inside = str(venv) + os.sep
    base = str(site)
    for row in rows:
        if not row or not row[0]:
            continue
        path = os.path.normpath(os.path.join(base, row[0]))  # noqa: PTH118
        if not path.startswith(inside):
            raise Mismatch(f"{info.name}/RECORD lists {row[0]}, outside the virtualenv")
        hashed = row[1] if len(row) > 1 else ""
        if not hashed:
            # Bytecode without a hash only where the interpreter writes it: a sourceless
            # `sitecustomize.pyc` beside the packages runs at every start, like a .pth file.
            if path != own and not _in_pycache(path):
                raise Mismatch(f"{info.name}/RECORD lists {row[0]} without a hash")
            listed.add(path)
            continue
        algo, _, want = hashed.partition("=")
        if algo != "sha256":
            raise Mismatch(f"{info.name}/RECORD hashes {row[0]} with {algo}, not sha256")
        if os.path.islink(path) or not os.path.isfile(path) or _digest(path) != want:  # noqa: PTH113, PTH114
            raise Mismatch(f"{row[0]} is not the file {dist} installed")
        listed.add(path)
    return listed


def _in_pycache(path: str) -> bool:
    return path.endswith(".pyc") and os.path.basename(os.path.dirname(path)) == "__pycache__"  # noqa: PTH119, PTH120


def _check_no_stray(venv: Path, recorded: set[str]) -> None:
    top = str(venv)
    bin_dir = os.path.join(top, "bin")  # noqa: PTH118
    for dirpath, dirnames, filenames in os.walk(top):
        for d in list(dirnames):
            full = os.path.join(dirpath, d)  # noqa: PTH118
            if os.path.islink(full):  # noqa: PTH114 - walked nowhere; only venv's lib64 -> lib
                dirnames.remove(d)
                if not (dirpath == top and d == "lib64" and os.readlink(full) == "lib"):  # noqa: PTH115
                    raise Mismatch(f"{os.path.relpath(full, top)} is a link no installer makes")
        for name in filenames:
            path = os.path.join(dirpath, name)  # noqa: PTH118
            if path in recorded:
                continue
            if dirpath == top and name in TOP_FILES:
                continue
            if dirpath == bin_dir and (name.startswith("python") or ACTIVATE.fullmatch(name)):
                continue  # the interpreter links were checked; activation scripts never run
            raise Mismatch(f"{os.path.relpath(path, top)} belongs to no installed distribution")
