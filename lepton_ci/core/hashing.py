"""Content hashes of files, with a stat cache so an unchanged file is never read twice.

blake3 hashes with SIMD and threads, several times md5sum's throughput on one file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from lepton_ci.core import atomic

ALGO = "blake3"
_CHUNK = 8 * 1024 * 1024
_MMAP_FROM = 64 * 1024 * 1024
# Big files are hashed through a sliding mmap window: blake3's threads get large contiguous
# spans (full speed), and at most one window of the file is mapped, so resident memory stays
# flat whatever the model size (mapping the whole file counted it all as RSS).
_WINDOW = 64 * 1024 * 1024


def hash_file(path: Path) -> str:
    import blake3  # imported here: only commands that hash pay for it

    size = path.stat().st_size
    if size < _MMAP_FROM:
        h = blake3.blake3()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return f"{ALGO}:{h.hexdigest()}"
    import mmap

    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with path.open("rb") as f:
        for offset in range(0, size, _WINDOW):
            length = min(_WINDOW, size - offset)
            with mmap.mmap(f.fileno(), length, offset=offset, access=mmap.ACCESS_READ) as m:
                m.madvise(mmap.MADV_SEQUENTIAL)
                h.update(m)
                m.madvise(mmap.MADV_DONTNEED)
    return f"{ALGO}:{h.hexdigest()}"


def hash_bytes(data: bytes) -> str:
    import blake3

    return f"{ALGO}:{blake3.blake3(data).hexdigest()}"


class StatCache:
    """Remembers (size, mtime, inode, ctime) -> hash per absolute path, in one JSON file.

    A changed file is caught by its mtime or ctime; a replaced file by its inode. Timestamps
    have a granularity, so a same-size rewrite soon after hashing can keep them all: like
    git's racily clean index entries, an entry is trusted only when its file's mtime and
    ctime are older than the cache file's own mtime (when the hashes were written down).
    Entries hashed in this run are not trusted until saved.
    """

    def __init__(
        self, path: Path | None, *, stat: Callable[[Path], os.stat_result] = os.stat
    ) -> None:
        self.path = path
        self._stat = stat  # tests hand in controlled timestamps
        self._entries: dict[str, list[int | str]] = {}
        self._written_ns: int | None = None
        self._dirty = False
        self.hits = 0
        self.misses = 0
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._entries = loaded
                    self._written_ns = stat(path).st_mtime_ns
            except (OSError, ValueError):
                self._entries = {}  # a corrupt cache is only a slower run, never an error

    @staticmethod
    def _key(st: os.stat_result) -> list[int | str]:
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    def hash(self, path: Path) -> str:
        p = path.resolve()
        st = self._stat(p)
        key = self._key(st)
        entry = self._entries.get(str(p))
        written = self._written_ns
        settled = written is not None and max(st.st_mtime_ns, st.st_ctime_ns) < written
        if entry is not None and entry[:4] == key and settled:
            self.hits += 1
            return str(entry[4])
        self.misses += 1
        digest = hash_file(p)
        self._entries[str(p)] = [*key, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        atomic.write_text(self.path, json.dumps(self._entries, separators=(",", ":")))
        self._dirty = False


def hash_tree(root: Path, files: Iterable[Path], cache: StatCache) -> dict[str, str]:
    """Hash files, keyed by their POSIX path relative to root, sorted."""
    out = {}
    for f in sorted(set(files)):
        out[f.relative_to(root).as_posix()] = cache.hash(f)
    return out


def combine(hashes: dict[str, str]) -> str:
    """One digest for a set of (path, hash) pairs, independent of dict order."""
    lines = "".join(f"{k}\0{v}\n" for k, v in sorted(hashes.items()))
    return hash_bytes(lines.encode())
