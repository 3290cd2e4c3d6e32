"""The trust policy as a cluster-side admission rule: a Kyverno ClusterPolicy (verifyImages).

The same `trust:` that `verify` reads becomes a rule that admits a Pod only when each of the
models' images carries a Sigstore bundle (attached as an OCI 1.1 referrer, where `build`
puts it) of lepton-ci's image statement, signed by a listed key or keyless identity.

Why Kyverno and not Sigstore's policy-controller: Kyverno's `type: SigstoreBundle` reads
Sigstore bundles attached as OCI referrers, which is how build attaches them, and its CRD
schema is published in a registry reachable from CI (PyPI: cloudcoil-models-kyverno), so the
rendered rule is validated in the tests; policy-controller looks for cosign's `.sig`/`.att`
tags, and its CRD is published in no package registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from lepton_ci.core.errors import ConfigError
from lepton_ci.trust import policy as policy_mod
from lepton_ci.trust.statement import BUILD_TYPE, SLSA_PROVENANCE

if TYPE_CHECKING:
    from lepton_ci.core.context import Context

PUBLIC_REKOR = "https://rekor.sigstore.dev"


def render(ctx: Context, model: str | None = None, *, name: str | None = None) -> str:
    return yaml.dump(policy(ctx, model, name=name), Dumper=_Dumper, sort_keys=False, width=1000)


def policy(ctx: Context, model: str | None = None, *, name: str | None = None) -> dict[str, Any]:
    pol = policy_mod.load(ctx.cfg, ctx.env)
    if pol.empty:
        raise ConfigError(
            f"{ctx.cfg.path.name}: `trust:` lists no key and no identity: a cluster policy "
            "would admit nothing",
            hint="add `trust: {keys: [release.pub]}` (or `identities:`) first",
        )
    models = [ctx.cfg.model(model)] if model else list(ctx.cfg.config.models.items())
    images = [m.image.name for _, m in models if m.image is not None]
    if not images:
        raise ConfigError(
            f"{ctx.cfg.path.name}: no model has an `image:`, so there is no image to admit",
            hint="add `image: {name: REGISTRY/REPO, ...}` to the model",
        )
    entries: list[dict[str, Any]] = [
        {
            "keys": {
                "publicKeys": k.pem.strip() + "\n",
                # key-signed bundles carry no transparency log entry or certificate
                "rekor": {"ignoreTlog": True},
                "ctlog": {"ignoreSCT": True},
            }
        }
        for k in pol.keys
    ]
    entries += [
        {"keyless": {"issuer": i.issuer, "subject": i.subject, "rekor": {"url": PUBLIC_REKOR}}}
        for i in pol.identities
    ]
    refs = sorted({f"{image}{sep}*" for image in images for sep in (":", "@")})
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": name or "lepton-ci-trust",
            "annotations": {
                "policies.kyverno.io/title": "Images signed by lepton-ci's release",
                "policies.kyverno.io/description": (
                    f"Rendered by `lepton-ci trust cluster-policy` from `trust:` in "
                    f"{ctx.cfg.path.name}: admits {', '.join(images)} only with an image "
                    "statement signed by an accepted key or identity."
                ),
            },
        },
        "spec": {
            "background": False,
            "webhookTimeoutSeconds": 30,
            "failurePolicy": "Fail",
            "rules": [
                {
                    "name": "lepton-ci-signed-images",
                    "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "verifyImages": [
                        {
                            "type": "SigstoreBundle",
                            "imageReferences": refs,
                            "failureAction": "Enforce",
                            "mutateDigest": True,
                            "verifyDigest": True,
                            "required": True,
                            "attestations": [
                                {
                                    "predicateType": SLSA_PROVENANCE,
                                    "attestors": [{"count": 1, "entries": entries}],
                                    "conditions": [
                                        {
                                            "all": [
                                                {
                                                    "key": "{{ buildDefinition.buildType }}",
                                                    "operator": "Equals",
                                                    "value": BUILD_TYPE,
                                                }
                                            ]
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM keys) as literal blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
