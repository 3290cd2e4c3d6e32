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
)
PREFIX = "dev.lepton-ci"


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


def dns_name(*parts: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-")


def _label_value(value: str) -> str:
    v = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return v.strip("-._")


def render(
    env_name: str, env: DeployEnvironment, deploy: DeployConfig, release: Release, root: Path
) -> str:
    name = dns_name(release.model, env_name)
    if release.track == "canary":
        name = name[: 63 - len(CANARY_SUFFIX)].rstrip("-") + CANARY_SUFFIX
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
    context: dict[str, Any] = {
        "name": name,
        "env": env,
        "env_name": env_name,
        "release": release,
        "track": release.track,
        "labels": labels,
        "selector": selector,
        "pod_labels": {
            **selector,
            **{k: v for k, v in labels.items() if k.endswith(("/version", "/revision", "/track"))},
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
