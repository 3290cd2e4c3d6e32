"""Deterministic OCI layers, image configs and manifests.

Same files + same commit time = same bytes: entries sorted, owners 0:0 with no names, modes
normalised, mtimes fixed to the commit time, gzip without a timestamp or a file name. Layers
stream to a temporary file while both digests (compressed and uncompressed) are computed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from lepton_ci.core.oci_client import (
    CONFIG_OCI,
    LAYER_OCI,
    MANIFEST_OCI,
    sha256,
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Entry:
    """One file in a layer: its path in the image and where its bytes come from."""

    path: str  # absolute path in the image, e.g. /app/serve.py
    source: Path | bytes
    executable: bool = False


@dataclass
class Layer:
    name: str
    file: Path  # the gzipped tar
    digest: str  # sha256 of the gzipped bytes
    diff_id: str  # sha256 of the tar
    size: int
    media_type: str = LAYER_OCI

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _Hashing(io.RawIOBase):
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.h = hashlib.sha256()
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.h.update(data)
        self.n += len(data)
        self.sink.write(data)
        return len(data)


def build_layer(name: str, entries: Iterable[Entry], mtime: int, workdir: Path) -> Layer:
    items = sorted(entries, key=lambda e: PurePosixPath(e.path).parts)
    dirs = sorted(
        {str(p) for e in items for p in PurePosixPath(e.path).parents if str(p) != "/"},
        key=lambda d: PurePosixPath(d).parts,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".tar.gz", dir=workdir)
    out = Path(tmp_name)
    with open(fd, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6
        ) as gz:
            plain = _Hashing(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for d in dirs:
                    tar.addfile(_info(d.lstrip("/") + "/", tarfile.DIRTYPE, 0o755, 0, mtime))
                for e in items:
                    if isinstance(e.source, bytes):
                        mode = 0o755 if e.executable else 0o644
                        info = _info(
                            e.path.lstrip("/"), tarfile.REGTYPE, mode, len(e.source), mtime
                        )
                        tar.addfile(info, io.BytesIO(e.source))
                        continue
                    st = e.source.stat()
                    exe = e.executable or bool(st.st_mode & stat.S_IXUSR)
                    info = _info(
                        e.path.lstrip("/"),
                        tarfile.REGTYPE,
                        0o755 if exe else 0o644,
                        st.st_size,
                        mtime,
                    )
                    with e.source.open("rb") as f:
                        tar.addfile(info, f)
    return Layer(
        name,
        out,
        "sha256:" + compressed.h.hexdigest(),
        "sha256:" + plain.h.hexdigest(),
        compressed.n,
    )


def _info(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def canonical(obj: Any) -> bytes:
    """The one JSON serialisation used for configs and manifests, so digests are stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def image_config(
    base: dict[str, Any],
    layers: list[Layer],
    *,
    created: str,
    labels: dict[str, str],
    env: dict[str, str],
    entrypoint: list[str],
    cmd: list[str],
    workdir: str,
    ports: list[int],
) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy
    c = cfg.setdefault("config", {}) or {}
    cfg["config"] = c
    # Runtimes differ on a missing PATH (kube play sets none), so the image always has one.
    merged_env = {"PATH": DEFAULT_PATH}
    merged_env.update({k: v for k, _, v in (x.partition("=") for x in c.get("Env") or [])})
    merged_env.update(env)
    c["Env"] = [f"{k}={v}" for k, v in merged_env.items()]
    c["Labels"] = {**(c.get("Labels") or {}), **labels}
    if entrypoint:
        c["Entrypoint"] = entrypoint
    if cmd:
        c["Cmd"] = cmd
    if workdir:
        c["WorkingDir"] = workdir
    if ports:
        c["ExposedPorts"] = {**(c.get("ExposedPorts") or {}), **{f"{p}/tcp": {} for p in ports}}
    cfg["created"] = created
    cfg.setdefault("architecture", "amd64")
    cfg.setdefault("os", "linux")
    rootfs = cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    history = cfg.get("history") or []
    cfg["history"] = [
        *history,
        *({"created": created, "created_by": f"lepton-ci: {layer.name} layer"} for layer in layers),
    ]
    return cfg


def manifest(
    config_bytes: bytes, layers: list[dict[str, Any]], annotations: dict[str, str]
) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_OCI,
        "config": {
            "mediaType": CONFIG_OCI,
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": layers,
        "annotations": annotations,
    }
