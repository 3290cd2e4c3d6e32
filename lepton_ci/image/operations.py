"""Operations behind `build`, `image inspect` and `image retag`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from lepton_ci.core import extras
from lepton_ci.core.context import Context
from lepton_ci.core.gha import load_event
from lepton_ci.core.oci_client import MANIFEST_OCI, ClientFactory, OCIError, Ref, client_factory
from lepton_ci.image import metadata as imagemeta
from lepton_ci.image.build import BuildResult, DockerfileBuilder, LayersBuilder, image_config
from lepton_ci.report import card
from lepton_ci.versions import evidence


def build(
    ctx: Context,
    model: str,
    *,
    version: str | None = None,
    builder: str | None = None,
    clients: ClientFactory | None = None,
    docker_client: Any = None,
) -> BuildResult:
    _, cfg = ctx.cfg.model(model)
    image = image_config(cfg)
    rec = evidence.load(ctx, model, version)
    pr = (load_event(ctx.env).get("pull_request") or {}).get("number")
    tags = imagemeta.tags(rec, ctx.env, pr=pr if isinstance(pr, int) else None)
    card_text = card.render(ctx, rec)
    clients = clients or client_factory(ctx.env, ctx.rt, image.insecure)
    model_dir = ctx.cfg.model_dir(cfg)
    kind = builder or image.kind
    if kind == "dockerfile":
        if docker_client is None:
            extras.require("image")
            import docker  # heavy: only the dockerfile builder imports it

            docker_client = docker.DockerClient(
                base_url=ctx.env.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
                timeout=300,
            )
        return DockerfileBuilder(docker_client, clients).build(model_dir, rec, cfg, card_text, tags)
    b = LayersBuilder(clients, cache_dir=ctx.cfg.cache_dir())
    return b.perform(b.prepare(model_dir, rec, cfg, card_text, ctx.git), tags)


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
