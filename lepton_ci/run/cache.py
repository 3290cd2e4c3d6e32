"""The run-cache: skip training when code, data, params, commands and environment are unchanged.

Records live under <cache>/records/<model>/<key>.json and artifacts under <cache>/blobs/ by
content hash, so CI can persist the directory with actions/cache. A version tag's record is a
second source: a commit that only re-tags or edits docs reuses the registered result.

Artifacts move in and out of the cache by reflink (copy-on-write filesystems), else by hard
link (same filesystem), else by copy: a 10 GB model costs no copy to store or restore. A hard
link shares the file with the work tree, so before training writes again, the work tree's
links into the cache are dropped (`detach`), and a blob whose size or mtime changed since it
was stored (rewritten through a link) is never served.
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

    Returns how: "reflink", "hardlink" or "copy"."""
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
        try:
            os.link(src, tmp)
            how = "hardlink"
        except OSError:
            shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return how


@dataclass
class Usage:
    records: int
    blobs: int
    bytes: int  # on disk, each blob once (a hard-linked artifact is not counted twice)

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

    def _intact(self, blob: Path, digest: str) -> bool:
        """The blob still holds `digest`. Its (size, mtime) as stored vouch for that cheaply;
        when they differ (a hard link rewritten in place, or a cache restored from a tarball,
        which keeps mtimes only to the second) the blob is hashed again to decide."""
        try:
            st = blob.stat()
            stamp = self._stamp(blob)
            want = json.loads(stamp.read_text()) if stamp.is_file() else None
        except (OSError, ValueError):
            return False
        if want == [st.st_size, st.st_mtime_ns]:
            return True
        if hash_file(blob) != digest:
            return False
        stamp.write_text(json.dumps([st.st_size, st.st_mtime_ns]))
        return True

    def store(self, record: Record, root: Path, inputs: str) -> list[str]:
        """Keep the record and its artifacts, findable by its key and by its inputs alone.
        Returns how each new artifact was stored."""
        how = []
        for rel, entry in record.outputs.items():
            blob = self._blob(entry.hash)
            if blob.exists() and self._intact(blob, entry.hash):
                continue
            how.append(place(root / rel, blob))
            st = blob.stat()
            self._stamp(blob).write_text(json.dumps([st.st_size, st.st_mtime_ns]))
        save(record, self._record_path(record.model, record.cache.key))
        atomic.write_text(self._inputs_path(record.model, inputs), record.cache.key + "\n")
        return how

    def detach(self, paths: list[Path], stat: StatCache) -> list[Path]:
        """Drop work-tree files that are hard links into the cache, so training writes new
        files instead of rewriting the cached ones in place. Returns the files dropped."""
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

    def restore(self, record: Record, root: Path, stat: StatCache) -> tuple[list[str], str | None]:
        """Put the record's artifacts in place. Returns (restored paths, reason if impossible)."""
        todo: list[tuple[Path, Path]] = []
        for rel, entry in record.outputs.items():
            target = root / rel
            if target.is_file() and stat.hash(target) == entry.hash:
                continue
            blob = self._blob(entry.hash)
            if not blob.is_file():
                return [], f"artifact {rel} is neither in the work tree nor in the cache"
            if not self._intact(blob, entry.hash):
                blob.unlink(missing_ok=True)
                return [], f"the cached {rel} was changed after it was stored"
            todo.append((blob, target))
        for blob, target in todo:
            place(blob, target)
        return [str(t.relative_to(root)) for _, t in todo], None
