"""The OCI client against registries users push to: the CNCF registry with `auth: token`
and a token server of our own (GHCR and Docker Hub use this flow), and multi-arch bases."""

import json

import pytest

from lepton_ci.core.oci_client import (
    CONFIG_OCI,
    INDEX_OCI,
    MANIFEST_OCI,
    OCIClient,
    OCIError,
    sha256,
)
from tests.support.services import Registry
from tests.support.token_server import SERVICE, TokenServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def token_registry(tmp_path):
    tokens = TokenServer(tmp_path / "tokens", {"alice": "s3cret"})
    registry = Registry(tmp_path / "registry", auth=tokens.registry_auth())
    yield registry, tokens
    registry.stop()
    tokens.close()


def client(registry, **kw):
    return OCIClient(registry.host, auth=("alice", "s3cret"), sleep=lambda s: None, **kw)


def test_bearer_token_flow_with_scopes(token_registry):
    registry, tokens = token_registry
    c = client(registry)
    blob = b"model weights" * 100
    c.upload_blob("acme/base", sha256(blob), blob)
    assert c.get_blob("acme/base", sha256(blob)) == blob
    assert all(("service", SERVICE) in q and ("account", "alice") in q for q in tokens.requests)
    # the registry lists a scope's actions in no fixed order (Go map): compare them as sets
    assert [("repository:acme/base", {"pull", "push"})] in [
        [(one.rsplit(":", 1)[0], set(one.rsplit(":", 1)[1].split(","))) for one in s]
        for s in tokens.scopes()
    ]
    # a cross-repository mount asks for two scopes in one challenge: each sent on its own
    assert c.mount_blob("acme/model", sha256(blob), "acme/base")
    assert any(len(s) == 2 and "repository:acme/base:pull" in s for s in tokens.scopes())


def test_token_server_dropping_the_connection_is_a_clear_error(token_registry):
    registry, tokens = token_registry
    tokens.drop = 1
    with pytest.raises(OCIError, match=r"its token server http://127\.0\.0\.1:\d+/token did not"):
        client(registry).blob_exists("acme/base", "sha256:" + "0" * 64)
    assert client(registry).blob_exists("acme/base", "sha256:" + "0" * 64) is False  # next try


def test_multi_arch_index_picks_the_runner_platform(tmp_path, monkeypatch):
    registry = Registry(tmp_path / "registry")
    try:
        c = OCIClient(registry.host)
        digests = {}
        for arch in ("arm64", "amd64"):
            config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {}}).encode()
            c.upload_blob("python", sha256(config), config)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_OCI,
                    "config": {
                        "mediaType": CONFIG_OCI,
                        "digest": sha256(config),
                        "size": len(config),
                    },
                    "layers": [],
                }
            ).encode()
            digests[arch] = c.put_manifest("python", f"3.12-{arch}", manifest, MANIFEST_OCI)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_OCI,
                "manifests": [
                    {
                        "mediaType": MANIFEST_OCI,
                        "digest": digests[a],
                        "size": 1,
                        "platform": {"os": "linux", "architecture": a, **v},
                    }
                    for a, v in (("arm64", {"variant": "v8"}), ("amd64", {}))
                ],
            }
        ).encode()
        c.put_manifest("python", "3.12", index, INDEX_OCI)
        monkeypatch.setattr("platform.machine", lambda: "aarch64")
        monkeypatch.delenv("LEPTON_PLATFORM_ARCH", raising=False)
        _, digest = c.image_manifest("python", "3.12")
        assert digest == digests["arm64"]
        assert "using linux/arm64" in c.platform_note and "runner's platform" in c.platform_note
        monkeypatch.setattr("platform.machine", lambda: "x86_64")
        assert c.image_manifest("python", "3.12")[1] == digests["amd64"]
        monkeypatch.setenv("LEPTON_PLATFORM_ARCH", "s390x")
        with pytest.raises(
            OCIError, match=r"no linux/s390x image \(it offers: linux/arm64/v8, linux/amd64\)"
        ):
            c.image_manifest("python", "3.12")
    finally:
        registry.stop()


def test_a_challenge_without_a_usable_realm_is_a_clear_error():
    import requests

    class Session(requests.Session):
        def request(self, method, url, **kw):  # a server that is not a registry
            r = requests.Response()
            r.status_code, r.url = 401, url
            r.headers["WWW-Authenticate"] = 'Bearer realm="",service="x"'
            return r

    c = OCIClient("127.0.0.1:9", session=Session(), sleep=lambda s: None)
    with pytest.raises(OCIError, match="asked for a token from '', not an http"):
        c.blob_exists("acme/base", "sha256:" + "0" * 64)
