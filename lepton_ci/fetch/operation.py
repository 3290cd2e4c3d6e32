"""`lepton-ci pull MODEL[@vX.Y.Z|@latest|#STAGE]`: a version's model files, fetched from its
image's model layer without a container engine and checked against the version's record.

prepare: which version (the tag registry answers, as for `show`), which image (lepton.yaml's
`image.name` at the version's image tag, or the image given), that the image's labels say it
was built from this version's record, which layer holds the model (the image config's history
names it), and the version's signature when it is signed.
perform: the layer streams from the registry (a download that breaks off resumes with an HTTP
Range request) through gunzip and a tar reader into a staging folder inside DIR, each file
hashed as it lands. Once every file matches the record (and the signed sha256) and the blob
its digest, the files are renamed into DIR and the record is written beside them. On any
failure the staging folder goes, and with it all that was written: DIR holds what it held.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lepton_ci.core import atomic
from lepton_ci.core.errors import PullError, RecordError
from lepton_ci.core.escape import one_line
from lepton_ci.core.hashing import hash_file
from lepton_ci.core.names import in_tag
from lepton_ci.core.oci_client import ClientFactory, OCIClient, Ref, client_factory
from lepton_ci.core.semver import image_tag
from lepton_ci.fetch.unpack import Landed, Unpacker, layer_bytes
from lepton_ci.image import metadata as imagemeta
from lepton_ci.versions import queries, trusted

if TYPE_CHECKING:
    from lepton_ci.core.context import Context
    from lepton_ci.core.record import Record
    from lepton_ci.trust.verify import Verified
    from lepton_ci.versions.registry_state import VersionInfo

RECORD_FILE = "record.json"  # the version's record, written beside its files
STAGE_PREFIX = ".lepton-pull-"
MODEL_LAYER = "lepton-ci: model layer"  # the history entry `build` writes for the model layer
P = imagemeta.PREFIX
_CONFIG_MAX = 16 << 20  # an image config is kB; its history and labels stay far below this


@dataclass
class Pulled:
    """A version's model files in a folder, checked against its record."""

    model: str
    version: str  # v1.2.3
    tag: str
    stages: list[str]
    image: str  # REGISTRY/REPO@sha256:...
    out: Path
    files: dict[str, Path]  # the record's artifact name -> its file in `out`
    record: Record
    signer: str | None  # who signed the version; None: not signed (or not checked)
    downloaded_bytes: int = 0
    seconds: float = 0.0
    reused: bool = False  # `out` already held this version: nothing was downloaded

    @property
    def record_path(self) -> Path:
        return self.out / RECORD_FILE

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "tag": self.tag,
            "stages": self.stages,
            "image": self.image,
            "out": str(self.out),
            "files": {k: str(v) for k, v in sorted(self.files.items())},
            "record": str(self.record_path),
            "signed_by": self.signer,
            "downloaded_bytes": self.downloaded_bytes,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
        }

    def text(self) -> str:
        stages = f" ({', '.join(self.stages)})" if self.stages else ""
        size = sum(e.size for e in self.record.outputs.values())
        checked = f"signed by {self.signer}" if self.signer else "no signature checked"
        if self.reused:
            how = f"already in {self.out}, checked again"
        else:
            how = (
                f"pulled from {self.image} into {self.out} "
                f"({_size_text(self.downloaded_bytes)} in {self.seconds:.1f} s)"
            )
        return (
            f"{self.model} {self.version}{stages}: {how}; {len(self.files)} file(s), "
            f"{_size_text(size)}, each matching the record's hash ({checked}); "
            f"record in {self.record_path}"
        )


def _size_text(n: int) -> str:
    """Bytes for a person: a model of 8 kB is not '0.0 MB' (it read as nothing pulled)."""
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.1f} kB"


@dataclass
class Plan:
    info: VersionInfo
    rec: Record
    stages: list[str]
    client: OCIClient
    repository: str
    image: str  # REGISTRY/REPO@sha256:...
    layer: dict[str, Any]  # the model layer's descriptor
    root: str  # the folder of the image the model files are in (its WorkingDir)
    out: Path
    verified: Verified | None = None


def default_out(env: Mapping[str, str], model: str, version: str) -> Path:
    """Where a pull without a folder goes: the user's cache, one folder per version (a
    version's files never change, so a second pull finds them there)."""
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(cache) / "lepton-ci" / "models" / in_tag(model) / version


class PullOperation:
    def __init__(
        self,
        ctx: Context,
        *,
        clients: ClientFactory | None = None,
        remote: str | None = "origin",
        progress: TextIO | None = None,
    ) -> None:
        self.ctx = ctx
        self.clients = clients
        self.remote = remote
        self.progress = progress

    # -- prepare ---------------------------------------------------------------------------

    def prepare(self, ref: str, out: Path | None = None, image: str | None = None) -> Plan:
        ctx = self.ctx
        shown = queries.show(ctx.git, ref)  # a ref that is none, a version or stage unknown
        info, rec = shown.info, shown.record
        what = f"pull of {info.tag}"
        if rec is None:
            raise RecordError(
                f"{info.tag} carries no evidence record, so there is nothing to check the "
                "model files against; nothing was pulled",
                hint="register versions with `lepton-ci register`",
            )
        _check_names(rec, info.tag)
        out = (out or default_out(ctx.env, rec.model, str(info.version))).absolute()
        verified = trusted.when_signed(ctx, info, rec, what, remote=self.remote)
        target = self._image_ref(rec, str(info.version), image)
        clients = self.clients or client_factory(ctx.env, ctx.rt, self._insecure(rec.model))
        client = clients(target.registry)
        name = f"{target.registry}/{target.repository}"
        if client.manifest_digest(target.repository, target.reference) is None:
            raise PullError(
                f"{what}: image {name}:{target.reference} not found in the registry",
                hint=f"build the version's image: `lepton-ci build --version {info.version}`",
            )
        manifest, digest = client.image_manifest(target.repository, target.reference)
        desc = manifest["config"]
        size = desc.get("size")  # read no further: a config that never ends fills no memory
        limit = size if isinstance(size, int) and 0 < size < _CONFIG_MAX else _CONFIG_MAX
        config = json.loads(client.get_blob(target.repository, desc["digest"], limit))
        _check_labels(config, rec, f"{name}:{target.reference}", info)
        layer = _model_layer(manifest, config, f"{name}:{target.reference}")
        root = (config.get("config") or {}).get("WorkingDir") or self._workdir(rec.model)
        return Plan(
            info,
            rec,
            shown.stages,
            client,
            target.repository,
            f"{name}@{digest}",
            layer,
            root,
            out,
            verified,
        )

    def _image_ref(self, rec: Record, version: str, image: str | None) -> Ref:
        if image:
            ref = Ref.parse(image)
            if ref.tag or ref.digest:
                return ref
            return Ref(ref.registry, ref.repository, image_tag(version))
        _, cfg = self.ctx.cfg.model(rec.model)
        if cfg.image is None:
            raise PullError(
                f"{rec.model} has no `image:` section in {self.ctx.cfg.path.name}, so pull "
                "does not know which image holds its files",
                hint="name the image with --image REGISTRY/REPO (its tag is the version's)",
            )
        ref = Ref.parse(cfg.image.name)
        return Ref(ref.registry, ref.repository, image_tag(version))

    def _insecure(self, model: str) -> bool | None:
        models = self.ctx.cfg.config.models
        image = models[model].image if model in models else None
        return image.insecure if image else None

    def _workdir(self, model: str) -> str:
        models = self.ctx.cfg.config.models
        image = models[model].image if model in models else None
        return image.workdir if image else "/app"

    # -- perform ---------------------------------------------------------------------------

    def perform(self, plan: Plan) -> Pulled:
        started = time.monotonic()
        sha = _signed_sha256(plan)
        pulled = self._pulled(plan)
        if _already_there(plan, sha):
            pulled.reused = True
            return pulled
        _check_in_the_way(plan)
        out, created = _make_dir(plan.out)
        _clear_stale_stages(out)
        stage = out / f"{STAGE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-{_host()}"
        stage.mkdir()
        before = plan.client.downloaded_bytes
        try:
            landed = self._download(plan, stage, bool(sha))
            _check_signed(landed, sha, plan.info.tag)
            with _locked(out):  # files and record of one pull, not a mix of two
                _place(landed, out)
                atomic.write_text(out / RECORD_FILE, plan.rec.to_json())
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only if nothing else landed there meanwhile
            raise
        shutil.rmtree(stage, ignore_errors=True)
        pulled.downloaded_bytes = plan.client.downloaded_bytes - before
        pulled.seconds = time.monotonic() - started
        return pulled

    def _download(self, plan: Plan, stage: Path, sha256: bool) -> dict[str, Landed]:
        from lepton_ci.image.progress import Progress

        size = int(plan.layer.get("size") or 0)
        show = self.progress is not None and size > 1_000_000
        where = f"{plan.image} ({plan.info.tag})"
        chunks = plan.client.blob_chunks(
            plan.repository,
            plan.layer["digest"],
            Progress("downloading model layer", self.progress) if show else None,
            size,
        )
        wanted = {name: e.hash for name, e in plan.rec.outputs.items()}
        sizes = {name: e.size for name, e in plan.rec.outputs.items()}
        unpacker = Unpacker(wanted, plan.root, stage, sha256=sha256, where=where, sizes=sizes)
        with _ahead(chunks) as ahead:
            return unpacker.run(layer_bytes(ahead, plan.layer.get("mediaType", ""), where))

    def _pulled(self, plan: Plan) -> Pulled:
        return Pulled(
            model=plan.rec.model,
            version=str(plan.info.version),
            tag=plan.info.tag,
            stages=plan.stages,
            image=plan.image,
            out=plan.out,
            files={name: plan.out / name for name in sorted(plan.rec.outputs)},
            record=plan.rec,
            signer=plan.verified.signer if plan.verified else None,
        )


def pull(
    ref: str,
    out: str | os.PathLike[str] | None = None,
    *,
    ctx: Context | None = None,
    config: str | None = None,
    image: str | None = None,
    remote: str | None = "origin",
    clients: ClientFactory | None = None,
    progress: TextIO | None = None,
) -> Pulled:
    """Pull a version's model files (MODEL@vX.Y.Z, MODEL@latest, MODEL#STAGE) into `out`
    (default: the user's cache, one folder per version), from the repository lepton.yaml is
    found in (from the current folder up, or `config`)."""
    if ctx is None:
        from lepton_ci.core.context import Context
        from lepton_ci.core.gha import Runtime

        ctx = Context.load(config, rt=Runtime(stream=sys.stderr))
    op = PullOperation(ctx, clients=clients, remote=remote, progress=progress)
    return op.perform(op.prepare(ref, Path(out) if out is not None else None, image))


# -- checks ---------------------------------------------------------------------------------


def _check_names(rec: Record, tag: str) -> None:
    """The record's artifact names are paths inside a folder, hashed with blake3."""
    for name, entry in rec.outputs.items():
        parts = name.split("/")
        bad = any(p in ("", ".", "..") for p in parts)
        if bad or name.startswith("/") or "\\" in name:
            raise PullError(
                f"{tag}: the record lists an artifact {name!r}, which is not a path inside a "
                "folder; nothing was pulled",
                hint="the tag's record was not written by `lepton-ci run`",
            )
        if not entry.hash.startswith("blake3:"):
            raise PullError(
                f"{tag}: the record's hash of {name} is {entry.hash.split(':')[0]}, not blake3; "
                "nothing was pulled",
                hint="the tag's record was not written by `lepton-ci run`",
            )
    if RECORD_FILE in rec.outputs:
        raise PullError(
            f"{tag}: an artifact is called {RECORD_FILE}, the name pull writes the version's "
            "record under; nothing was pulled",
            hint=f"rename the artifact in lepton.yaml's `outputs:` (e.g. model-{RECORD_FILE})",
        )


def _check_labels(config: dict[str, Any], rec: Record, image: str, info: VersionInfo) -> None:
    """The image says it holds this version's artifacts: its model, version and outputs
    digest (a rebuild from another run of the same commit keeps those, not the record's)."""
    labels = (config.get("config") or {}).get("Labels") or {}
    if f"{P}.model" not in labels:
        raise PullError(
            f"{image} was not built by lepton-ci (it has no {P}.model label); nothing was pulled",
            hint=f"build the version's image: `lepton-ci build --version {info.version}`",
        )
    have = (labels.get(f"{P}.model"), labels.get(f"{P}.version") or "")
    want = (rec.model, rec.candidate_version or "")
    if have != want or labels.get(f"{P}.outputs-digest") != imagemeta.outputs_digest(rec):
        held = f"{one_line(have[0])} {one_line(have[1]) or '(no version)'}"  # the image's words
        raise PullError(
            f"{image} holds an image of {held} with other artifacts than {info.tag}'s record "
            f"(outputs digest {one_line(str(labels.get(f'{P}.outputs-digest'))[:19])}.., "
            "the record's "
            f"{imagemeta.outputs_digest(rec)[:19]}..); nothing was pulled",
            hint=f"build the version's image: `lepton-ci build --version {info.version}`",
        )


def _model_layer(manifest: dict[str, Any], config: dict[str, Any], image: str) -> dict[str, Any]:
    """The descriptor of the layer `build` wrote the model files to. The config's history
    ends with one entry per layer build appended, in the manifest's order."""
    layers = manifest.get("layers") or []
    history = config.get("history") or []
    for back in range(1, min(len(history), len(layers)) + 1):
        entry = history[-back]
        if entry.get("empty_layer"):
            break  # build's own entries are never empty: this is the base's history
        if entry.get("created_by") == MODEL_LAYER:
            return dict(layers[-back])
    raise PullError(
        f"{image} has no model layer (no history entry `{MODEL_LAYER}`): it was built by the "
        "`dockerfile` builder or by hand, and its model files are not in a layer of their own",
        hint="build the image with the `layers` builder (`image.base` in lepton.yaml)",
    )


def _signed_sha256(plan: Plan) -> dict[str, str]:
    """artifact name -> the sha256 the version's signed statement names, for a signed one."""
    st = plan.verified.statement if plan.verified else None
    if st is None:
        return {}
    return {s.name: s.sha256 or "" for s in st.subjects}


def _check_signed(landed: dict[str, Landed], sha: dict[str, str], tag: str) -> None:
    for name, file in sorted(landed.items()):
        if sha and file.sha256 != sha.get(name):
            raise PullError(
                f"{tag}: {name}: the model layer's file has sha256 {file.sha256}, the signed "
                f"statement says {sha.get(name) or 'nothing'}; refused, nothing was written",
                hint="the image under this tag is not the one built from the signed version: "
                "rebuild it with `lepton-ci build --version`",
            )


def _already_there(plan: Plan, sha: dict[str, str]) -> bool:
    """`out` holds this version already: its record, and every file with the record's hash
    (and the signed sha256)."""
    from lepton_ci.core.record import parse, read_text

    path = plan.out / RECORD_FILE
    try:
        if not path.is_file() or parse(read_text(path), str(path)).digest() != plan.rec.digest():
            return False
    except (RecordError, OSError):
        return False
    for name, entry in plan.rec.outputs.items():
        file = plan.out / name
        if not file.is_file() or file.is_symlink() or hash_file(file) != entry.hash:
            return False
        if sha:
            from lepton_ci.trust.statement import sha256_file

            if sha256_file(file) != sha.get(name):
                return False
    return True


# -- the folder -----------------------------------------------------------------------------


def _check_in_the_way(plan: Plan) -> None:
    """A file at an artifact's path (or at record.json) that no earlier pull put there is
    the user's: `--out .` in the clone must not replace the model `run` just trained, nor
    `--out ~` a file of the same name. An earlier pull's files (its record.json lists them)
    and files that already hold the record's bytes are replaced; others are a refusal,
    before a byte is downloaded."""
    from lepton_ci.core.record import parse, read_text

    if not plan.out.is_dir():
        return
    record = plan.out / RECORD_FILE
    earlier: set[str] = set()
    blocking: list[str] = []
    if record.exists() or record.is_symlink():
        try:
            earlier = set(parse(read_text(record), str(record)).outputs)
        except (RecordError, OSError, ValueError):
            blocking.append(RECORD_FILE)
    for name, entry in sorted(plan.rec.outputs.items()):
        file = plan.out / name
        if name in earlier or not (file.exists() or file.is_symlink()):
            continue
        if file.is_file() and not file.is_symlink() and hash_file(file) == entry.hash:
            continue
        blocking.append(name)
    if blocking:
        raise PullError(
            f"{plan.out} holds {', '.join(blocking)}, which no earlier pull put there; "
            "pull would replace it, so nothing was pulled",
            hint=f"pull into a new or empty folder, or remove {blocking[0]} if it can go",
        )


def _make_dir(out: Path) -> tuple[Path, bool]:
    if out.exists() and not out.is_dir():
        raise PullError(
            f"{out} is not a folder; nothing was pulled", hint="name a folder (new or not)"
        )
    if out.is_symlink() and not out.exists():
        raise PullError(
            f"{out} is a link to {out.readlink()}, which does not exist; nothing was pulled",
            hint="make the folder it points to, or name another folder",
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PullError(
            f"{out}: cannot make the folder ({e.strerror}); nothing was pulled"
        ) from None
    return out, created


def _clear_stale_stages(out: Path) -> None:
    """Staging folders a pull that was killed (SIGKILL: no cleanup ran) left behind. Only
    this host's: on a disk shared by pods or machines, another's pull (its process id
    means nothing here) may be downloading into its staging folder right now."""
    for old in out.glob(f"{STAGE_PREFIX}*"):
        pid, _, rest = old.name.removeprefix(STAGE_PREFIX).partition("-")
        host = rest.partition("-")[2]
        if host not in ("", _host()):
            continue
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _host() -> str:
    import socket

    return socket.gethostname().replace("/", "_") or "localhost"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _place(landed: dict[str, Landed], out: Path) -> None:
    """Rename the staged files into `out`, each under its record name; every target is
    checked first (inside `out`, not a folder), so a refusal leaves `out` as it was."""
    root = out.resolve()
    targets: dict[str, Path] = {}
    for name in landed:
        target = out / name
        resolved = target.resolve()
        if not resolved.is_relative_to(root):
            raise PullError(
                f"{out}: {name} would be written to {resolved}, outside the folder (a "
                "link in the way); nothing was written",
                hint="remove the link, or pull into another folder",
            )
        folder = target.parent
        while folder != out and not folder.is_dir():
            if folder.exists() or folder.is_symlink():  # a file where a folder must go
                raise PullError(
                    f"{out}: {name} would go into {folder}, a file; nothing was written",
                    hint="remove it, or pull into another folder",
                )
            folder = folder.parent
        if target.is_dir() and not target.is_symlink():
            raise PullError(
                f"{out}: {name} is a folder there; nothing was written",
                hint="remove it, or pull into another folder",
            )
        targets[name] = target
    for name, file in landed.items():
        targets[name].parent.mkdir(parents=True, exist_ok=True)
        file.path.replace(targets[name])


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """The folder held by this pull while its files are renamed in and its record written:
    two pulls into one folder (two jobs on a shared disk, a stage pulled as it moves) each
    leave their files with their own record, never one's files under the other's record.
    A lock on the folder itself, so nothing is left in it."""
    import fcntl

    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _ahead(chunks: Iterator[bytes], depth: int = 8) -> Iterator[Iterator[bytes]]:
    """`chunks` drawn by a thread of its own, up to `depth` ahead: the download and its
    sha256 go on beside the tar reading, hashing and writing (each releases the GIL), so a
    pull uses both of a runner's cores. A failure in the thread is raised where the chunks
    are read; leaving the block stops the thread."""
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    break
            else:
                put(done)
        except BaseException as e:  # handed to the reading thread, which raises it
            put(e)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def read() -> Iterator[bytes]:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    worker = threading.Thread(target=run, name="pull-download", daemon=True)
    worker.start()
    try:
        yield read()
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        # The thread only reads the network: the files are cleaned up without it, so a stop
        # (a cancelled job has seconds before SIGKILL) does not wait for a stalled registry.
        worker.join(timeout=2)
