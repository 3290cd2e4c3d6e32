"""Signals as exceptions, and the sections they must not cut in half.

SIGINT raises KeyboardInterrupt (Python's own) and SIGTERM raises `Terminated`. Both are
BaseExceptions, so no `except Exception` or `except LeptonError` swallows them: every `finally`
runs (a scratch folder is removed, a deploy is reverted) and the CLI exits 130 or 143 as a shell
reports it. Inside `deferred()` a signal is noted and raised when the section ends, so the work
that puts things back (a revert, removing a tag) is never itself cut half-way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOPS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM (or another stopping signal) arrived; raised where the program was."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    depth = 0
    pending: list[int] = []  # one list for the process, as its signals are
    # Set when a signal is raised: worker threads (which Python never interrupts) poll it
    # between pieces of long work, so the main thread's exit does not wait for them.
    stopping = threading.Event()


def requested() -> bool:
    """A stopping signal was raised: a worker thread should give up at its next step."""
    return _State.stopping.is_set()


def stop_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def signum_of(e: BaseException) -> int:
    return e.signum if isinstance(e, Terminated) else int(signal.SIGINT)


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _State.depth:
        _State.pending.append(signum)
        return
    _State.stopping.set()
    raise stop_for(signum)


@contextmanager
def installed() -> Iterator[None]:
    """SIGINT and SIGTERM raise while the block runs (the CLI's whole command)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {s: signal.signal(s, _handler) for s in STOPS}
    _State.stopping.clear()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """A signal that arrives in the block is raised when the block has finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        if not _State.depth and _State.pending:
            signum = _State.pending[0]
            _State.pending.clear()
            _State.stopping.set()
            raise stop_for(signum)
