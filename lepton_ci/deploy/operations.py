"""Operations behind `render`, `deploy`, `rollback` and `history ENV`."""

from __future__ import annotations

from typing import Any

from lepton_ci.core import extras
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.oci_client import Ref
from lepton_ci.deploy import manifests
from lepton_ci.deploy.deployer import Deployer
from lepton_ci.deploy.podman import PodmanCLI, PodmanTarget
from lepton_ci.image.build import client_factory


def deployer(ctx: Context, model: str, env_name: str, api_client: Any = None) -> Deployer:
    """The Deployer for one environment, on the target lepton.yaml names.

    `api_client` lets a caller (a test) hand in its own Kubernetes ApiClient."""
    _, cfg = ctx.cfg.model(model)
    if cfg.deploy is None:
        raise LeptonError(
            f"model {model} has no `deploy:` section in lepton.yaml",
            hint="add `deploy: {environments: {staging: {host_port: 18080}}}`",
        )
    log = ctx.rt.notice
    if cfg.deploy.target == "kubernetes":
        from lepton_ci.deploy import kubernetes as k8s_target

        env = cfg.deploy.environments.get(env_name)
        namespace = env.namespace if env else "default"
        if api_client is None:
            extras.require("deploy")
        api = api_client or k8s_target.api_client_from_env(dict(ctx.env))
        return Deployer(
            model,
            env_name,
            cfg.deploy,
            ctx.cfg.root,
            target=k8s_target.KubernetesTarget(
                api, namespace, field_manager=cfg.deploy.field_manager
            ),
            store=k8s_target.ConfigMapStore(api, namespace, manifests.dns_name(model, env_name)),
            log=log,
        )
    state = ctx.cfg.root / cfg.deploy.state_dir / model.replace("/", "--") / env_name
    target = PodmanTarget(state, PodmanCLI(ctx.env))
    return Deployer(model, env_name, cfg.deploy, ctx.cfg.root, target=target, log=log)


def find_model_for_env(ctx: Context, env_name: str, model: str | None) -> str:
    if model is not None:
        return model
    with_env = [
        n
        for n, m in ctx.cfg.config.models.items()
        if m.deploy and env_name in m.deploy.environments
    ]
    if len(with_env) == 1:
        return with_env[0]
    if not with_env:
        raise LeptonError(
            f"no model deploys to an environment `{env_name}`",
            hint="declare it under `deploy.environments`",
        )
    raise LeptonError(
        f"several models deploy to `{env_name}`: {', '.join(with_env)}",
        hint="choose one with --model",
    )


def release(
    ctx: Context, model: str, *, version: str | None, image: str | None, revision: int = 0
) -> manifests.Release:
    _, cfg = ctx.cfg.model(model)
    rec = ctx.record(model, version)
    if not rec.candidate_version:
        raise LeptonError(f"the record of {model} has no version")
    if image is None:
        if cfg.image is None:
            raise LeptonError("no image to deploy: pass --image REF@DIGEST or add `image:`")
        ref = Ref.parse(f"{cfg.image.name}:{rec.candidate_version.lstrip('v')}")
        client = client_factory(ctx.env, ctx.rt, cfg.image.insecure)(ref.registry)
        digest = client.manifest_digest(ref.repository, ref.reference)
        if digest is None:
            raise LeptonError(
                f"image {ref} not found in the registry",
                hint=f"build it first: `lepton-ci build --model {model}`",
            )
        image = f"{ref.registry}/{ref.repository}@{digest}"
    elif "@sha256:" not in image:
        raise LeptonError(
            f"--image {image} must name a digest (REF@sha256:...)",
            hint="deploys are by digest, so what was checked is what runs",
        )
    return manifests.Release(
        model=model,
        version=rec.candidate_version,
        image=image,
        record_digest=rec.digest(),
        revision=revision,
        run_url=ctx.run_url() or "",
        commit=rec.git.sha,
        who=ctx.env.get("GITHUB_ACTOR") or _git_user(ctx) or ctx.env.get("USER") or "unknown",
    )


def _git_user(ctx: Context) -> str:
    proc = ctx.git.run(["config", "user.name"], check=False)
    return proc.stdout.strip()
