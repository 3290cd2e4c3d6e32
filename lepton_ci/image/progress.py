"""Upload progress: a bar in a terminal, a line per quarter in CI logs."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last_quarter = -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        frac = min(done / total, 1.0)
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {frac:4.0%} {_mb(done)}/{_mb(total)}")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
            return
        quarter = int(frac * 4)
        if quarter > self._last_quarter:
            self._last_quarter = quarter
            self.stream.write(f"{self.label}: {frac:.0%} ({_mb(done)} of {_mb(total)})\n")
            self.stream.flush()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
