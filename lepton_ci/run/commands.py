"""Runs a user's train/evaluate command with its output streamed and its tail kept."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from lepton_ci.core.errors import CommandFailed

TAIL_LINES = 20


@dataclass
class Result:
    exit_code: int
    started_at: str
    duration_s: float
    tail: list[str]


def run_command(
    name: str,
    command: str | list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    stream: TextIO | None = None,
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

    def pump() -> None:
        for line in proc.stdout or ():
            out.write(line)
            out.flush()
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
        raise CommandFailed(
            f"{name} command timed out after {timeout_s:.0f}s",
            hint="raise `timeout_minutes` for this model in lepton.yaml",
        ) from None
    reader.join(5)
    return Result(code, started, round(time.monotonic() - t0, 3), list(tail))
