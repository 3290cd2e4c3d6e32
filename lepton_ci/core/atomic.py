"""Write a file so that a reader sees the old content or the new, never half of it; read
back only what such a write makes (a regular file)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text beside `path` under a name no other writer picks, then rename it over
    `path` (atomic on one filesystem); on any failure the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_text(path: Path) -> str:
    """A cache file's UTF-8 text, if it is a regular file: a FIFO or device put in its place
    would block or never end a read (opened without blocking, then looked at). OSError when
    it is not one."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb", closefd=True) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read().decode("utf-8")
