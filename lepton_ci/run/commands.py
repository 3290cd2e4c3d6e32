"""Runs a user's train/evaluate command with its output streamed and its tail kept.

The command runs in its own process group, so a stop reaches everything it started: on
Ctrl-C or SIGTERM lepton-ci forwards the signal to the group, waits a grace period (cut short by
a second signal), kills what is left, and raises Interrupted (exit 130/143). A timeout stops the
group the same way.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TextIO

from lepton_ci.core.errors import CommandFailed, Interrupted

TAIL_LINES = 20
TAIL_LINE_CHARS = 400  # one line of the tail; a progress bar without newlines can be megabytes
READ_CHARS = 64 * 1024  # read at most this much per line, so memory stays bounded
GRACE_S = 10.0  # between the forwarded signal and SIGKILL


@dataclass
class Result:
    exit_code: int
    started_at: str
    duration_s: float
    tail: list[str]

    def status(self) -> str:
        """`exited with code 2`, or `was killed by signal 9 (SIGKILL)` (Popen's -9)."""
        if self.exit_code >= 0:
            return f"exited with code {self.exit_code}"
        n = -self.exit_code
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {n} ({name})"


def _clip(line: str) -> str:
    line = line.rstrip("\n")
    if len(line) <= TAIL_LINE_CHARS:
        return line
    return f"{line[:TAIL_LINE_CHARS]}... ({len(line) - TAIL_LINE_CHARS} more characters)"


@contextmanager
def _forward_signals(received: list[int], pgid: int) -> Iterator[None]:
    """While the command runs, SIGINT/SIGTERM go to its process group instead of killing us."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        _signal_group(pgid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signum)


def _stop(
    proc: subprocess.Popen[str], signum: int, grace_s: float, received: list[int] | None = None
) -> None:
    """Signal the group, give it `grace_s` to exit, then kill whatever is left of it. A second
    signal ends the grace at once: GitHub's cancel sends SIGINT, then SIGTERM 7.5 s later, then
    kills lepton-ci itself, which would leave the command's group running on the runner."""
    _signal_group(proc.pid, signum)
    deadline = time.monotonic() + grace_s
    # The grace is the group's, not the leader's: `sh -c "python train.py"` dies at SIGTERM at
    # once, while the trainer it started saves its checkpoint.
    while time.monotonic() < deadline and not (received and len(received) > 1):
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        if proc.returncode is not None and not _group_alive(proc.pid):
            break
    _signal_group(proc.pid, signal.SIGKILL)  # children the leader left behind, too
    proc.wait()


def _group_alive(pgid: int) -> bool:
    """Does any process of the group still run? (A zombie no one has reaped yet counts as
    gone: its exit is all it had left to do.)"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return not Path("/proc/self").exists()  # no /proc (macOS): kill(0) is the only word


class _Exit:
    """Waits for a child's exit in slices, so signals and the deadline are looked at between
    them. Linux wakes on the exit itself (a pidfd); Popen.wait(timeout) polls with sleeps that
    grow to 50 ms, which a run paid twice (train, evaluate) on every model."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.fd: int | None = None
        with suppress(AttributeError, OSError):  # macOS, or a Linux before 5.3
            self.fd = os.pidfd_open(proc.pid)

    def wait(self, slice_s: float) -> int | None:
        """The exit code, or None if the child still runs after `slice_s`."""
        if self.fd is None:
            try:
                return self.proc.wait(timeout=slice_s)
            except subprocess.TimeoutExpired:
                return None
        poller = select.poll()  # not select(): it cannot watch a descriptor past 1023
        poller.register(self.fd, select.POLLIN)
        return self.proc.wait() if poller.poll(slice_s * 1000) else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run_command(
    name: str,
    command: str | list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    stream: TextIO | None = None,
    grace_s: float = GRACE_S,
) -> Result:
    """A string runs under `sh -c` like a workflow `run:`; a list runs as argv, no shell."""
    out = stream or sys.stdout
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as e:
        raise CommandFailed(
            f"{name} command could not start: {e}", hint=f"check `{name}:` in lepton.yaml"
        ) from e

    stdout = proc.stdout
    if stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
        raise CommandFailed(f"{name} command: no output pipe")

    def pump() -> None:
        pending = ""  # a line longer than READ_CHARS arrives in pieces; keep its start only
        while chunk := stdout.readline(READ_CHARS):
            out.write(chunk)
            out.flush()
            if not pending:
                pending = chunk[: TAIL_LINE_CHARS + 1]
            if chunk.endswith("\n"):
                tail.append(_clip(pending))
                pending = ""
        if pending:
            tail.append(_clip(pending))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    received: list[int] = []
    waiter = _Exit(proc)
    with _forward_signals(received, proc.pid):
        deadline = t0 + timeout_s
        while waiter.wait(0.2) is None:
            if received:
                break
            if time.monotonic() >= deadline:
                waiter.close()
                _stop(proc, signal.SIGTERM, grace_s)
                reader.join(5)
                raise CommandFailed(
                    f"{name} command timed out after {timeout_s:.0f}s and was stopped",
                    hint="raise `timeout_minutes` for this model in lepton.yaml",
                ) from None
        waiter.close()
        if received:
            _stop(proc, received[0], grace_s, received)
    reader.join(5)
    if received:
        raise Interrupted(
            f"{signal.Signals(received[0]).name} received: stopped the {name} command "
            f"(pid {proc.pid}) and everything it started; nothing was recorded",
            signum=received[0],
        )
    return Result(proc.returncode, started, round(time.monotonic() - t0, 3), list(tail))
