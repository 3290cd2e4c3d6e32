"""Deterministic OCI layers, image configs and manifests.

Same files + same commit time = same bytes: entries sorted, owners 0:0 with no names, modes
normalised, mtimes fixed to the commit time, gzip without a timestamp or a file name. Layers
are never staged: they stream (tar -> gzip or plain -> sha256) to whoever needs the bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from lepton_ci.core.oci_client import (
    CONFIG_OCI,
    LAYER_OCI,
    LAYER_TAR,
    MANIFEST_OCI,
    sha256,
)

LAYOUT_VERSION = 1  # bump when the tar layout changes, so cached layer digests are not reused
_COPY = 1 << 20
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Entry:
    """One file in a layer: its path in the image and where its bytes come from."""

    path: str  # absolute path in the image, e.g. /app/serve.py
    source: Path | bytes
    executable: bool = False


Compression = Literal["gzip", "none"]
_MEDIA = {"gzip": LAYER_OCI, "none": LAYER_TAR}
_SAMPLE = 1 << 20


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes, then hands it on."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self.sink = sink
        self.h = hashlib.sha256()
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.h.update(data)
        self.n += len(data)
        self.sink(data)
        return len(data)


@dataclass(frozen=True)
class LayerSource:
    """The deterministic bytes of one layer, written again whenever they are needed.

    Nothing is staged on disk: describing a layer (its digests) and uploading it both stream
    tar -> compression -> sha256 through one chunk at a time, so memory stays flat for a
    10 GB model."""

    name: str
    entries: tuple[Entry, ...]
    mtime: int
    compression: Compression = "gzip"

    @property
    def media_type(self) -> str:
        return _MEDIA[self.compression]

    def raw_size(self) -> int:
        """The bytes of the files it holds (before tar and compression)."""
        return sum(
            len(e.source) if isinstance(e.source, bytes) else e.source.stat().st_size
            for e in self.entries
        )

    def key(self, file_hash: Callable[[Path], str]) -> str:
        """What the layer's bytes depend on: paths, modes, contents, mtime, compression."""
        parts: list[Any] = [LAYOUT_VERSION, self.name, self.mtime, self.compression]
        for e in self.entries:
            if isinstance(e.source, bytes):
                parts.append([e.path, e.executable, hashlib.sha256(e.source).hexdigest()])
            else:
                st = e.source.stat()
                exe = e.executable or bool(st.st_mode & stat.S_IXUSR)
                parts.append([e.path, exe, st.st_size, file_hash(e.source)])
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def write(self, sink: Callable[[bytes], object]) -> tuple[str, str, int]:
        """Write the layer to `sink`. Returns (digest, diff_id, size)."""
        compressed = _Hashing(sink)
        if self.compression == "gzip":
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6
            ) as gz:
                plain = _Hashing(gz.write)
                self._tar(plain)
        else:
            plain = compressed
            self._tar(plain)
        return "sha256:" + compressed.h.hexdigest(), "sha256:" + plain.h.hexdigest(), compressed.n

    def _tar(self, out: _Hashing) -> None:
        """The bytes tarfile's `w|` PAX stream writes, without its buffer copies (a layer of
        20,000 files spends seconds in them): the same headers from TarInfo.tobuf, the data,
        NUL padding to 512-byte blocks, two zero blocks and padding to a full record."""
        dirs = sorted(
            {str(p) for e in self.entries for p in PurePosixPath(e.path).parents if str(p) != "/"},
            key=lambda d: PurePosixPath(d).parts,
        )
        written = 0

        def emit(data: bytes) -> None:
            nonlocal written
            out.write(data)
            written += len(data)

        for d in dirs:
            emit(_header(_info(d.lstrip("/") + "/", tarfile.DIRTYPE, 0o755, 0, self.mtime)))
        for e in self.entries:
            if isinstance(e.source, bytes):
                mode = 0o755 if e.executable else 0o644
                info = _info(e.path.lstrip("/"), tarfile.REGTYPE, mode, len(e.source), self.mtime)
                emit(_header(info))
                emit(e.source)
            else:
                st = e.source.stat()
                exe = e.executable or bool(st.st_mode & stat.S_IXUSR)
                mode = 0o755 if exe else 0o644
                info = _info(e.path.lstrip("/"), tarfile.REGTYPE, mode, st.st_size, self.mtime)
                emit(_header(info))
                left = st.st_size
                with e.source.open("rb") as f:
                    while left > 0:
                        chunk = f.read(min(_COPY, left))
                        if not chunk:
                            raise OSError(f"{e.source}: the file shrank while it was read")
                        emit(chunk)
                        left -= len(chunk)
            emit(bytes(-written % tarfile.BLOCKSIZE))
        emit(bytes(2 * tarfile.BLOCKSIZE))
        emit(bytes(-written % tarfile.RECORDSIZE))


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def choose_compression(entries: Iterable[Entry]) -> Compression:
    """gzip where it pays; none for weights, which are incompressible (gzip only costs time).

    Judged on a sample of each file: if gzip cannot shrink the sample below 90%, the layer
    is stored as a plain tar (every OCI runtime and registry accepts it)."""
    raw = packed = 0
    for e in entries:
        if isinstance(e.source, bytes):
            sample = e.source[:_SAMPLE]
        else:
            with e.source.open("rb") as f:
                sample = f.read(_SAMPLE)
        raw += len(sample)
        packed += len(zlib.compress(sample, 1))
    return "none" if raw >= 64 * 1024 and packed > 0.9 * raw else "gzip"


class Source(Protocol):
    """Where a layer's bytes come from: a LayerSource, or a layer built before (a file)."""

    @property
    def name(self) -> str: ...

    @property
    def media_type(self) -> str: ...

    def raw_size(self) -> int: ...

    def write(self, sink: Callable[[bytes], object]) -> tuple[str, str, int]: ...


@dataclass
class Layer:
    name: str
    digest: str  # sha256 of the (compressed) layer bytes
    diff_id: str  # sha256 of the tar
    size: int
    source: Source

    @property
    def media_type(self) -> str:
        return self.source.media_type

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def describe(source: LayerSource) -> Layer:
    """Digests and size, by writing the layer to nowhere."""
    digest, diff_id, size = source.write(lambda _: None)
    return Layer(source.name, digest, diff_id, size, source)


def build_layer(
    name: str, entries: Iterable[Entry], mtime: int, compression: Compression = "gzip"
) -> Layer:
    items = tuple(sorted(entries, key=lambda e: PurePosixPath(e.path).parts))
    return describe(LayerSource(name, items, mtime, compression))


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
