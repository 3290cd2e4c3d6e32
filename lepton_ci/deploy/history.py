"""A deploy environment's history as a soak rule reads it: where the PROTECTED policy says it
lives (its `target`, `state_dir`, `namespace`), never where the working tree's lepton.yaml
points, so a branch cannot point the rule at revision files it committed itself.

A history that cannot be read is a refusal that says what to configure, never a pass.
"""

from __future__ import annotations

import dataclasses

from lepton_ci.core.config import LoadedConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.revisions import Revision
from lepton_ci.deploy.operations import deployer
from lepton_ci.versions.protected import Policy, short
from lepton_ci.versions.soak import Reader, SoakRefused


def reader(ctx: Context, api_client: object = None) -> Reader:
    """What `promote` and `accept-tag` read a soak rule's evidence with (`history=`)."""
    return lambda policy, model, env_name: read(ctx, policy, model, env_name, api_client)


def read(
    ctx: Context, policy: Policy, model: str, env_name: str, api_client: object = None
) -> list[Revision]:
    """The revision history of `env_name`, where the protected config says it lives.
    Raises SoakRefused saying what to configure when it cannot be read."""
    where = policy.where
    cfg = policy.config
    if cfg is None:  # pragma: no cover - every Policy from protected.load carries it
        raise SoakRefused("the protected policy's lepton.yaml was not read")
    model_cfg = cfg.models.get(model)
    deploy = model_cfg.deploy if model_cfg is not None else None
    if deploy is None or env_name not in deploy.environments:
        raise SoakRefused(
            f"the soak rule reads the deploy history of `{env_name}`, but {model} declares no "
            f"deploy environment `{env_name}` on {where}",
            hint=f"declare `deploy.environments.{env_name}` for {model} on {short(policy.ref)} "
            "(a stage deploys to the environment of the same name), or drop `soak`, "
            "`no_breach` and `min_requests` from the rule",
        )
    there = dataclasses.replace(ctx, cfg=LoadedConfig(cfg, ctx.cfg.path))
    target = deploy.target
    namespace = deploy.environments[env_name].namespace
    try:
        dep = deployer(there, model, env_name, api_client)
        if target != "kubernetes":
            state = ctx.paths.deploy_state(deploy.state_dir, model, env_name)
            if not state.is_dir():
                raise SoakRefused(
                    f"no deploy history of `{env_name}` on this machine ({state} does not "
                    "exist), so the soak rule cannot be judged",
                    hint=f"run the promotion where `{env_name}` is deployed (its podman state "
                    "lives on that machine), or deploy to Kubernetes, where the history is "
                    "kept in the cluster",
                )
        return dep.history()
    except SoakRefused:
        raise
    except LeptonError as e:
        raise SoakRefused(
            f"cannot read the deploy history of `{env_name}` ({e.message}), so the soak rule "
            "cannot be judged; nothing is promoted",
            hint=_access_hint(target, env_name, namespace),
        ) from None
    except Exception as e:  # an API error, a missing package: a refusal, never a pass
        raise SoakRefused(
            f"cannot read the deploy history of `{env_name}` ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}), so the soak rule cannot "
            "be judged; nothing is promoted",
            hint=_access_hint(target, env_name, namespace),
        ) from None


def _access_hint(target: str, env_name: str, namespace: str) -> str:
    if target == "kubernetes":
        return (
            f"give this job read access to the ConfigMaps of namespace `{namespace}` (where "
            f"`{env_name}`'s revisions are kept): KUBECONFIG, or a service account, and "
            "install lepton-ci[deploy]"
        )
    return f"run the promotion on the machine that deploys `{env_name}`"
