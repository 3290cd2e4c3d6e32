"""A model layer's files, streamed out of its tar into a staging folder.

Only the record's artifacts are written, each hashed as it lands; nothing is held in memory
but a chunk or two, and nothing is written outside the folder. The tar is read by a parser
of its own (ustar, pax and GNU long names: what `build` and other tools write) rather than
tarfile's stream mode: file data passes on as views of the downloaded chunks, never copied,
and every entry is judged before anything is written: an absolute name, a `..`, a link out
of the layer or onto an artifact, a device or a sparse file is a refusal of the whole layer.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core.errors import PullError
from lepton_ci.core.escape import one_line
from lepton_ci.core.oci_client import LAYER_OCI, LAYER_TAR

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)
_META_MAX = 1 << 20  # a pax header or GNU long name bigger than this is no honest tar's
_OUT_MAX = 4 << 20  # gunzip hands on at most this much at a time (a gzip bomb stays small)
_DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
GZIP_TYPES = (LAYER_OCI, _DOCKER_GZIP)
TAR_TYPES = (LAYER_TAR, _DOCKER_TAR)
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_LINKS = (tarfile.SYMTYPE, tarfile.LNKTYPE)


@dataclass(frozen=True)
class Landed:
    """One artifact written to the staging folder, with the hashes of what was written."""

    name: str  # its path in the record (and under the output folder)
    path: Path  # where it is staged
    size: int
    blake3: str  # `blake3:<hex>`, as the record writes hashes
    sha256: str  # hex, as a signed statement names subjects; "" when not asked for


def layer_bytes(chunks: Iterable[bytes], media_type: str, where: str) -> Iterator[bytes]:
    """The tar stream of a layer blob: gunzipped, or as it is."""
    if media_type in GZIP_TYPES:
        return _gunzip(chunks, where)
    if media_type in TAR_TYPES:
        return iter(chunks)
    raise PullError(
        f"{where}: the model layer is {one_line(media_type) or 'of no media type'}; pull reads the "
        "gzip and plain tar layers `lepton-ci build` writes",
        hint="build the version's image with `lepton-ci build` (the `layers` builder)",
    )


def _gunzip(chunks: Iterable[bytes], where: str) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=31)
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = d.decompress(data, _OUT_MAX)
                if out:
                    yield out
                if d.eof:  # one gzip member ended: another may follow
                    data = d.unused_data
                    if data:
                        d = zlib.decompressobj(wbits=31)
                else:
                    data = d.unconsumed_tail
        tail = d.flush()
        if tail:
            yield tail
    except zlib.error as e:
        raise PullError(f"{where}: the model layer is not valid gzip ({e})") from None
    if not d.eof:
        raise PullError(f"{where}: the model layer's gzip stream ends early")


class _Bytes:
    """Exact reads, and views without copies, over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes], where: str) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")
        self.where = where

    def _fill(self) -> bool:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return False
            self.pending = memoryview(chunk)
        return True

    def views(self, n: int) -> Iterator[memoryview]:
        while n:
            if not self._fill():
                raise PullError(f"{self.where}: the model layer's tar ends in the middle of a file")
            take = self.pending[:n]
            self.pending = self.pending[len(take) :]
            n -= len(take)
            yield take

    def read(self, n: int) -> bytes:
        return b"".join(bytes(v) for v in self.views(n))

    def block(self) -> bytes | None:
        """The next 512-byte header block, or None at the end of the stream."""
        if not self._fill():
            return None
        return self.read(BLOCK)

    def skip(self, n: int) -> None:
        for _ in self.views(n):
            pass


def _pax(data: bytes, where: str) -> dict[str, str]:
    """The records of a pax extended header: `<length> <key>=<value>\\n` each."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        try:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            record = data[space + 1 : pos + length - 1]
        except ValueError:
            raise PullError(f"{where}: the model layer holds a malformed pax header") from None
        if length <= 0:
            raise PullError(f"{where}: the model layer holds a malformed pax header")
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _size(pax: str | None, header: int, where: str) -> int:
    """An entry's size: the pax record's when there is one (files of 8 GiB and more)."""
    if pax is None:
        return header
    if not pax.isdigit():
        raise PullError(f"{where}: the model layer's tar names a size of {pax[:20]!r}")
    return int(pax)


def _padded(size: int) -> int:
    return -size % BLOCK


def _safe_name(name: str, where: str) -> str:
    """An entry name that stays inside the layer, without `./` in front; refused otherwise."""
    clean = name
    while clean.startswith("./"):
        clean = clean[2:]
    parts = clean.split("/")
    if clean.startswith("/") or ".." in parts:
        raise PullError(
            f"{where}: the model layer holds {name!r}, a path outside the folder it would be "
            "written to; nothing was written",
            hint="this layer was not written by `lepton-ci build`: rebuild the version's image",
        )
    return clean.rstrip("/")


def _check_link(name: str, target: str, hard: bool, where: str) -> None:
    """A link's target stays inside the layer (a hard link names an entry, a symbolic one a
    path from its own folder)."""
    joined = target if hard else posixpath.join(posixpath.dirname(name), target)
    resolved = posixpath.normpath(joined)
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise PullError(
            f"{where}: the model layer holds {name!r}, a link to {target!r} outside the folder "
            "it would be written to; nothing was written",
            hint="this layer was not written by `lepton-ci build`: rebuild the version's image",
        )


class Unpacker:
    """Writes the artifacts `wanted` (record name -> hash) found under `root` in the layer's
    tar to `stage`, hashing each as it lands (sha256 too, when `sha256`). An artifact whose
    entry has another size than `sizes` says is refused before a byte of it is written."""

    def __init__(
        self,
        wanted: Mapping[str, str],
        root: str,
        stage: Path,
        *,
        sha256: bool,
        where: str,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.wanted = dict(wanted)
        self.sizes = dict(sizes or {})
        self.prefix = root.strip("/") + "/" if root.strip("/") else ""
        self.stage = stage
        self.sha256 = sha256
        self.where = where
        self.landed: dict[str, Landed] = {}

    def run(self, tar: Iterator[bytes]) -> dict[str, Landed]:
        import blake3

        src = _Bytes(tar, self.where)
        meta: dict[str, str] = {}
        meta_bytes = 0  # of the headers since the last entry: many of them add up in `meta`
        while (header := src.block()) is not None:
            if header == _ZERO_BLOCK:  # the end of the archive
                break
            try:
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise PullError(f"{self.where}: the model layer is not a valid tar ({e})") from None
            if info.size < 0:
                raise PullError(f"{self.where}: the model layer's tar names a negative size")
            if info.type in (
                tarfile.XHDTYPE,
                tarfile.XGLTYPE,
                tarfile.GNUTYPE_LONGNAME,
                tarfile.GNUTYPE_LONGLINK,
            ):
                meta_bytes += info.size
                if meta_bytes > _META_MAX:
                    raise PullError(
                        f"{self.where}: the model layer holds {meta_bytes} bytes of tar "
                        "headers for one entry, too many to be honest"
                    )
                data = src.read(info.size)
                src.skip(_padded(info.size))
                if info.type == tarfile.XHDTYPE:
                    meta.update(_pax(data, self.where))
                elif info.type == tarfile.GNUTYPE_LONGNAME:
                    meta["path"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                elif info.type == tarfile.GNUTYPE_LONGLINK:
                    meta["linkpath"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue  # a global header (XGLTYPE) changes nothing pull reads
            name = meta.get("path", info.name)
            link = meta.get("linkpath", info.linkname)
            size = _size(meta.get("size"), info.size, self.where)
            meta, meta_bytes = {}, 0
            self._entry(src, info.type, name, link, size, blake3.blake3)
        for chunk in tar:  # read to the end: the blob's digest is checked there
            del chunk
        missing = sorted(set(self.wanted) - set(self.landed))
        if missing:
            raise PullError(
                f"{self.where}: the model layer has no {one_line(self.prefix + missing[0])}, an "
                "artifact of the version's record; nothing was written",
                hint="the image was not built from this version: `lepton-ci build --version` it",
            )
        return self.landed

    def _unwritable(self, rel: str, size: int, e: OSError) -> PullError:
        need = sum(self.sizes.values()) or size
        return PullError(
            f"{self.where}: {rel} cannot be written to {self.stage.parent} ({e.strerror}); "
            "nothing was kept",
            hint=f"free space there (the version's files take {need} bytes), or pull into "
            "another folder",
        )

    def _entry(
        self, src: _Bytes, kind: bytes, name: str, link: str, size: int, hasher: type
    ) -> None:
        clean = _safe_name(name, self.where)
        rel = clean[len(self.prefix) :] if clean.startswith(self.prefix) else None
        artifact = rel is not None and rel in self.wanted
        if kind in _LINKS:
            _check_link(clean, link, kind == tarfile.LNKTYPE, self.where)
            if artifact:
                raise PullError(
                    f"{self.where}: {one_line(clean)} is a link in the model layer, not the "
                    "file the record lists; nothing was written",
                    hint="rebuild the version's image with `lepton-ci build`",
                )
            return
        if kind == tarfile.DIRTYPE:
            return
        if kind not in _REGULAR:
            devices = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
            what = (
                "a device or FIFO"
                if kind in devices
                else "a sparse file"
                if kind == tarfile.GNUTYPE_SPARSE
                else f"an entry of tar type {one_line(kind.decode('latin-1'))}, which pull "
                "does not read"
            )
            raise PullError(
                f"{self.where}: the model layer holds {clean!r}, {what}; nothing was written",
                hint="rebuild the version's image with `lepton-ci build`",
            )
        if rel is None or not artifact:
            src.skip(size + _padded(size))
            return
        if rel in self.landed:
            raise PullError(
                f"{self.where}: {one_line(clean)} is twice in the model layer; nothing was written",
                hint="rebuild the version's image with `lepton-ci build`",
            )
        want_size = self.sizes.get(rel)
        if want_size is not None and size != want_size:
            # Judged before writing: a layer (or a gzip bomb in it) that names a file of
            # terabytes must not fill the disk before its hash can be refused.
            raise PullError(
                f"{self.where}: {rel}: the model layer's file is {size} bytes, the version's "
                f"record says {want_size}; refused, nothing was written",
                hint="the image under this tag is not the one built from the version (pushed "
                "over, or tampered with): rebuild it with `lepton-ci build --version`",
            )
        path = self.stage / str(len(self.landed))
        b3 = hasher()
        s2 = hashlib.sha256() if self.sha256 else None
        try:
            f = path.open("wb")
        except OSError as e:
            raise self._unwritable(rel, size, e) from None
        with f:
            for view in src.views(size):
                b3.update(view)
                if s2 is not None:
                    s2.update(view)
                try:
                    f.write(view)
                except OSError as e:  # a full disk, a quota: the user's to fix, not a bug
                    raise self._unwritable(rel, size, e) from None
        src.skip(_padded(size))
        landed = Landed(rel, path, size, f"blake3:{b3.hexdigest()}", s2.hexdigest() if s2 else "")
        self.landed[rel] = landed
        want = self.wanted[rel]
        if landed.blake3 != want:
            raise PullError(
                f"{self.where}: {rel}: the model layer's file has {landed.blake3}, the version's "
                f"record says {want}; refused, nothing was written",
                hint="the image under this tag is not the one built from the version (pushed "
                "over, or tampered with): rebuild it with `lepton-ci build --version`, and find "
                "out who pushed it",
            )
