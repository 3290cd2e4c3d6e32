"""Kubernetes manifests for one environment, rendered from templates/k8s/ and the user's own.

Every object carries labels naming the model, version and revision, and annotations with the
record digest, image digest and the deploying run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core import templating
from lepton_ci.core.config import DeployConfig, DeployEnvironment
from lepton_ci.core.errors import ConfigError
from lepton_ci.deploy import observability, schemas

TEMPLATES = (
    "deployment.yaml.j2",
    "service.yaml.j2",
    "servicemonitor.yaml.j2",
    "hpa.yaml.j2",
    "prometheusrule.yaml.j2",
    "dashboard.yaml.j2",
    "httproute.yaml.j2",
)
PREFIX = "dev.lepton-ci"
# Rollouts on Kubernetes. `traffic: replicas`: both tracks' pods carry this label (the stable
# Deployment's name) and the one Service selects on it; the Deployments' own selectors stay
# apart (instance differs), as two controllers must never claim the same pods.
SERVICE_LABEL = f"{PREFIX}/service"
# `traffic: gateway`: requests with this header, or under this path prefix (rewritten to `/`),
# always reach the candidate: the deploy checks and a person's curl target it alone through
# the address clients use.
TRACK_HEADER = "x-lepton-track"
CANARY_PATH = "/lepton-canary"


@dataclass(frozen=True)
class Release:
    model: str
    version: str
    image: str  # repository@sha256:...
    record_digest: str
    revision: int
    run_url: str = ""
    who: str = ""
    commit: str = ""
    track: str = "stable"  # `canary`: the candidate beside the serving revision (rollouts)


CANARY_SUFFIX = "-canary"


def canary_name(name: str) -> str:
    """The candidate's object name beside the serving one called `name`."""
    return name[: 63 - len(CANARY_SUFFIX)].rstrip("-") + CANARY_SUFFIX


def object_names(model: str, env_name: str, env: DeployEnvironment) -> set[str]:
    """The object names an environment on Kubernetes uses: its own, and its candidate's when
    its rollouts run one."""
    stable = dns_name(model, env_name)
    return {stable} if env.rollout.strategy == "all-at-once" else {stable, canary_name(stable)}


def check_names(deploys: dict[str, DeployConfig], model: str, env_name: str) -> None:
    """Refuse an environment whose objects would be named like another's in its namespace:
    `digits` `prod`'s candidate and `digits` `prod-canary` are both `digits-prod-canary`, and
    names are cut at 63 characters. Each would apply over the other's objects, and removing a
    candidate deletes every object labelled with its name, the other environment's too."""
    env = deploys[model].environments[env_name]
    mine = object_names(model, env_name, env)
    for other_model, deploy in deploys.items():
        if deploy.target != "kubernetes":
            continue
        for other_env, o in deploy.environments.items():
            if (other_model, other_env) == (model, env_name) or o.namespace != env.namespace:
                continue
            shared = mine & object_names(other_model, other_env, o)
            if shared:
                raise ConfigError(
                    f"deploy.environments.{env_name} of {model} and deploy.environments."
                    f"{other_env} of {other_model} would both name objects "
                    f"`{sorted(shared)[0]}` in namespace {env.namespace}: each would apply "
                    "over, and prune, the other's",
                    hint="rename one environment, or give it its own `namespace`",
                )


def traffic(env: DeployEnvironment, deploy: DeployConfig) -> str | None:
    """How a Kubernetes rollout splits requests (`gateway`, `replicas`), None when the
    environment replaces its revision all at once (or runs on podman, whose splitter is nginx)."""
    if deploy.target != "kubernetes" or env.rollout.strategy == "all-at-once":
        return None
    return env.rollout.traffic


def route_rules(name: str, percent: int = 0, *, mirror: bool = False) -> list[dict[str, Any]]:
    """The HTTPRoute rules of the environment `name`: its Service alone, or beside the
    candidate's (`percent` of the requests by weight, or with `mirror` a copy of each), plus
    the rules that reach the candidate alone. Shared by the templates and the target."""

    def ref(service: str, weight: int | None = None) -> dict[str, Any]:
        return {"name": service, "port": 80, **({} if weight is None else {"weight": weight})}

    if not 0 <= percent <= 100:
        raise ValueError(f"a weight is a percentage (0-100), not {percent}")
    canary = canary_name(name)
    if percent == 0 and not mirror:
        return [{"backendRefs": [ref(name, 100)]}]
    split: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [ref(name, 100 - percent), ref(canary, percent)],
    }
    if mirror:
        split["backendRefs"] = [ref(name, 100)]
        split["filters"] = [{"type": "RequestMirror", "requestMirror": {"backendRef": ref(canary)}}]
    return [
        {
            "matches": [{"headers": [{"type": "Exact", "name": TRACK_HEADER, "value": "canary"}]}],
            "backendRefs": [ref(canary)],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": CANARY_PATH}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ],
            "backendRefs": [ref(canary)],
        },
        split,
    ]


def replica_split(replicas: int, percent: int) -> tuple[int, int, int]:
    """`traffic: replicas`: (stable pods, candidate pods, the candidate's share in percent)
    for a step of `percent`. One Service spreads requests evenly over the ready pods, so a
    share is a ratio of pod counts. The rule: up to 50 % the serving revision keeps its
    `replicas` pods and the candidate gets replicas * p / (100 - p) of its own (rounded half
    up), at
    least 1 and at most `replicas`; above 50 % the roles swap (the candidate has `replicas`,
    the serving one replicas * (100 - p) / p, at least 1); at 100 % the candidate has
    them all. The share said is what those counts give: replicas 4 at 10 % is 1 of 5 pods,
    20 %. Capacity never drops below `replicas` and never exceeds twice it."""
    n = max(replicas, 1)
    if percent <= 0:
        return n, 0, 0
    if percent >= 100:
        return 0, n, 100
    if percent <= 50:
        stable, canary = n, min(n, max(1, _half_up(n * percent / (100 - percent))))
    else:
        stable, canary = min(n, max(1, _half_up(n * (100 - percent) / percent))), n
    return stable, canary, _half_up(100 * canary / (stable + canary))


def _half_up(x: float) -> int:
    return int(x + 0.5)


def dns_name(*parts: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-")


def _label_value(value: str) -> str:
    v = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return v.strip("-._")


def render(
    env_name: str, env: DeployEnvironment, deploy: DeployConfig, release: Release, root: Path
) -> str:
    stable_name = dns_name(release.model, env_name)
    name = canary_name(stable_name) if release.track == "canary" else stable_name
    split = traffic(env, deploy)
    _check_rollout(env_name, env, split)
    selector = {
        "app.kubernetes.io/name": _label_value(release.model),
        "app.kubernetes.io/instance": name,
    }
    labels = {
        **selector,
        "app.kubernetes.io/version": _label_value(release.version),
        "app.kubernetes.io/managed-by": "lepton-ci",
        f"{PREFIX}/environment": env_name,
        f"{PREFIX}/revision": str(release.revision),
        f"{PREFIX}/track": release.track,
    }
    annotations = {
        f"{PREFIX}/model": release.model,
        f"{PREFIX}/version": release.version,
        f"{PREFIX}/image": release.image,
        f"{PREFIX}/record-digest": release.record_digest,
        f"{PREFIX}/run-url": release.run_url,
        f"{PREFIX}/deployed-by": release.who,
    }
    container_env = [
        {"name": k, "value": v}
        for k, v in sorted(
            {
                "PORT": str(env.port),
                "MODEL_VERSION": release.version,
                **env.env,
            }.items()
        )
    ]
    pod_labels = {
        **selector,
        **{k: v for k, v in labels.items() if k.endswith(("/version", "/revision", "/track"))},
    }
    service_selector = selector
    if split == "replicas":
        pod_labels[SERVICE_LABEL] = stable_name
        service_selector = {"app.kubernetes.io/name": selector["app.kubernetes.io/name"]}
        service_selector[SERVICE_LABEL] = stable_name
    context: dict[str, Any] = {
        "name": name,
        "env": env,
        "env_name": env_name,
        "release": release,
        "track": release.track,
        "labels": labels,
        "selector": selector,
        "pod_labels": pod_labels,
        # rollouts (kubernetes): `gateway` or `replicas`, else None (all at once: as before)
        "traffic": split,
        "stable_name": stable_name,
        "service_selector": service_selector,
        "route": _route(env, stable_name, env_name) if split == "gateway" else {},
        # the candidate's render carries the route too (created only where none exists yet,
        # see KubernetesTarget.apply_canary), labelled as the serving revision's object
        "route_labels": {
            **{k: v for k, v in labels.items() if not k.endswith(("/version", "/revision"))},
            "app.kubernetes.io/instance": stable_name,
            f"{PREFIX}/track": "stable",
        },
        "annotations": annotations,
        "container_env": container_env,
        "progress_deadline": env.progress_deadline_seconds(),
        "values": env.values,
        **_observability(release.model, env_name, name, env),
    }
    user_dir = (root / deploy.templates) if deploy.templates else None
    names = list(TEMPLATES)
    if user_dir is not None:
        if not user_dir.is_dir():
            raise ConfigError(
                f"deploy templates directory {user_dir} not found",
                hint="fix `deploy.templates` in lepton.yaml",
            )
        names += sorted(p.name for p in user_dir.glob("*.yaml.j2") if p.name not in names)
    docs = []
    for t in names:
        overridden = user_dir is not None and (user_dir / t).is_file()
        text = templating.render(
            t if overridden else f"k8s/{t}", context, user_dir=user_dir, yaml_output=True
        )
        if not text.strip():
            continue
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(
                f"template {t} rendered invalid YAML: {e}", hint="fix the template"
            ) from e
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ConfigError(f"template {t} did not render a Kubernetes object")
        if user_dir is not None and (user_dir / t).is_file():
            schemas.check(doc, user_dir / t)
        docs.append(yaml.safe_dump(doc, sort_keys=False))
    return "---\n".join(docs)


def _check_rollout(env_name: str, env: DeployEnvironment, split: str | None) -> None:
    """Refuse a rollout the cluster cannot carry out, before anything is applied."""
    where = f"deploy.environments.{env_name}.rollout"
    if split == "gateway" and env.rollout.gateway is None:
        raise ConfigError(
            f"{where}: `traffic: gateway` needs the Gateway the HTTPRoute attaches to",
            hint=f"add `gateway: {{name: my-gateway, namespace: gateway-ns}}` under {where}, "
            "or use `traffic: replicas` on a cluster without a Gateway",
        )
    if split == "replicas" and env.rollout.strategy == "shadow":
        raise ConfigError(
            f"{where}: a shadow rollout needs `traffic: gateway` (a Service cannot mirror "
            "requests; the Gateway API's RequestMirror filter does)",
            hint=f"set `traffic: gateway` and `gateway: {{name: ...}}` under {where}",
        )
    if split == "replicas" and env.hpa:
        raise ConfigError(
            f"deploy.environments.{env_name}: `traffic: replicas` splits by replica counts, "
            "which the HorizontalPodAutoscaler (`hpa`) owns",
            hint=f"use `traffic: gateway` under {where}, or remove `hpa`",
        )


def _route(env: DeployEnvironment, name: str, env_name: str = "") -> dict[str, Any]:
    """The HTTPRoute's spec: the Gateway it attaches to, the host of the environment's url
    (a Gateway API hostname is a DNS name, so an IP address or `localhost` adds none), and
    the serving revision's Service alone (a rollout's steps change the rules)."""
    import ipaddress
    from urllib.parse import urlsplit

    gw = env.rollout.gateway
    if gw is None:  # _check_rollout refused it before
        raise ConfigError("`traffic: gateway` without `rollout.gateway`")
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
    parent["name"] = gw.name
    if gw.namespace:
        parent["namespace"] = gw.namespace
    if gw.section_name:
        parent["sectionName"] = gw.section_name
    spec: dict[str, Any] = {"parentRefs": [parent]}
    host = (urlsplit(env.url or "").hostname or "").rstrip(".")  # `h.example.com.`: FQDN
    try:
        ipaddress.ip_address(host)
        host = ""
    except ValueError:
        pass
    if "." in host:
        # A host the Gateway API refuses as a hostname is an error, never a route without
        # `hostnames`: that one would take every host's requests the Gateway has no other
        # route for.
        label = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
        if len(host) > 253 or not re.fullmatch(rf"(\*\.)?{label}(\.{label})*", host):
            raise ConfigError(
                f"deploy.environments.{env_name}.url: `{host}` is not a hostname an HTTPRoute "
                "can match (letters, digits and `-`, labels of at most 63 characters)",
                hint="give `url` the DNS name clients use, or an IP address (the route then "
                "matches every host of its Gateway listener)",
            )
        spec["hostnames"] = [host]
    spec["rules"] = route_rules(name)
    return spec


def _observability(model: str, env_name: str, name: str, env: DeployEnvironment) -> dict[str, Any]:
    """The alert rules and dashboard of an environment that declares `watch:` SLOs."""
    if env.watch is None:
        return {"rule_groups": [], "dashboard_json": ""}
    return {
        "rule_groups": observability.rule_groups(model, env_name, env.watch),
        "dashboard_json": observability.dashboard_json(
            model, env_name, name, env.namespace, env.watch
        ),
    }


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
