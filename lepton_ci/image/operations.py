"""Operations behind `build`, `image inspect` and `image retag`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from lepton_ci.core.context import Context
from lepton_ci.core.gha import Runtime, load_event
from lepton_ci.core.hashing import StatCache
from lepton_ci.core.oci_client import (
    MANIFEST_OCI,
    ClientFactory,
    OCIClient,
    OCIError,
    Ref,
    client_factory,
)
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
) -> BuildResult:
    """Build the image of a registered version (or of the last run) from its commit's files
    and its checked artifacts, and tag it as `release` allows. See release.py for the rules."""
    chosen = release.choose(ctx, model, version)
    rec = chosen.rec
    pr = (load_event(ctx.env).get("pull_request") or {}).get("number")
    # Every tag is formed (and a bad one refused) before a byte goes anywhere.
    tags = imagemeta.tags(
        rec,
        ctx.env,
        pr=pr if isinstance(pr, int) else None,
        release=chosen.registered,
        floating=chosen.newest_of_line,
    )
    for note in chosen.notes:
        _note(ctx, note)
    cache_dir = ctx.cfg.cache_dir()
    stat = StatCache(cache_dir / "stat.json")
    with source.checkout(ctx.git, ctx.cfg.path, rec, model, cache_dir=cache_dir, stat=stat) as src:
        image = image_config(src.cfg)
        clients = clients or client_factory(ctx.env, ctx.rt, image.insecure)
        target = Ref.parse(image.name)
        client = clients(target.registry)
        reuse = release.existing_image(client, target.repository, rec, tags)
        kind = builder or image.kind
        if reuse is not None:
            return _tag_existing(ctx, client, target, reuse, tags, kind)
        card_text = card.render_with(
            rec, src.cfg.card, src.config.root, card.changelog(ctx.git, rec)
        )
        if kind == "dockerfile":
            if docker_client is None:
                docker_client = engine.connect(ctx.env)
            return DockerfileBuilder(
                docker_client, clients, host=engine.host_of(ctx.env), cache_dir=cache_dir
            ).build(src.model_dir, rec, src.cfg, card_text, tags)
        b = LayersBuilder(clients, cache_dir=cache_dir)
        return b.perform(b.prepare(src.model_dir, rec, src.cfg, card_text, src.git), tags)


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
    """Point more tags at an existing manifest: promotion never rebuilds."""
    ref = Ref.parse(ref_text)
    client = (clients or client_factory(os.environ, None, None))(ref.registry)
    body, media, digest = client.get_manifest(ref.repository, ref.reference)
    if ref.digest and digest != ref.digest:
        raise OCIError(f"{ref}: registry returned {digest}, not the digest asked for")
    for tag in new_tags:
        client.put_manifest(ref.repository, tag, body, media or MANIFEST_OCI)
    return digest
