"""One run of a model per work tree: a second one would interleave outputs and hash a mix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lepton_ci.core.errors import InputError
from lepton_ci.core.filelock import exclusive


class RunLocked(InputError):
    """Another run of the same model holds this work tree."""


@contextmanager
def worktree_lock(path: Path, model: str) -> Iterator[None]:
    def busy(holder: str) -> RunLocked:
        return RunLocked(
            f"another run of {model} is using this work tree ({holder})",
            hint="wait for it to finish; runs in parallel need separate checkouts",
        )

    with exclusive(path, timeout=0, what=f"lepton-ci run of {model}", busy=busy):
        yield
