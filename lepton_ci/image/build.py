"""`lepton-ci build`: the model image, by appending layers (daemonless) or from a Dockerfile.

`layers`: base image from a registry + a dependency layer (`image.requirements`, see deps.py)
+ a code layer + a model layer + a metadata layer (the evidence record and model card at fixed
paths), pushed over the OCI distribution API.
Blobs the registry has are not sent again, so a model-only change uploads the model layer,
the small metadata layer, a config and a manifest. `dockerfile`: the user's Dockerfile through
the Docker Engine API (Docker or podman's compatible socket), then the same metadata on top.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from lepton_ci.core import atomic
from lepton_ci.core.config import ImageConfig, ModelConfig
from lepton_ci.core.errors import LeptonError, RecordError
from lepton_ci.core.git import Git
from lepton_ci.core.hashing import StatCache
from lepton_ci.core.oci_client import MANIFEST_OCI, ClientFactory, OCIError, Ref, sha256
from lepton_ci.core.outputs import BuildOutputs
from lepton_ci.core.record import Record
from lepton_ci.image import base_probe, deps, links
from lepton_ci.image import layers as oci
from lepton_ci.image import metadata as imagemeta
from lepton_ci.image.progress import Progress
from lepton_ci.run import lineage

if TYPE_CHECKING:
    pass


@dataclass
class BuildResult:
    image: str  # repository
    digest: str
    tags: list[str]
    builder: str
    uploaded_bytes: int = 0
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    signer: str | None = None  # who signed the image's statement; None: unsigned

    @property
    def ref(self) -> str:
        return f"{self.image}@{self.digest}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "tags": self.tags,
            "builder": self.builder,
            "uploaded_bytes": self.uploaded_bytes,
            "layers": self.layers,
            "signed_by": self.signer,
        }

    def outputs(self) -> BuildOutputs:
        return BuildOutputs(
            digest=self.digest,
            image=self.image,
            ref=self.ref,
            tags=",".join(self.tags),
            uploaded_bytes=str(self.uploaded_bytes),
        )

    def text(self) -> str:
        signed = f"; signed by {self.signer}" if self.signer else ""
        return (
            f"pushed {self.ref} as {', '.join(self.tags)} ({self.builder} builder, "
            f"{self.uploaded_bytes / 1e6:.2f} MB uploaded{signed})"
        )


@dataclass
class Plan:
    target: Ref
    base: Ref
    base_manifest: dict[str, Any]
    layers: list[oci.Layer | oci.LayerSource]  # a source: digest learnt while uploading
    image_config: Callable[[list[oci.Layer]], bytes]
    annotations: dict[str, str]
    deps: deps.DepsLayer | None = None


def _sorted(entries: list[oci.Entry]) -> tuple[oci.Entry, ...]:
    return tuple(sorted(entries, key=lambda e: PurePosixPath(e.path).parts))


def _entries(root: Path, files: list[Path], prefix: str) -> list[oci.Entry]:
    return [oci.Entry(f"{prefix.rstrip('/')}/{f.relative_to(root).as_posix()}", f) for f in files]


DESCRIBE_BELOW = 64 << 20  # smaller unknown layers are described before upload (cheap)


class LayerIndex:
    """Layer digests by content key, so an unchanged layer is not even tarred again.

    Kept in the run-cache directory (CI persists it); a missing or corrupt index only costs
    one pass over the layer's bytes to describe it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def layer(self, source: oci.LayerSource, stat: StatCache) -> oci.Layer | oci.LayerSource:
        """The layer with its digests, or its source when it is big and unknown: a big layer
        is not read twice, its digest is learnt while it uploads (see `learn`)."""
        key = source.key(stat.hash)
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 3:
            return oci.Layer(source.name, str(hit[0]), str(hit[1]), int(hit[2]), source)
        if source.raw_size() > DESCRIBE_BELOW:
            return source
        return self.learn(key, oci.describe(source))

    def learn(self, key: str, layer: oci.Layer) -> oci.Layer:
        self.entries[key] = [layer.digest, layer.diff_id, layer.size]
        return layer

    def save(self) -> None:
        if self.path is None:
            return
        atomic.write_text(self.path, json.dumps(self.entries, sort_keys=True))


class LayersBuilder:
    def __init__(
        self,
        clients: ClientFactory,
        *,
        cache_dir: Path | None = None,
        progress_stream: Any = None,
        parallel: int = 3,
        installer: deps.PipInstaller | None = None,
        deps_cache: Path | None = None,
    ) -> None:
        self.clients = clients
        self.cache_dir = cache_dir
        self.installer = installer
        self.deps_cache = deps_cache
        self.stat = StatCache(cache_dir / "stat.json" if cache_dir else None)
        self.index = LayerIndex(cache_dir / "layers.json" if cache_dir else None)
        self.progress_stream = progress_stream
        self.parallel = parallel

    def prepare(
        self,
        model_dir: Path,
        rec: Record,
        cfg: ModelConfig,
        card_text: str,
        git: Git | None = None,
    ) -> Plan:
        image = image_config(cfg)
        if image.base is None:
            raise LeptonError("the `layers` builder needs `image.base` in lepton.yaml")
        target, base = Ref.parse(image.name), Ref.parse(image.base)
        base_client = self.clients(base.registry)
        try:
            base_manifest, base_digest = base_client.image_manifest(base.repository, base.reference)
            if base_client.platform_note:  # say which image of a multi-platform base
                print(base_client.platform_note, file=self.progress_stream or sys.stderr)
        except OCIError as e:
            raise OCIError(
                f"base image {image.base} is not available: {e.message}",
                hint="push the base image first, or fix `image.base` in lepton.yaml",
            ) from None
        base_config = json.loads(
            base_client.get_blob(base.repository, base_manifest["config"]["digest"])
        )
        mtime = rec.git.commit_time
        code_files = lineage.expand(
            model_dir, image.files or cfg.code, what="image.files", required=True
        )
        outputs = [model_dir / p for p in sorted(rec.outputs)]
        outputs_set = set(outputs)
        stat = self.stat
        for path in outputs:
            rel = path.relative_to(model_dir).as_posix()
            if not path.is_file() or stat.hash(path) != rec.outputs[rel].hash:
                raise RecordError(
                    f"artifact {path} does not match the evidence record of "
                    f"{rec.model} {rec.candidate_version}",
                    hint="run `lepton-ci run` again (a cache hit restores the artifacts)",
                )
        code = [f for f in code_files if f not in outputs_set]
        links.check_inside(code, model_dir, checked=outputs, what="the code layer")
        # Each layer's mtime is the commit that last changed what it holds, so a layer whose
        # content did not change keeps its digest across commits (and is not uploaded again).
        inputs = [*rec.lineage.code, *rec.lineage.data, *rec.lineage.params_files]
        code_rel = [f.relative_to(model_dir).as_posix() for f in code]
        code_time = _last_change(git, model_dir, code_rel, mtime)
        model_time = _last_change(git, model_dir, inputs, mtime)
        model_entries = _entries(model_dir, outputs, image.workdir)
        compression = image.compression
        if compression == "auto":
            compression = oci.choose_compression(model_entries)
        sources = [
            oci.LayerSource("code", _sorted(_entries(model_dir, code, image.workdir)), code_time),
            oci.LayerSource("model", _sorted(model_entries), model_time, compression),
            oci.LayerSource(
                "metadata",
                _sorted(
                    [
                        oci.Entry(imagemeta.RECORD_PATH, rec.to_json().encode()),
                        oci.Entry(imagemeta.CARD_PATH, card_text.encode()),
                    ]
                ),
                mtime,
            ),
        ]
        layers: list[oci.Layer | oci.LayerSource] = [self.index.layer(src, stat) for src in sources]
        stat.save()
        self.index.save()
        deps_layer = None
        env = dict(image.env)
        if image.requirements:
            log = self.progress_stream or sys.stderr
            target_python = base_probe.target(
                image,
                base_client,
                base.repository,
                base_manifest,
                base_digest,
                base_config,
                self.cache_dir,
            )
            deps_layer = deps.prepare(
                model_dir / image.requirements,
                target_python,
                self.clients(target.registry),
                target.repository,
                installer=self.installer or deps.default_installer(log),
                cache=self.deps_cache or deps.cache_root(os.environ),
                log=log,
            )
            layers.insert(0, deps_layer.layer)  # base, dependencies, code, model, metadata
            env = {"PYTHONPATH": deps.pythonpath(base_config), **env}
        labels = imagemeta.labels(
            rec, image, description=cfg.card.description, license_=cfg.card.license
        )

        def config(done: list[oci.Layer]) -> bytes:
            return oci.canonical(
                oci.image_config(
                    base_config,
                    done,
                    created=imagemeta.created(rec),
                    labels=labels,
                    env={
                        **env,
                        "LEPTON_MODEL": rec.model,
                        "MODEL_VERSION": rec.candidate_version or "",
                    },
                    entrypoint=image.entrypoint,
                    cmd=image.cmd,
                    workdir=image.workdir,
                    ports=image.ports,
                )
            )

        annotations = {k: v for k, v in labels.items() if k.startswith("org.opencontainers")}
        return Plan(target, base, base_manifest, layers, config, annotations, deps_layer)

    def perform(self, plan: Plan, tags: list[str]) -> BuildResult:
        client = self.clients(plan.target.registry)
        repo = plan.target.repository
        start_bytes = client.uploaded_bytes
        report: dict[str, dict[str, Any]] = {}
        for desc in plan.base_manifest["layers"]:
            if client.blob_exists(repo, desc["digest"]):
                continue
            if plan.base.registry == plan.target.registry and client.mount_blob(
                repo, desc["digest"], plan.base.repository
            ):
                continue
            data = self.clients(plan.base.registry).get_blob(plan.base.repository, desc["digest"])
            client.upload_blob(repo, desc["digest"], data)
        if plan.deps is not None:
            plan.deps.mount(client, repo)
        todo = [
            x
            for x in plan.layers
            if isinstance(x, oci.LayerSource) or not client.blob_exists(repo, x.digest)
        ]

        def upload(item: oci.Layer | oci.LayerSource) -> tuple[oci.Layer, int]:
            source = item if isinstance(item, oci.LayerSource) else item.source
            written: list[tuple[str, str, int]] = []

            def produce(write: Callable[[bytes], None]) -> None:
                written.append(source.write(write))

            show = source.raw_size() > 1_000_000  # progress for layers worth watching
            sent = client.upload_blob(
                repo,
                item.digest if isinstance(item, oci.Layer) else (lambda: written[-1][0]),
                produce,
                Progress(f"uploading {source.name} layer", self.progress_stream) if show else None,
                size=item.size if isinstance(item, oci.Layer) else source.raw_size(),
            )
            if isinstance(item, oci.Layer):
                return item, sent
            digest, diff_id, size = written[-1]
            layer = oci.Layer(item.name, digest, diff_id, size, item)
            return self.index.learn(item.key(self.stat.hash), layer), sent

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            uploaded = {layer.name: (layer, sent) for layer, sent in pool.map(upload, todo)}
        self.index.save()
        if plan.deps is not None:
            plan.deps.publish(client, repo)
        layers: list[oci.Layer] = []
        for x in plan.layers:
            if x.name in uploaded:
                layers.append(uploaded[x.name][0])
            elif isinstance(x, oci.Layer):
                layers.append(x)
        for layer in layers:
            report[layer.name] = {
                "digest": layer.digest,
                "size": layer.size,
                "uploaded": uploaded.get(layer.name, (layer, 0))[1],
                "media_type": layer.media_type,
            }
        config = plan.image_config(layers)
        manifest = oci.canonical(
            oci.manifest(
                config,
                [*plan.base_manifest["layers"], *(layer.descriptor() for layer in layers)],
                plan.annotations,
            )
        )
        config_digest = sha256(config)
        if not client.blob_exists(repo, config_digest):
            client.upload_blob(repo, config_digest, config)
        digest = sha256(manifest)
        for tag in tags:
            if client.manifest_digest(repo, tag) != digest:  # a tag already right is left alone
                client.put_manifest(repo, tag, manifest, MANIFEST_OCI)
        return BuildResult(
            image=f"{plan.target.registry}/{repo}",
            digest=digest,
            tags=tags,
            builder="layers",
            uploaded_bytes=client.uploaded_bytes - start_bytes,
            layers=report,
        )


def _last_change(git: Git | None, model_dir: Path, paths: list[str], default: int) -> int:
    if git is None or not paths:
        return default
    out = Git(model_dir).run(["log", "-1", "--format=%ct", "--", *paths], check=False)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else default


def image_config(cfg: ModelConfig) -> ImageConfig:
    if cfg.image is None:
        raise LeptonError(
            "this model has no `image:` section in lepton.yaml",
            hint="add `image: {name: REGISTRY/NAME, base: REGISTRY/BASE:TAG}`",
        )
    return cfg.image


class DockerfileBuilder:
    """Builds through the Docker Engine API; `docker_client` is a docker.DockerClient."""

    def __init__(
        self,
        docker_client: Any,
        clients: ClientFactory,
        *,
        host: str = "",
        cache_dir: Path | None = None,
    ) -> None:
        self.docker = docker_client
        self.clients = clients
        self.host = host or "the Docker Engine API"
        self.stat = StatCache(cache_dir / "stat.json" if cache_dir else None)

    def build(
        self, model_dir: Path, rec: Record, cfg: ModelConfig, card_text: str, tags: list[str]
    ) -> BuildResult:
        import docker.errors

        from lepton_ci.image import engine

        image = image_config(cfg)
        target = Ref.parse(image.name)
        repo = f"{target.registry}/{target.repository}"
        context = (model_dir / image.context).resolve()
        if not (context / image.dockerfile).is_file():
            raise LeptonError(
                f"{context / image.dockerfile}: Dockerfile not found",
                hint="fix `image.dockerfile`/`image.context`, or set `image.base` to use the "
                "`layers` builder",
            )
        check_artifacts(model_dir, rec, self.stat)  # before the engine sees a byte
        labels = imagemeta.labels(
            rec, image, description=cfg.card.description, license_=cfg.card.license
        )
        registry = self.clients(target.registry)
        known = _blobs_under(registry, target.repository, tags)
        pushed: dict[str, int] = {}  # layer id -> bytes, from the engine's progress (Docker)
        try:
            artifacts = [model_dir / rel for rel in rec.outputs]
            with (
                engine.reachable(self.host),
                _context_tar(context, image.dockerfile, artifacts) as tar,
            ):
                built, _ = self.docker.images.build(
                    fileobj=tar,
                    custom_context=True,
                    dockerfile=image.dockerfile,
                    rm=True,
                    labels=labels,
                    buildargs={"MODEL_VERSION": rec.candidate_version or ""},
                )
            # The record and card go on top, so both builders put them at the same paths.
            with engine.reachable(self.host), tempfile.TemporaryDirectory() as d:
                (Path(d) / "record.json").write_text(rec.to_json())
                (Path(d) / "model_card.md").write_text(card_text)
                (Path(d) / "Dockerfile").write_text(
                    f"FROM {built.id}\nCOPY record.json {imagemeta.RECORD_PATH}\n"
                    f"COPY model_card.md {imagemeta.CARD_PATH}\n"
                )
                final, _ = self.docker.images.build(path=d, rm=True, labels=labels)
            digest = ""
            with engine.reachable(self.host):
                for tag in tags:
                    final.tag(repo, tag)
                    for line in self.docker.images.push(repo, tag=tag, stream=True, decode=True):
                        digest = _push_event(line, f"{repo}:{tag}", pushed) or digest
        except docker.errors.BuildError as e:
            tail = "\n".join(str(x.get("stream", x)).rstrip() for x in list(e.build_log)[-8:])
            raise LeptonError(
                f"docker build failed: {e.msg}\n{tail}", hint=f"fix {image.dockerfile}"
            ) from None
        except docker.errors.APIError as e:
            raise LeptonError(
                f"Docker Engine API error at {self.host}: {e.explanation or e}",
                hint="is DOCKER_HOST pointing at a running engine?",
            ) from None
        manifest, pushed_digest = registry.image_manifest(target.repository, tags[0])
        digest = digest or pushed_digest
        if pushed:
            uploaded = sum(pushed.values())
        else:  # podman reports no progress: count what the registry lacked before the push
            blobs = [manifest["config"], *manifest["layers"]]
            uploaded = sum(int(b["size"]) for b in blobs if b["digest"] not in known)
        return BuildResult(
            image=repo, digest=digest, tags=tags, builder="dockerfile", uploaded_bytes=uploaded
        )


def check_artifacts(model_dir: Path, rec: Record, stat: StatCache) -> None:
    """Each artifact of the record is in `model_dir` with the record's bytes."""
    for rel, entry in sorted(rec.outputs.items()):
        path = model_dir / rel
        if not path.is_file() or stat.hash(path) != entry.hash:
            raise RecordError(
                f"artifact {path} does not match the evidence record of "
                f"{rec.model} {rec.candidate_version}",
                hint="run `lepton-ci run` again (a cache hit restores the artifacts)",
            )
    stat.save()


def _blobs_under(client: Any, repo: str, tags: list[str]) -> set[str]:
    """The blobs of the images the registry holds under `tags`: what a push need not send."""
    known: set[str] = set()
    for tag in tags:
        if client.manifest_digest(repo, tag) is None:
            continue
        manifest, _ = client.image_manifest(repo, tag)
        known.update(b["digest"] for b in [manifest["config"], *manifest["layers"]])
    return known


def _push_event(line: dict[str, Any], ref: str, pushed: dict[str, int]) -> str:
    """One line of the engine's push stream: an error raises, progress is counted (Docker
    sends it per layer; podman sends none). Returns the digest when the line names it."""
    if "error" in line:
        raise OCIError(f"push of {ref} failed: {line['error']}")
    detail = line.get("progressDetail") or {}
    if line.get("status") == "Pushing" and line.get("id") and detail.get("current"):
        pushed[line["id"]] = max(pushed.get(line["id"], 0), int(detail["current"]))
    aux = line.get("aux") or {}
    status = str(line.get("status", ""))
    if aux.get("Digest"):
        return str(aux["Digest"])
    if "digest: sha256:" in status:
        return "sha256:" + status.split("digest: sha256:")[1].split()[0]
    return ""


@contextmanager
def _context_tar(
    context: Path, dockerfile: str, artifacts: Iterable[Path] = ()
) -> Iterator[IO[bytes]]:
    """The build context as the engine gets it: `.dockerignore` applied, links followed (the
    artifacts are links to their checked bytes; any other link must stay inside the
    context), the checkout's `.git` left out."""
    from docker.utils.build import exclude_paths

    ignore = context / ".dockerignore"
    patterns = [".git"]
    if ignore.is_file():
        lines = (x.strip() for x in ignore.read_text().splitlines())
        patterns += [x for x in lines if x and not x.startswith("#")]
    paths = sorted(exclude_paths(str(context), patterns, dockerfile=dockerfile))
    links.check_inside(
        (context / rel for rel in paths), context, checked=artifacts, what="the Docker context"
    )
    with tempfile.TemporaryFile() as f:
        with tarfile.open(fileobj=f, mode="w", dereference=True) as tar:
            for rel in paths:
                tar.add(context / rel, arcname=rel, recursive=False)
        f.seek(0)
        yield f
