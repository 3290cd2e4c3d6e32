"""The dependency layer: `image.requirements` installed for the base image's Python.

Wheels only, with pip's cross-install options (`--target --platform --python-version
--implementation cp --abi --only-binary=:all:`): nothing is compiled or run for the image's
platform, so the runner's own Python and architecture do not matter. The packages go to
DEPS_DIR, which the image config puts first on PYTHONPATH: every base's `python3` finds them,
whatever its site-packages is called. Console scripts (`bin/uvicorn`) are left out: pip writes
the runner's interpreter into their `#!` line, a path that does not exist in the image; start
servers as modules (`python3 -m uvicorn ...`). `.pth` files are not run from a PYTHONPATH
directory, so a package that needs one to import does not work from this layer.

The layer is keyed by the requirements' bytes (and the files they include with -r/-c), the
Python version and the platform. A key is built once: the layer's blob is kept in the machine's
cache (`$XDG_CACHE_HOME/lepton-ci/deps/<key>/`, shared by every repository on the machine),
and the image repository gets a tag `lepton-deps-<key>`, a small OCI artifact manifest whose
one layer is the dependency layer, so a fresh clone on another runner finds it in the registry,
installs nothing and uploads nothing. A tag, not a file in the git repository or the run-cache:
it lives where the layer lives, with the same credentials and lifetime, and it keeps the blob
referenced, so a registry's garbage collection cannot remove the layer the key points at.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from lepton_ci.core import atomic
from lepton_ci.core.errors import InputError, LeptonError
from lepton_ci.core.oci_client import LAYER_OCI, MANIFEST_OCI, OCIClient, OCIError, sha256
from lepton_ci.image import layers as oci
from lepton_ci.image.base_probe import Target

DEPS_DIR = "/opt/lepton-ci/site-packages"
LAYER_NAME = "dependencies"
MTIME = 315532800  # 1980-01-01, the zip epoch: the layer's bytes depend on its key alone
KEY_VERSION = 1  # bump when what goes into the layer changes
TAG_PREFIX = "lepton-deps-"
ARTIFACT_TYPE = "application/vnd.dev.lepton-ci.dependencies.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
ANNOTATION = "dev.lepton-ci.deps"
PIECE = 1 << 20  # read and compressed a MiB at a time: memory stays flat in the layer's size
DEFAULT_TIMEOUT = 1800.0  # torch from a slow index takes minutes, not hours
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")


class DepsError(LeptonError):
    """The requirements could not be installed as wheels for the base image's platform."""


# -- the key ---------------------------------------------------------------------------------


def requirement_bytes(path: Path, _depth: int = 0) -> bytes:
    """The file's bytes, then those of the files it includes with -r/-c (relative to it)."""
    data = path.read_bytes()
    if _depth > 8:
        raise InputError(f"{path}: requirements include each other too deeply (a loop?)")
    parts = [data]
    for line in data.decode("utf-8", "replace").splitlines():
        m = _INCLUDE.match(line)
        if m and "://" not in m[1]:
            included = path.parent / m[1]
            if not included.is_file():
                raise InputError(
                    f"{path}: includes {m[1]}, which does not exist",
                    hint="fix the -r/-c line or add the file",
                )
            parts.append(requirement_bytes(included, _depth + 1))
    return b"\0".join(parts)


def layer_key(requirements: bytes, target: Target, installer: str = "pip") -> str:
    """pip's keys are those of the first release; another installer writes other metadata
    (INSTALLER, RECORD), so its layers have keys of their own."""
    parts: list[object] = [
        KEY_VERSION,
        oci.LAYOUT_VERSION,
        DEPS_DIR,
        target.python,
        target.platform,
        hashlib.sha256(requirements).hexdigest(),
    ]
    if installer != "pip":
        parts.append(installer)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def cache_root(env: Mapping[str, str]) -> Path:
    """The machine's layer cache: LEPTON_DEPS_CACHE, else $XDG_CACHE_HOME/lepton-ci/deps."""
    if env.get("LEPTON_DEPS_CACHE"):
        return Path(env["LEPTON_DEPS_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "lepton-ci" / "deps"


# -- where the layer's bytes come from -------------------------------------------------------


@dataclass(frozen=True)
class BlobFile:
    """A layer built before, kept as its compressed blob in the machine cache."""

    name: str
    path: Path
    digest: str
    diff_id: str
    size: int
    media_type: str = LAYER_OCI

    def raw_size(self) -> int:
        return self.size

    def write(self, sink: Callable[[bytes], object]) -> tuple[str, str, int]:
        with self.path.open("rb") as f:
            while chunk := f.read(PIECE):
                sink(chunk)
        return self.digest, self.diff_id, self.size


@dataclass(frozen=True)
class InRegistry:
    """A layer the target repository has already (found by its key's tag): never sent."""

    name: str
    size: int
    media_type: str = LAYER_OCI

    def raw_size(self) -> int:
        return self.size

    def write(self, sink: Callable[[bytes], object]) -> tuple[str, str, int]:
        raise OCIError(
            "the dependency layer vanished from the registry during the build",
            hint="run the build again (it will install the requirements afresh)",
        )


# -- the installer ---------------------------------------------------------------------------


class PipInstaller:
    """pip, run by lepton-ci's own interpreter, installing for another one.

    pip reads its usual configuration (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX,
    ...), so an index, a wheelhouse or credentials are set as for any pip. `env` replaces the
    environment pip runs with (tests hand in a local wheelhouse)."""

    def __init__(
        self,
        python: str | None = None,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        source = self.env if self.env is not None else os.environ
        text = source.get("LEPTON_DEPS_TIMEOUT") or str(DEFAULT_TIMEOUT)
        try:
            self.timeout = timeout or float(text)
        except ValueError:
            raise DepsError(
                f"LEPTON_DEPS_TIMEOUT={text!r} is not a number of seconds",
                hint="set it to e.g. 1800, or unset it",
            ) from None
        self.log = log

    def kind(self, target: Target) -> str:
        """Which tool installs for `target` (part of the layer's key)."""
        return "pip"

    def command(self, requirements: Path, target_dir: Path, target: Target) -> list[str]:
        return [
            self.python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-compile",  # bytecode is compiled afterwards, reproducibly (see compile)
            "--no-warn-script-location",
            "--target",
            str(target_dir),
            *(f"--platform={tag}" for tag in target.platforms()),
            "--python-version",
            target.python,
            "--implementation",
            "cp",
            "--abi",
            target.abi,
            "--only-binary=:all:",
            "--requirement",
            str(requirements),
        ]

    def install(self, requirements: Path, target_dir: Path, target: Target) -> None:
        cmd = self.command(requirements, target_dir, target)
        proc = self._run(cmd, f"installing {requirements.name}")
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            raise _pip_failure(requirements, target, output)
        if output and self.log is not None:
            print(output, file=self.log)

    def compile(self, target_dir: Path, target: Target) -> bool:
        """Bytecode for the image's Python, when this interpreter is that version: without
        it, every container start compiles what it imports (seconds, for torch). Hash-based
        and unchecked, so the bytes depend on the sources alone, not on install times."""
        if self._version() != target.python:
            return False
        cmd = [
            self.python,
            "-m",
            "compileall",
            "-qq",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(target_dir),
            "-p",
            DEPS_DIR,
            str(target_dir),
        ]
        self._run(cmd, "compiling bytecode")  # a file that does not compile stays source
        return True

    def _version(self) -> str:
        if self.python == sys.executable:
            return f"{sys.version_info[0]}.{sys.version_info[1]}"
        code = "import sys; print('%d.%d' % sys.version_info[:2])"
        return self._run([self.python, "-c", code], "asking its version").stdout.strip()

    def _run(self, cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise DepsError(
                f"pip did not finish {what} within {self.timeout:.0f} s",
                hint="check that the package index is reachable (PIP_INDEX_URL, "
                "PIP_FIND_LINKS), or raise LEPTON_DEPS_TIMEOUT",
            ) from None
        except OSError as e:
            raise DepsError(
                f"cannot run {self.python} for {what}: {e.strerror}",
                hint="install lepton-ci in an environment with pip",
            ) from None


_UV_GLIBC = {17, 28, *range(31, 41)}  # the manylinux_2_N uv's --python-platform names


class UvInstaller(PipInstaller):
    """uv's `pip install`, with pip's settings: several times faster than pip for torch.

    uv reads neither pip.conf nor PIP_* variables, so pip's own view of them (`pip config
    list`: files and environment alike) is handed to uv as flags: index-url, extra-index-url,
    find-links, no-index, constraint. Like pip, every index is searched for the best match.
    Platforms uv cannot name (musllinux, an old glibc) are installed by pip."""

    def __init__(
        self,
        uv: str,
        python: str | None = None,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        log: TextIO | None = None,
    ) -> None:
        super().__init__(python, timeout=timeout, env=env, log=log)
        self.uv = uv

    def kind(self, target: Target) -> str:
        return "uv" if _uv_platform(target) else "pip"

    def command(self, requirements: Path, target_dir: Path, target: Target) -> list[str]:
        platform = _uv_platform(target)
        if platform is None:
            return super().command(requirements, target_dir, target)
        return [
            self.uv,
            "pip",
            "install",
            "--quiet",
            "--no-progress",
            "--python",
            self.python,
            "--target",
            str(target_dir),
            "--python-platform",
            platform,
            "--python-version",
            target.python,
            "--only-binary",
            ":all:",
            "--index-strategy",
            "unsafe-best-match",  # pip's rule: the best version over every index
            *self.pip_settings(),
            "--requirement",
            str(requirements),
        ]

    def pip_settings(self) -> list[str]:
        """pip's index settings as uv flags (the environment's over the files')."""
        cmd = [self.python, "-m", "pip", "config", "list"]
        proc = self._run(cmd, "reading pip's configuration")
        values: dict[str, tuple[int, str]] = {}
        rank = {":env:": 2, "install": 1, "global": 0}
        for line in proc.stdout.splitlines():
            name, _, raw = line.partition("=")
            section, _, key = name.partition(".")
            try:
                value = str(ast.literal_eval(raw))
            except (ValueError, SyntaxError):
                continue
            if section in rank and values.get(key, (-1, ""))[0] <= rank[section]:
                values[key] = (rank[section], value)
        flags: list[str] = []
        if values.get("no-index", (0, ""))[1].lower() in {"1", "true", "yes", "on"}:
            flags.append("--no-index")
        for key in ("index-url", "extra-index-url", "find-links", "constraint"):
            for item in values.get(key, (0, ""))[1].split():
                flags += [f"--{key}", item]
        return flags


def _uv_platform(target: Target) -> str | None:
    m = re.fullmatch(r"manylinux_2_(\d+)_(x86_64|aarch64)", target.platform)
    if m is None or int(m[1]) not in _UV_GLIBC:
        return None
    return f"{m[2]}-manylinux_2_{m[1]}"


def default_installer(log: TextIO | None = None) -> PipInstaller:
    """uv when it is installed (LEPTON_UV, which the setup action sets to the uv it used; next
    to this Python; on PATH), else pip; LEPTON_DEPS_INSTALLER=pip asks for pip."""
    if os.environ.get("LEPTON_DEPS_INSTALLER", "").strip().lower() == "pip":
        return PipInstaller(log=log)
    named = os.environ.get("LEPTON_UV", "").strip()
    for candidate in (named, str(Path(sys.executable).parent / "uv")):
        if candidate and Path(candidate).is_file():
            return UvInstaller(candidate, log=log)
    uv = shutil.which("uv")
    return UvInstaller(uv, log=log) if uv else PipInstaller(log=log)


def _pip_failure(requirements: Path, target: Target, output: str) -> DepsError:
    missing = re.search(r"No matching distribution found for (\S+)", output) or re.search(
        r"Because (?:there is no version of )?(\S+?)"
        r"(?: has no usable wheels|(?: and)? you require)",
        output,
    )  # pip's words, then uv's
    if missing:
        spec = missing[1]
        name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]
        offered = re.search(r"\(from versions: ([^)]*)\)", output)
        seen = f" (versions with a wheel for it: {offered[1]})" if offered else ""
        return DepsError(
            f"{requirements}: no wheel of `{spec}` for {target.describe()}{seen}",
            hint=f"the dependency layer installs wheels only: pin a version of {name} that "
            f"publishes a wheel for {target.platform} (or a pure-Python `py3-none-any` one), "
            "build the wheel and point PIP_FIND_LINKS at its directory, or set "
            "`image.python`/`image.platform` (or the base) to one that has wheels",
        )
    if "No module named pip" in output:
        return DepsError(
            "pip is not installed in lepton-ci's environment",
            hint="install pip next to lepton-ci (python -m ensurepip)",
        )
    tail = "\n".join(output.splitlines()[-15:])
    return DepsError(
        f"pip could not install {requirements} for {target.describe()}:\n{tail}",
        hint="fix the requirements file (pins, hashes) or the index settings (PIP_* variables)",
    )


# -- the layer -------------------------------------------------------------------------------


def pythonpath(base_config: dict[str, Any]) -> str:
    """DEPS_DIR first, then whatever PYTHONPATH the base image sets."""
    env = (base_config.get("config") or {}).get("Env") or []
    inherited = [v for k, _, v in (x.partition("=") for x in env) if k == "PYTHONPATH" and v]
    return ":".join([DEPS_DIR, *inherited])


@dataclass
class DepsLayer:
    layer: oci.Layer
    key: str
    target: Target
    tagged: bool  # the registry's tag for the key is known to point at this layer
    cache_entry: Path | None = None  # the machine cache's directory for the key

    def mount(self, client: OCIClient, repo: str) -> None:
        """Borrow the blob from another repository of the registry that was sent it from this
        machine (the cache remembers where), instead of uploading it again."""
        if self.cache_entry is None or client.blob_exists(repo, self.layer.digest):
            return
        for where in _meta(self.cache_entry).get("repos", []):
            registry, _, other = str(where).partition("/")
            same = registry == client.registry and other != repo
            if same and client.mount_blob(repo, self.layer.digest, other):
                return

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.key

    def publish(self, client: OCIClient, repo: str) -> None:
        """Tag the layer by its key in the image's repository, for the next fresh clone."""
        if self.tagged:
            return
        manifest = oci.canonical(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_OCI,
                "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY), "size": 2},
                "layers": [self.layer.descriptor()],
                "annotations": {
                    f"{ANNOTATION}.key": self.key,
                    f"{ANNOTATION}.diff-id": self.layer.diff_id,
                    f"{ANNOTATION}.python": self.target.python,
                    f"{ANNOTATION}.platform": self.target.platform,
                },
            }
        )
        if client.manifest_digest(repo, self.tag) != sha256(manifest):
            if not client.blob_exists(repo, sha256(EMPTY)):
                client.upload_blob(repo, sha256(EMPTY), EMPTY)
            client.put_manifest(repo, self.tag, manifest, MANIFEST_OCI)
        self.tagged = True
        if self.cache_entry is not None:
            meta = _meta(self.cache_entry)
            where = f"{client.registry}/{repo}"
            if meta and where not in meta.setdefault("repos", []):
                meta["repos"] = [*meta["repos"], where][-20:]
                with contextlib.suppress(OSError):  # only a hint for the next build
                    atomic.write_text(self.cache_entry / "layer.json", json.dumps(meta))


def prepare(
    requirements: Path,
    target: Target,
    client: OCIClient,
    repo: str,
    *,
    installer: PipInstaller,
    cache: Path,
    log: TextIO,
) -> DepsLayer:
    """The dependency layer for `requirements`: from the machine cache, else from the
    registry (by its key's tag), else installed now and kept in the cache."""
    if not requirements.is_file():
        raise InputError(
            f"{requirements}: requirements file not found (image.requirements)",
            hint="fix `image.requirements` (a path relative to the model directory)",
        )
    key = layer_key(requirement_bytes(requirements), target, installer.kind(target))
    short = key[:12]
    cached = _cached(cache / key)
    if cached is not None:
        print(f"dependency layer {short}: in the machine cache", file=log)
        layer = oci.Layer(LAYER_NAME, *cached[1:], source=cached[0])
        return DepsLayer(layer, key, target, False, cache / key)
    found = _in_registry(client, repo, key)
    if found is not None:
        print(f"dependency layer {short}: in the registry ({TAG_PREFIX}{short}...)", file=log)
        return DepsLayer(found, key, target, True)
    print(
        f"dependency layer {short}: installing {requirements.name} for {target.describe()}",
        file=log,
    )
    source = _build(requirements, target, installer, cache, key)
    layer = oci.Layer(LAYER_NAME, source.digest, source.diff_id, source.size, source)
    print(f"dependency layer {short}: {source.size / 1e6:.1f} MB", file=log)
    return DepsLayer(layer, key, target, False, cache / key)


def _meta(entry: Path) -> dict[str, Any]:
    try:
        meta = json.loads((entry / "layer.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _cached(entry: Path) -> tuple[BlobFile, str, str, int] | None:
    meta = _meta(entry)
    try:
        blob = entry / "layer.tar.gz"
        if blob.stat().st_size != int(meta["size"]):
            return None
        source = BlobFile(LAYER_NAME, blob, meta["digest"], meta["diff_id"], int(meta["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source, source.digest, source.diff_id, source.size


def _in_registry(client: OCIClient, repo: str, key: str) -> oci.Layer | None:
    if client.manifest_digest(repo, TAG_PREFIX + key) is None:
        return None
    body, _, _ = client.get_manifest(repo, TAG_PREFIX + key)
    try:
        doc = json.loads(body)
        notes: dict[str, Any] = doc.get("annotations") or {}
        (desc,) = doc["layers"]
        digest, size = str(desc["digest"]), int(desc["size"])
        diff_id = str(notes[f"{ANNOTATION}.diff-id"])
    except (ValueError, KeyError, TypeError):
        return None  # not ours, or damaged: build again and replace it
    if notes.get(f"{ANNOTATION}.key") != key or not client.blob_exists(repo, digest):
        return None
    media = str(desc.get("mediaType") or LAYER_OCI)
    return oci.Layer(LAYER_NAME, digest, diff_id, size, InRegistry(LAYER_NAME, size, media))


def _build(
    requirements: Path, target: Target, installer: PipInstaller, cache: Path, key: str
) -> BlobFile:
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=cache))
    try:
        site = work / "site-packages"
        installer.install(requirements, site, target)
        installer.compile(site, target)
        entries = [
            oci.Entry(f"{DEPS_DIR}/{f.relative_to(site).as_posix()}", f)
            for f in sorted(site.rglob("*"))
            # no console scripts (their #! names the runner's Python), no uv's .lock
            if f.is_file() and f.relative_to(site).parts[0] not in {"bin", ".lock"}
        ]
        source = oci.LayerSource(
            LAYER_NAME,
            tuple(sorted(entries, key=lambda e: PurePosixPath(e.path).parts)),
            MTIME,
            "none",  # the tar: compressed below, on every core
        )
        blob = work / "layer.tar.gz"
        with blob.open("wb") as f:
            gz = ParallelGzip(f.write)
            _, diff_id, _ = source.write(gz.write)
            digest, size = gz.close()
        discard(site, cache)  # the blob is what is kept
        atomic.write_text(
            work / "layer.json",
            json.dumps({"digest": digest, "diff_id": diff_id, "size": size}, sort_keys=True),
        )
        entry = cache / key
        try:
            work.rename(entry)
        except OSError:  # another build of the same key got there first: use its layer
            shutil.rmtree(work, ignore_errors=True)
        cached = _cached(entry)
        if cached is None:
            raise DepsError(f"the dependency layer cache {entry} is damaged", hint=f"rm -r {entry}")
        return cached[0]
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


TRASH = ".trash-"
_REMOVER = (
    "import pathlib, shutil, sys\n"
    "for p in pathlib.Path(sys.argv[1]).glob(sys.argv[2] + '*'):\n"
    "    shutil.rmtree(p, ignore_errors=True)\n"
)


def discard(tree: Path, cache: Path) -> None:
    """Delete an installed tree after the build, not during it: unlinking torch's 20,000
    files took 10-15 s of a first build here. The tree is renamed into the cache's trash and
    a detached process removes every tree there (one left by a build that was killed, too)."""
    trash = cache / f"{TRASH}{os.getpid()}-{tree.parent.name}"
    try:
        tree.rename(trash)
        subprocess.Popen(  # our interpreter and script, paths as arguments
            [sys.executable, "-c", _REMOVER, str(cache), TRASH],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this build, and its Ctrl-C
        )
    except OSError:
        shutil.rmtree(trash if trash.exists() else tree, ignore_errors=True)


class ParallelGzip:
    """gzip on every core: the tar is cut into fixed pieces, each compressed as its own gzip
    member (RFC 1952 allows a file of several; Go's, zlib's and Python's readers, so Docker,
    containerd, podman and CRI-O, read them as one stream). Fixed cuts keep the bytes a
    function of the input; zlib releases the GIL, so threads are enough. Level 1: a layer of
    torch compresses five times faster than at level 6 for 12% more bytes, sent once per key.
    Memory: a few pieces in flight."""

    def __init__(self, sink: Callable[[bytes], object], level: int = 1) -> None:
        self.sink = sink
        self.level = level
        self.workers = max(os.cpu_count() or 1, 1)
        self.pool = ThreadPoolExecutor(max_workers=self.workers)
        self.pending: list[Any] = []
        self.buffer = bytearray()
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= PIECE:
            self._submit(bytes(self.buffer[:PIECE]))
            del self.buffer[:PIECE]

    def _submit(self, piece: bytes) -> None:
        self.pending.append(self.pool.submit(_gzip_member, piece, self.level))
        while len(self.pending) > 2 * self.workers:
            self._emit(self.pending.pop(0).result())

    def _emit(self, member: bytes) -> None:
        self.h.update(member)
        self.size += len(member)
        self.sink(member)

    def close(self) -> tuple[str, int]:
        """Flush; returns the compressed blob's digest and size."""
        if self.buffer:  # a tar is never empty: it ends with two zero blocks
            self._submit(bytes(self.buffer))
            self.buffer.clear()
        for future in self.pending:
            self._emit(future.result())
        self.pending.clear()
        self.pool.shutdown()
        return "sha256:" + self.h.hexdigest(), self.size


def _gzip_member(data: bytes, level: int) -> bytes:
    """One gzip member with a fixed header (no name, mtime 0, OS unknown)."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + trailer
