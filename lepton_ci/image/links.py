"""Symlinks in what an image ships: a committed link may point anywhere on the builder.

A link (or a linked directory on the way to a file) is followed only when its target
resolves inside the tree being shipped; the image then holds the target's bytes at the
link's path. One leaving the tree (`leak.py -> /etc/shadow`, `x.py -> ../../.git/config`) is
refused, naming the file, before anything is uploaded. The artifacts, which the checkout links
in from the work tree or the run-cache after checking their hashes, are the one exception:
callers pass them as `checked`.
"""

from __future__ import annotations

import os.path
from collections.abc import Iterable
from pathlib import Path

from lepton_ci.core.errors import InputError


def check_inside(
    files: Iterable[Path], root: Path, *, checked: Iterable[Path] = (), what: str
) -> None:
    """Every file of `files` resolves inside `root` (and not into a `.git`), or is `checked`."""
    top = root.resolve()
    allowed = {_absolute(p) for p in checked}
    for f in files:
        if _absolute(f) in allowed:
            continue
        real = f.resolve()
        inside = real.is_relative_to(top) and ".git" not in real.relative_to(top).parts
        if inside or real in {p.resolve() for p in allowed}:
            continue
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f)
        raise InputError(
            f"{rel} in {what} is a symlink to {str(_link_of(f, root).readlink())!r}, which "
            f"resolves outside {root.name or root} (to {real}): a committed link never ships "
            "a file of the machine that builds",
            hint=f"commit the file itself in place of the link, or drop {rel} from {what}",
        )


def _link_of(f: Path, root: Path) -> Path:
    """The link that takes `f` out of the tree: the file or one of its directories."""
    for p in [f, *f.parents]:
        if p.is_symlink():
            return p
        if p == root:
            break
    return f


def _absolute(p: Path) -> Path:
    """`p` made absolute without following links (the link itself, not its target)."""
    return Path(os.path.normpath(p.absolute()))
