"""Write a file so that a reader sees the old content or the new, never half of it; read
back only what such a write makes (a regular file)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lepton_ci.core.errors import StateError


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text beside `path` under a name no other writer picks, then rename it over
    `path` (atomic on one filesystem); on any failure the temporary file is removed. Something
    in the way (a file where a folder belongs, a folder where the file goes) is a StateError
    that names it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise in_the_way(path.parent, e) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except (IsADirectoryError, NotADirectoryError) as e:
        tmp.unlink(missing_ok=True)
        raise in_the_way(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def in_the_way(path: Path, e: OSError) -> StateError:
    """The error for a path that cannot be written because of what stands at it or above it."""
    blocker = path
    for p in (path, *path.parents):  # the nearest one that exists and is not a folder
        if p.exists() or p.is_symlink():
            blocker = p
            if not p.is_dir() or p == path:
                break
    kind = describe(blocker)
    hint = f"remove {blocker} (`rm -rf '{blocker}'`); lepton-ci recreates its state files"
    if "device" in kind:  # never suggest removing a device: the path must point elsewhere
        hint = f"a device cannot hold lepton-ci's state: point {path.parent} at a folder"
    return StateError(f"cannot write {path}: {blocker} is {kind} ({e.strerror or e})", hint=hint)


def describe(p: Path) -> str:
    """`a directory`, `a FIFO`, `a link to /dev/null`...: what a path is, for a message."""
    if p.is_symlink():
        return f"a link to {p.readlink()}"
    try:
        mode = p.stat().st_mode
    except OSError:
        return "missing"
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_text(path: Path) -> str:
    """A cache file's UTF-8 text, if it is a regular file: a FIFO or device put in its place
    would block or never end a read (opened without blocking, then looked at). OSError when
    it is not one."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb", closefd=True) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read().decode("utf-8")
