"""The trust policy as a Kyverno ClusterPolicy, checked against Kyverno's published CRD schema.

cloudcoil-models-kyverno (PyPI) is generated from Kyverno's CRDs' OpenAPI schemas. Its models
ignore unknown keys, so a document is checked strictly, as `kubectl --validate=strict` would:
it must validate, and dumping what was set must give back the very same document (a key the
schema does not know is dropped, and the comparison fails).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lepton_ci.core.config import GITHUB_ISSUER
from lepton_ci.trust.statement import BUILD_TYPE, SLSA_PROVENANCE
from tests.conftest import commit_all
from tests.support.trust import key_pair, trust_repo

pytestmark = pytest.mark.e2e


def schema_violations(doc: dict[str, Any]) -> list[str]:
    from cloudcoil.models.kyverno.v1 import ClusterPolicy
    from pydantic import ValidationError

    try:
        parsed = ClusterPolicy.model_validate(doc)
    except ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [] if back == doc else [f"not in the schema: {_diff(doc, back)}"]


def _diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return f"{path}.{k}"
            if (d := _diff(a[k], b[k], f"{path}.{k}")) != "":
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next(
            (
                d
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                if (d := _diff(x, y, f"{path}[{i}]"))
            ),
            "",
        )
    return "" if a == b else path or "(top)"


@pytest.fixture
def repo(toy_repo, tmp_path):
    _, pub = key_pair(tmp_path / "keys", "release")
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "      speed.p95_ms: {direction: lower, informational: true}\n",
            "      speed.p95_ms: {direction: lower, informational: true}\n"
            "    image: {name: ghcr.io/acme/toy, base: ghcr.io/acme/base:1}\n",
        )
    )
    commit_all(toy_repo, "feat: an image")
    trust_repo(
        toy_repo,
        pub,
        require=True,
        extra="  identities:\n"
        "    - {repository: acme/models, workflow: .github/workflows/model-main.yml}\n",
    )
    return toy_repo, pub


def test_the_rendered_cluster_policy_is_valid_kyverno_and_says_what_trust_says(cli, repo):
    _, pub = repo
    code, out, err = cli("trust", "cluster-policy")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert schema_violations(doc) == []
    (rule,) = doc["spec"]["rules"]
    (verify,) = rule["verifyImages"]
    assert verify["type"] == "SigstoreBundle"
    assert verify["imageReferences"] == ["ghcr.io/acme/toy:*", "ghcr.io/acme/toy@*"]
    assert verify["verifyDigest"] is True and verify["failureAction"] == "Enforce"
    (att,) = verify["attestations"]
    assert att["predicateType"] == SLSA_PROVENANCE
    assert att["conditions"][0]["all"][0]["value"] == BUILD_TYPE
    key, keyless = att["attestors"][0]["entries"]
    assert key["keys"]["publicKeys"] == pub.read_text()
    assert keyless["keyless"] == {
        "issuer": GITHUB_ISSUER,
        "subject": "https://github.com/acme/models/.github/workflows/model-main.yml@refs/heads/main",
        "rekor": {"url": "https://rekor.sigstore.dev"},
    }
    assert "-----BEGIN PUBLIC KEY-----\n" in out  # a literal block, as a person writes a key


def test_the_schema_check_catches_what_kyverno_would_refuse(cli, repo):
    doc = yaml.safe_load(cli("trust", "cluster-policy")[1])
    verify = doc["spec"]["rules"][0]["verifyImages"][0]
    verify["imageReference"] = verify.pop("imageReferences")  # a misspelt key
    assert schema_violations(doc) == [
        "not in the schema: .spec.rules[0].verifyImages[0].imageReference"
    ]
    verify["imageReferences"] = verify.pop("imageReference")
    verify["type"] = "Sigstore"  # not one of Kyverno's signature types
    assert any("type" in v for v in schema_violations(doc))


def test_a_policy_with_no_signer_or_no_image_is_refused(cli, toy_repo):
    code, _, err = cli("trust", "cluster-policy")
    assert code == 1 and "`trust:` lists no key and no identity" in err
