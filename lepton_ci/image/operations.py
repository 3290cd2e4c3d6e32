"""Operations behind `build`, `image inspect` and `image retag`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from lepton_ci.core.config import ImageConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import ImageTagTaken, InputError, LeptonError
from lepton_ci.core.gha import Runtime, load_event, pr_number
from lepton_ci.core.hashing import StatCache
from lepton_ci.core.oci_client import (
    MANIFEST_OCI,
    ClientFactory,
    OCIClient,
    OCIError,
    Ref,
    client_factory,
)
from lepton_ci.core.record import Record
from lepton_ci.core.semver import IMAGE_TAG_RE
from lepton_ci.image import engine, release, source
from lepton_ci.image import metadata as imagemeta
from lepton_ci.image.build import BuildResult, DockerfileBuilder, LayersBuilder, image_config
from lepton_ci.report import card


def build(
    ctx: Context,
    model: str,
    *,
    version: str | None = None,
    builder: str | None = None,
    clients: ClientFactory | None = None,
    docker_client: Any = None,
    signing_key: str | None = None,
) -> BuildResult:
    """Build the image of a registered version (or of the last run) from its commit's files
    and its checked artifacts, and tag it as `release` allows. See release.py for the rules.
    With a signer, the image's statement is signed and attached to it in the registry."""
    from lepton_ci.trust import attest
    from lepton_ci.versions import trusted

    if version is not None:
        trusted.require_named(ctx, model, version, f"build of {model} {version}")
    chosen = release.choose(ctx, model, version)
    rec = chosen.rec
    signer = attest.signer_for(ctx, signing_key, f"image of {model}")
    pr = pr_number(load_event(ctx.env))
    # Every tag is formed (and a bad one refused) before a byte goes anywhere.
    tags = imagemeta.tags(
        rec,
        ctx.env,
        pr=pr,
        release=chosen.registered,
        floating=chosen.newest_of_line,
    )
    for note in chosen.notes:
        _note(ctx, note)
    cache_dir = ctx.cfg.cache_dir()
    stat = StatCache(cache_dir / "stat.json")
    old = version is not None and rec.git.sha != ctx.git.head()
    if old:
        _note(ctx, f"building {version} with lepton.yaml as of its commit {rec.git.sha[:7]}")
    with source.checkout(ctx.git, ctx.cfg.path, rec, model, cache_dir=cache_dir, stat=stat) as src:
        image, elsewhere = _image_of(ctx, src, model, version if old else None)
        try:
            clients = clients or client_factory(ctx.env, ctx.rt, image.insecure)
            target = Ref.parse(image.name)
            client = clients(target.registry)
            tags, notes = release.keep_floating_forward(client, target.repository, rec, tags)
            for note in notes:
                _note(ctx, note)
            reuse = release.existing_image(client, target.repository, rec, tags)
            kind = builder or image.kind
            if reuse is not None:
                result = _tag_existing(ctx, client, target, reuse, tags, kind)
            else:
                card_text = card.render_with(
                    rec, src.cfg.card, src.config.root, card.changelog(ctx.git, rec)
                )
                if kind == "dockerfile":
                    if docker_client is None:
                        docker_client = engine.connect(ctx.env)
                    result = DockerfileBuilder(
                        docker_client, clients, host=engine.host_of(ctx.env), cache_dir=cache_dir
                    ).build(src.model_dir, rec, src.cfg, card_text, tags)
                else:
                    b = LayersBuilder(clients, cache_dir=cache_dir)
                    prepared = b.prepare(src.model_dir, rec, src.cfg, card_text, src.git)
                    result = b.perform(prepared, tags)
            if signer is not None:
                tag = _version_tag(model, rec) if chosen.registered else None
                attest.sign_image(ctx, client, result.image, result.digest, rec, tag, signer)
                result.signer = signer.description
            return result
        except OCIError as e:
            if elsewhere is None:
                raise
            raise OCIError(f"{e.message} ({elsewhere[0]})", hint=elsewhere[1]) from None


def _version_tag(model: str, rec: Record) -> str | None:
    from lepton_ci.core.semver import Version
    from lepton_ci.versions.grammar import version_tag

    return (
        version_tag(model, Version.parse(rec.candidate_version)) if rec.candidate_version else None
    )


def _image_of(
    ctx: Context, src: source.Source, model: str, version: str | None
) -> tuple[ImageConfig, tuple[str, str] | None]:
    """The image section of the commit's lepton.yaml. Building an older version (`version`),
    a missing section or another registry than today's is said to come from that commit."""
    if version is None:
        return image_config(src.cfg), None
    rel = src.config.path.relative_to(src.config.root).as_posix()
    fix = (
        "an image is built with its version's own lepton.yaml: commit the `image:` section, "
        "then `lepton-ci run` and `lepton-ci register` a new version to build it"
    )
    if src.cfg.image is None:
        raise LeptonError(
            f"{rel} as of commit {src.short} ({model} {version}) has no `image:` section",
            hint=fix,
        )
    try:
        _, now = ctx.cfg.model(model)
    except LeptonError:
        now = None
    if now is not None and now.image is not None:
        then_reg, now_reg = Ref.parse(src.cfg.image.name), Ref.parse(now.image.name)
        if (then_reg.registry, then_reg.repository) != (now_reg.registry, now_reg.repository):
            said = (
                f"{rel} as of commit {src.short} ({model} {version}) names the image "
                f"{then_reg.registry}/{then_reg.repository}, not today's "
                f"{now_reg.registry}/{now_reg.repository}"
            )
            _note(ctx, f"{said}: pushing there")
            return src.cfg.image, (said, fix)
    return src.cfg.image, None


def _tag_existing(
    ctx: Context, client: OCIClient, target: Ref, digest: str, tags: list[str], kind: str
) -> BuildResult:
    """The registry already has this release's image: point the missing tags at it."""
    repo = target.repository
    body, media, _ = client.get_manifest(repo, digest)
    for tag in tags:
        if client.manifest_digest(repo, tag) != digest:
            client.put_manifest(repo, tag, body, media or MANIFEST_OCI)
    _note(ctx, f"{target.registry}/{repo}@{digest} already holds this release: not rebuilt")
    return BuildResult(image=f"{target.registry}/{repo}", digest=digest, tags=tags, builder=kind)


def _note(ctx: Context, message: str) -> None:
    """A notice in Actions; on a terminal, a line on stderr (stdout may be `--json`)."""
    (ctx.rt if ctx.rt.actions else Runtime(ctx.env, stream=sys.stderr)).notice(message)


@dataclass
class Inspected:
    ref: str
    digest: str
    labels: dict[str, str]
    config: dict[str, Any]
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "labels": self.labels, "ref": self.ref, "size": self.size}


def inspect(ref_text: str, clients: ClientFactory | None = None) -> Inspected:
    ref = Ref.parse(ref_text)
    client = (clients or client_factory(os.environ, None, None))(ref.registry)
    manifest, digest = client.image_manifest(ref.repository, ref.reference)
    config = json.loads(client.get_blob(ref.repository, manifest["config"]["digest"]))
    size = sum(int(layer["size"]) for layer in manifest["layers"])
    labels = (config.get("config") or {}).get("Labels") or {}
    return Inspected(str(ref), digest, labels, config, size)


def summary(i: Inspected) -> str:
    lab = i.labels
    p = imagemeta.PREFIX
    lines = [f"{i.ref}", f"  digest:   {i.digest}", f"  size:     {i.size / 1e6:.1f} MB"]
    if f"{p}.model" not in lab:
        lines.append("  (not built by lepton-ci: no dev.lepton-ci.* labels)")
    else:
        metrics = json.loads(lab.get(f"{p}.metrics") or "{}")
        lines += [
            f"  model:    {lab[f'{p}.model']} {lab.get(f'{p}.version', '')} "
            f"(gates: {lab.get(f'{p}.verdict', '?')})",
            "  metrics:  " + (", ".join(f"{k}={v:.6g}" for k, v in metrics.items()) or "-"),
            f"  baseline: {lab.get(f'{p}.baseline') or '-'}",
            f"  commit:   {lab.get('org.opencontainers.image.revision', '-')}",
            f"  created:  {lab.get('org.opencontainers.image.created', '-')}",
            f"  record:   {lab.get(f'{p}.record-path', '')} ({lab.get(f'{p}.record-digest', '')})",
        ]
    return "\n".join(lines)


def retag(ref_text: str, new_tags: list[str], clients: ClientFactory | None = None) -> str:
    """Point more tags at an existing manifest: promotion never rebuilds. Build's rule holds:
    an immutable tag (`X.Y.Z`, `sha-<short>`) that holds another image is refused, and every
    tag is checked before the first one is written."""
    for tag in new_tags:
        if not IMAGE_TAG_RE.fullmatch(tag):
            raise InputError(
                f"`{tag}` is not a valid image tag: a tag is 1-128 characters of "
                "[A-Za-z0-9_.-], not starting with `.` or `-`",
                hint="e.g. `lepton-ci image retag REF prod` (a version's tag is `1.2.3`, no `v`)",
            )
    ref = Ref.parse(ref_text)
    client = (clients or client_factory(os.environ, None, None))(ref.registry)
    body, media, digest = client.get_manifest(ref.repository, ref.reference)
    if ref.digest and digest != ref.digest:
        raise OCIError(f"{ref}: registry returned {digest}, not the digest asked for")
    held = {tag: client.manifest_digest(ref.repository, tag) for tag in new_tags}
    for tag, now in held.items():
        if now is not None and now != digest and release.immutable(tag):
            raise ImageTagTaken(
                f"image tag {ref.registry}/{ref.repository}:{tag} already holds {now}, not "
                f"{digest}: `{tag}` is immutable, so nothing was tagged",
                hint="a released image is never replaced: tag a mutable name (`prod`, "
                "`staging`) instead; to replace it on purpose, delete the tag in the registry "
                "first",
            )
    for tag, now in held.items():
        if now != digest:
            client.put_manifest(ref.repository, tag, body, media or MANIFEST_OCI)
    return digest
