"""The run-cache: skip training when code, data, params, commands and environment are unchanged.

Records live under <cache>/records/<model>/<key>.json and artifacts under <cache>/blobs/ by
content hash, so CI can persist the directory with actions/cache. A version tag's record is a
second source: a commit that only re-tags or edits docs reuses the registered result.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_ci.core.config import ModelConfig
from lepton_ci.core.hashing import StatCache, hash_bytes
from lepton_ci.core.record import Environment, Lineage, Record, load, save


def key(
    model: str, cfg: ModelConfig, lineage: Lineage, params: dict[str, Any], env: Environment
) -> str:
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
        "python": env.python,
        "platform": env.platform,
        "packages": env.packages_digest,
    }
    return hash_bytes(json.dumps(payload, sort_keys=True, default=str).encode())


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

    def lookup_local(self, model: str, cache_key: str) -> Record | None:
        p = self._record_path(model, cache_key)
        return load(p) if p.is_file() else None

    def store(self, record: Record, root: Path) -> None:
        for rel, entry in record.outputs.items():
            blob = self._blob(entry.hash)
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                tmp = blob.with_suffix(".tmp")
                shutil.copyfile(root / rel, tmp)
                tmp.replace(blob)
        save(record, self._record_path(record.model, record.cache.key))

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
            todo.append((blob, target))
        for blob, target in todo:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.lepton-tmp")
            shutil.copyfile(blob, tmp)
            tmp.replace(target)
        return [str(t.relative_to(root)) for _, t in todo], None
