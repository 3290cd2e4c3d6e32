"""Signed images, end to end against the real CNCF registry: register -> build -> verify.

The CNCF registry has no referrers API, so build attaches the image's bundle through the
spec's fallback tag (`sha256-<hex>`), for real; a small stand-in in front of it answers the
referrers API, to test that path too. The base image is pushed by hand (one tiny layer): no
container engine is needed to build with the layers builder.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from lepton_ci.core.oci_client import INDEX_OCI, MANIFEST_OCI, OCIClient, referrers_tag
from lepton_ci.trust.signer import BUNDLE_MEDIA
from tests.conftest import Cli, commit_all, git
from tests.support.referrers_registry import ReferrersRegistry
from tests.support.services import Registry
from tests.support.trust import key_pair, push_tiny_base, trust_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("trust-registry"))
    reg.base = push_tiny_base(reg.host, "base/tiny")
    yield reg
    reg.stop()


@pytest.fixture
def keys(tmp_path):
    priv, pub = key_pair(tmp_path / "keys", "release")
    return {"priv": priv, "pub": pub}


def _image_repo(repo: Path, host: str, base: str) -> str:
    """The toy model with an image (layers builder) and a podman environment."""
    name = f"{host}/t{uuid.uuid4().hex[:10]}/toy"
    cfg = repo / "lepton.yaml"
    text = cfg.read_text().replace(
        "      speed.p95_ms: {direction: lower, informational: true}\n",
        "      speed.p95_ms: {direction: lower, informational: true}\n"
        f"    image: {{name: {name}, base: {base}, builder: layers}}\n"
        "    deploy: {environments: {staging: {host_port: 18999}}}\n",
    )
    cfg.write_text(text)
    commit_all(repo, "feat: an image")
    return name


@pytest.fixture
def toy(toy_repo, registry, keys, capsys, monkeypatch):
    """toy@v0.1.0, registered and signed with the release key, its image not yet built."""
    name = _image_repo(toy_repo, registry.host, registry.base)
    trust_repo(toy_repo, keys["pub"])
    cli = Cli(toy_repo, capsys)
    assert cli("run")[0] == 0
    monkeypatch.setenv("LEPTON_SIGNING_KEY", str(keys["priv"]))
    code, _, err = cli("register")
    assert code == 0, err
    cli.image = name
    return toy_repo, cli


def _repo_of(image: str) -> tuple[str, str]:
    host, _, repo = image.partition("/")
    return host, repo


def test_register_build_verify_model_and_image_against_the_registry(toy):
    _, cli = toy
    code, out, err = cli("build", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["signed_by"].startswith("key ")
    ref = f"{res['image']}@{res['digest']}"
    code, out, err = cli("verify", ref)
    assert code == 0, err
    assert out.startswith(f"{ref}: verified, signed by key keys/release.pub")
    assert "built from toy@v0.1.0, whose own chain holds" in out
    assert cli("verify", "toy@v0.1.0")[0] == 0
    # The CNCF registry has no referrers API: the bundle is listed under the fallback tag.
    host, name = _repo_of(res["image"])
    client = OCIClient(host)
    api = client.request("GET", f"/v2/{name}/referrers/{res['digest']}", repo=name)
    assert api.status_code == 404
    body, media, _ = client.get_manifest(name, referrers_tag(res["digest"]))
    index = json.loads(body)
    assert media == INDEX_OCI
    (entry,) = index["manifests"]
    assert entry["artifactType"] == BUNDLE_MEDIA
    manifest = json.loads(client.get_manifest(name, entry["digest"])[0])
    assert manifest["subject"]["digest"] == res["digest"]
    assert manifest["layers"][0]["mediaType"] == BUNDLE_MEDIA
    # A second build reuses the image, and its bundle: it is not signed again.
    code, out, err = cli("build", "--json")
    assert code == 0, err
    assert json.loads(out)["digest"] == res["digest"]
    assert "is already signed" in err
    again = json.loads(client.get_manifest(name, referrers_tag(res["digest"]))[0])
    assert again["manifests"] == index["manifests"]
    assert cli("verify", ref)[0] == 0


def test_the_referrers_api_is_used_where_the_registry_answers_it(toy, registry):
    repo, cli = toy
    stand_in = ReferrersRegistry(registry.host)
    try:
        cfg = repo / "lepton.yaml"
        cfg.write_text(
            cfg.read_text().replace(f"name: {registry.host}/", f"name: {stand_in.host}/")
        )
        commit_all(repo, "chore: the registry with the referrers API")
        assert cli("run")[0] == 0
        code, _, err = cli("register")  # signed: LEPTON_SIGNING_KEY is still set
        assert code == 0, err
        code, out, err = cli("build", "--json")
        assert code == 0, err
        res = json.loads(out)
        assert res["image"].startswith(stand_in.host)
        name = _repo_of(res["image"])[1]
        # indexed by the registry itself: no fallback tag was written
        assert OCIClient(registry.host).manifest_digest(name, referrers_tag(res["digest"])) is None
        assert len(stand_in.index[(name, res["digest"])]) == 1
        calls = stand_in.api_calls
        code, out, err = cli("verify", f"{res['image']}@{res['digest']}")
        assert code == 0, err
        assert stand_in.api_calls > calls
    finally:
        stand_in.stop()


def test_a_retagged_image_is_refused(toy, registry):
    """The version's tag pointed at an image lepton-ci did not build: nothing attests it; an
    attestation copied onto it names another digest."""
    repo, cli = toy
    code, out, err = cli("build", "--json")
    assert code == 0, err
    res = json.loads(out)
    host, name = _repo_of(res["image"])
    client = OCIClient(host)
    base_host, base_repo = _repo_of(registry.base.rsplit(":", 1)[0])
    body, media, other = OCIClient(base_host).get_manifest(base_repo, "1")
    for layer in [json.loads(body)["config"], *json.loads(body)["layers"]]:
        blob = OCIClient(base_host).get_blob(base_repo, layer["digest"])
        client.upload_blob(name, layer["digest"], blob)
    client.put_manifest(name, "0.1.0", body, media)  # re-tagged by hand
    code, _, err = cli("verify", f"{res['image']}@{other}")
    assert code == 1
    assert f"{res['image']}@{other}: signature: no signed statement is attached" in err
    # the real image's referrer, copied onto the other image
    index = json.loads(client.get_manifest(name, referrers_tag(res["digest"]))[0])
    att = json.loads(client.get_manifest(name, index["manifests"][0]["digest"])[0])
    att["subject"] = {"mediaType": media, "digest": other, "size": len(body)}
    forged = json.dumps(att).encode()
    client.put_referrer(name, forged, {"mediaType": MANIFEST_OCI, "artifactType": BUNDLE_MEDIA})
    code, _, err = cli("verify", f"{res['image']}@{other}")
    assert code == 1
    assert f"{res['image']}@{other}: subject: the signed statement is about sha256:" in err
    assert "not this image" in err
    # under trust.require, deploy refuses it before anything is applied
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("require: false", "require: true"))
    commit_all(repo, "chore: require signatures")
    code, _, err = cli(
        "deploy", "staging", "--version", "v0.1.0", "--image", f"{res['image']}@{other}"
    )
    assert code == 1
    assert "deploy of toy v0.1.0 to staging refused by `trust.require: true`" in err
    assert not (repo / ".lepton" / "deploy").exists()


def test_build_version_and_deploy_refuse_an_unsigned_version_under_require(
    toy_repo, registry, keys, capsys
):
    name = _image_repo(toy_repo, registry.host, registry.base)
    trust_repo(toy_repo, keys["pub"])
    cli = Cli(toy_repo, capsys)
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0  # no key: unsigned
    code, out, err = cli("build", "--json")  # an unsigned image: a notice, not a refusal
    assert code == 0, err
    digest = json.loads(out)["digest"]
    assert "not signed: no signing key" in err
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("require: false", "require: true"))
    commit_all(toy_repo, "chore: require signatures")
    host, repo = _repo_of(name)
    tags_before = OCIClient(host).request("GET", f"/v2/{repo}/tags/list", repo=repo).json()
    code, _, err = cli("build", "--version", "v0.1.0")
    assert code == 1
    assert "build of toy v0.1.0 refused by `trust.require: true`" in err
    assert "the version is not signed" in err
    tags_after = OCIClient(host).request("GET", f"/v2/{repo}/tags/list", repo=repo).json()
    assert tags_after == tags_before
    code, _, err = cli("deploy", "staging", "--version", "v0.1.0", "--image", f"{name}@{digest}")
    assert code == 1
    assert "deploy of toy v0.1.0 to staging refused by `trust.require: true`" in err
    assert not (toy_repo / ".lepton" / "deploy").exists()
    assert git(toy_repo, "for-each-ref", "refs/lepton-ci") == ""
