"""An exclusive lock on a file that says who holds it, so the one who waits can be told."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from lepton_ci.core.atomic import in_the_way
from lepton_ci.core.errors import LeptonError


@contextmanager
def exclusive(
    path: Path,
    *,
    timeout: float,
    what: str,
    busy: Callable[[str], LeptonError],
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold `path` locked; after `timeout` seconds raise `busy(holder)`, holder saying who has
    it (`waiting(holder)` is told once, when the wait starts). The kernel drops the lock when
    its holder dies, so a killed run never leaves it stuck."""
    with _open(path) as f:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                holder = _describe(f.read())
                if time.monotonic() >= deadline:
                    raise busy(holder) from None
                if waiting is not None and not told:
                    waiting(holder)
                    told = True
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        since = datetime.now(UTC).isoformat(timespec="seconds")
        f.write(json.dumps({"pid": os.getpid(), "since": since, "what": what}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def _open(path: Path) -> IO[str]:
    """The lock file, opened for reading and writing, if it is a regular file: a FIFO, a
    directory or a device put there (or a link to one) is named in the error, not read."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise in_the_way(path, e) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise in_the_way(path, OSError("not a regular file"))
    os.set_blocking(fd, True)
    return open(fd, "a+", encoding="utf-8")


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"{info['what']}, pid {info['pid']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
