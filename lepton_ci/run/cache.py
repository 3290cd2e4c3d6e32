"""The run-cache: skip training when code, data, params, commands and environment are unchanged.

Records live under <cache>/records/<model>/<key>.json and artifacts under <cache>/blobs/ by
content hash, so CI can persist the directory with actions/cache. A version tag's record is a
second source: a commit that only re-tags or edits docs reuses the registered result.

Artifacts move in and out of the cache by reflink (copy-on-write filesystems: no bytes are
copied, and a later write to either file copies only what it changes), else by copy. Never by
hard link: the work tree's file would then be the cache's only copy, and a write outside
`lepton-ci run` (`python train.py` by hand, `cp other.bin model.bin`) would destroy the one
copy of a registered model's bytes. A copy costs seconds per GiB where there is no reflink
(measured on ext4 here: 1.6 s for 1 GiB, 5 s once the disk's writeback is behind), paid once
on store and once per restore. Caches written by older versions hold
hard links: `detach` and `restore` break them. A blob is served only while its stat (size,
mtime, inode, ctime) is the one stored, or its bytes hash to its name again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_ci.core import atomic
from lepton_ci.core.config import ModelConfig
from lepton_ci.core.hashing import StatCache, hash_bytes, hash_file
from lepton_ci.core.record import Environment, Lineage, Record, load, save


def inputs_key(model: str, cfg: ModelConfig, lineage: Lineage, params: dict[str, Any]) -> str:
    """What the run was asked to do, without where: commands, env vars, code, data, params."""
    payload = {
        "model": model,
        "train": cfg.train,
        "evaluate": cfg.evaluate,
        "env_vars": cfg.env,
        "outputs": cfg.outputs,
        "metrics": cfg.metrics,
        "code": lineage.code_digest,
        "data": lineage.data_digest,
        "params": params,
    }
    return hash_bytes(json.dumps(payload, sort_keys=True, default=str).encode())


def key(inputs: str, env: Environment) -> str:
    """The inputs and the training environment, by its interpreter's version and platform and
    the digest of its distributions and lock files: another version of any package there is a
    miss; lepton-ci's own virtualenv is no part of it. Neither the interpreter's path (it
    differs between runners) nor the GPU driver is."""
    payload = {
        "inputs": inputs,
        "python": env.python,
        "platform": env.platform,
        "packages": env.packages_digest,
    }
    return hash_bytes(json.dumps(payload, sort_keys=True).encode())


FICLONE = 0x40049409  # linux/fs.h: share the source's extents (btrfs, xfs, bcachefs)


def place(src: Path, dst: Path) -> str:
    """Put src's bytes at dst atomically, as cheaply as the filesystem allows.

    Returns how: "reflink" or "copy". Never a hard link: dst must not share src's bytes
    through a write in place (see the module's docstring)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.lepton-tmp")
    tmp.unlink(missing_ok=True)
    how = "copy"
    try:
        with src.open("rb") as s, tmp.open("wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        how = "reflink"
    except OSError:
        tmp.unlink(missing_ok=True)
        shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return how


@dataclass
class Usage:
    records: int
    blobs: int
    bytes: int  # on disk, each blob once (an old cache's hard links are not counted twice)

    def text(self) -> str:
        return f"{self.records} records, {self.blobs} artifacts, {self.bytes / 1e6:.1f} MB"


@dataclass
class Hit:
    record: Record
    source: str
    restored: list[str]


class RunCache:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _record_path(self, model: str, cache_key: str) -> Path:
        return self.dir / "records" / model / f"{cache_key.split(':')[-1]}.json"

    def _blob(self, digest: str) -> Path:
        h = digest.split(":")[-1]
        return self.dir / "blobs" / h[:2] / h

    def _inputs_path(self, model: str, inputs: str) -> Path:
        return self.dir / "records" / model / "inputs" / f"{inputs.split(':')[-1]}.key"

    def lookup_local(self, model: str, cache_key: str) -> Record | None:
        p = self._record_path(model, cache_key)
        return load(p) if p.is_file() else None

    def lookup_trained(self, model: str, inputs: str) -> Record | None:
        """The record of the last run of these inputs stored here, in whatever environment it
        trained: for a job that never trains (`--cached-only`), whose own environment is not
        the training's."""
        try:
            cache_key = self._inputs_path(model, inputs).read_text().strip()
        except OSError:
            return None
        return self.lookup_local(model, cache_key)

    def _stamp(self, blob: Path) -> Path:
        return blob.with_name(blob.name + ".stat")

    @staticmethod
    def _stat_of(st: os.stat_result) -> list[int]:
        # ctime cannot be set back by hand (`touch -d` sets it to now): an in-place write
        # that restores size and mtime still changes it.
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    def _intact(self, blob: Path, digest: str) -> bool:
        """The blob still holds `digest`. Its stat as stored vouches for that cheaply; when it
        differs (a write in place, a cache restored from a tarball, a stamp of an older
        version) the blob is hashed again to decide."""
        try:
            st = blob.stat()
            stamp = self._stamp(blob)
            want = json.loads(stamp.read_text()) if stamp.is_file() else None
        except (OSError, ValueError):
            return False
        if want == self._stat_of(st):
            return True
        if hash_file(blob) != digest:
            return False
        stamp.write_text(json.dumps(self._stat_of(blob.stat())))
        return True

    def _unshare(self, target: Path, blob: Path) -> bool:
        """A work-tree file that is the blob itself (a hard link an older version made) is
        replaced by a copy of it, so no write there reaches the cache. Returns whether it was."""
        try:
            shared = target.stat().st_nlink > 1 and target.samefile(blob)
        except OSError:
            return False
        if shared:
            place(blob, target)
        return shared

    def store(self, record: Record, root: Path, inputs: str) -> list[str]:
        """Keep the record and its artifacts, findable by its key and by its inputs alone.
        Returns how each new artifact was stored."""
        how = []
        for rel, entry in record.outputs.items():
            blob = self._blob(entry.hash)
            if blob.exists() and self._intact(blob, entry.hash):
                self._unshare(root / rel, blob)
                continue
            how.append(place(root / rel, blob))
            self._stamp(blob).write_text(json.dumps(self._stat_of(blob.stat())))
        save(record, self._record_path(record.model, record.cache.key))
        atomic.write_text(self._inputs_path(record.model, inputs), record.cache.key + "\n")
        return how

    def detach(self, paths: list[Path], stat: StatCache) -> list[Path]:
        """Drop work-tree files that are hard links into the cache (made by an older version),
        so training writes new files instead of rewriting the cached ones in place. Returns
        the files dropped."""
        dropped: list[Path] = []
        for p in paths:
            with contextlib.suppress(OSError):
                if p.stat().st_nlink > 1 and p.samefile(self._blob(stat.hash(p))):
                    p.unlink()
                    dropped.append(p)
        return dropped

    def usage(self) -> Usage:
        records = len(list(self.dir.glob("records/*/*.json")))
        seen, size, count = set(), 0, 0
        for b in self.dir.glob("blobs/*/*"):
            if b.name.endswith((".stat", ".tmp")) or not b.is_file():
                continue
            st = b.stat()
            count += 1
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
        return Usage(records, count, size)

    def artifact(self, digest: str) -> Path | None:
        """The stored blob of an artifact, if it is here and still holds `digest`."""
        blob = self._blob(digest)
        return blob if blob.is_file() and self._intact(blob, digest) else None

    def restore(self, record: Record, root: Path, stat: StatCache) -> tuple[list[str], str | None]:
        """Put the record's artifacts in place. Returns (restored paths, reason if impossible)."""
        todo: list[tuple[Path, Path]] = []
        for rel, entry in record.outputs.items():
            target = root / rel
            blob = self._blob(entry.hash)
            if target.is_file() and stat.hash(target) == entry.hash:
                self._unshare(target, blob)
                continue
            if not blob.is_file():
                return [], f"artifact {rel} is neither in the work tree nor in the cache"
            if not self._intact(blob, entry.hash):
                blob.unlink(missing_ok=True)
                return [], f"the cached {rel} was changed after it was stored"
            todo.append((blob, target))
        for blob, target in todo:
            place(blob, target)
        return [str(t.relative_to(root)) for _, t in todo], None
