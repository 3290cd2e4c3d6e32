"""Write a file so that a reader sees the old content or the new, never half of it; read
back only what such a write makes (a regular file). `write_text` is for lepton-ci's own state
files; `write_output` for a path a user names (`card --out`), which it never replaces with
something else than what stood there."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from lepton_ci.core.errors import InputError, StateError


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


def write_output(path: Path, text: str, *, option: str, make_parents: bool = False) -> bool:
    """Write UTF-8 text to a path a user named; True if it was a stream, False if a file.

    A regular file is replaced atomically, as `write_text` does; a link is written through
    to the file it names (the link stays); a character device or FIFO (`/dev/stdout`,
    `/dev/null`, `>(...)`) is written through, never replaced: renaming a file over
    /dev/stdout would break it for every process. A directory, socket or block device is
    refused, and so is a missing folder unless `make_parents` (a path from lepton.yaml, whose
    folders lepton-ci lays out). Every refusal is an InputError naming `option`, the path and
    the fix; nothing is written then."""
    try:
        mode: int | None = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the folder check below says which
        mode = None
    except OSError as e:  # a link loop, no permission
        raise _cannot(path, e, option) from None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        _write_stream(path, text, option)
        return True
    if mode is not None and not stat.S_ISREG(mode):
        kind = describe_target(path)
        raise InputError(
            f"{option} {path} is {kind}, not a file; nothing was written",
            hint=f"name a file, e.g. {option} {path / 'card.md'}"
            if stat.S_ISDIR(mode)
            else f"name a regular file (or a character device such as /dev/stdout) for {option}",
        )
    # the file, or the place a dangling link points to: a link is kept, its target written
    target = Path(os.path.realpath(path))
    parent = target.parent
    if make_parents and not parent.exists():
        with contextlib.suppress(OSError):  # said below, with the folder in the way
            parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir():
        blocker = next(p for p in (parent, *parent.parents) if p.exists() or p.is_symlink())
        if blocker.is_dir():  # only folders above are there
            raise InputError(
                f"cannot write {option} {path}: the folder {parent} does not exist; "
                "nothing was written",
                hint=f"create it first (`mkdir -p '{parent}'`) or choose another {option}",
            )
        raise InputError(
            f"cannot write {option} {path}: {blocker} is {describe(blocker)}, not a folder; "
            "nothing was written",
            hint=f"choose another {option}",
        )
    try:
        write_text(target, text)
    except OSError as e:
        raise _cannot(path, e, option) from None
    return False


def _write_stream(path: Path, text: str, option: str) -> None:
    """Write through to a device or FIFO. Opened without blocking, so a FIFO nobody reads is
    an error rather than a hang; then written blocking, all of it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputError(
                f"cannot write {option} {path}: it is {describe_target(path)} nobody reads; "
                "nothing was written",
                hint=f"start its reader first, or choose a file for {option}",
            ) from None
        raise _cannot(path, e, option) from None
    try:
        os.set_blocking(fd, True)
        with open(fd, "wb", closefd=False) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise _cannot(path, e, option) from None
    finally:
        os.close(fd)


def _cannot(path: Path, e: OSError, option: str) -> InputError:
    return InputError(
        f"cannot write {option} {path}: {e.strerror or e}",
        hint=f"choose a {option} you can write to",
    )


def describe_target(p: Path) -> str:
    """What a path is after following links: `a directory (through a link)`..."""
    try:
        kind = _kind(p.stat().st_mode)
    except OSError:
        kind = "missing"
    return f"{kind} (through a link)" if p.is_symlink() else kind


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
    return _kind(mode)


def _kind(mode: int) -> str:
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
