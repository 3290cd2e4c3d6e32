"""Keyless signing and verification, as far as they go with no Sigstore service reachable.

Signing: a job that holds an ambient OIDC token (GitHub's request URL and token, served here
by a local stand-in) signs keyless: lepton-ci asks for a token with audience `sigstore`,
sigstore-python sends it with a certificate request to the Fulcio of the client trust config,
a local stand-in that refuses. The request is checked, and the refusal leaves nothing written.
End-to-end keyless signing, against local Fulcio, Rekor and OIDC issuer stand-ins, is in
test_trust_keyless_world.py.

Verifying: a bundle shaped as a keyless one but certified by no Fulcio is refused by
sigstore-python's verifier (against the public-good trusted root, read offline), and one
whose signer `trust.identities` does not list is refused before that.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import sigstore

from lepton_ci.core.config import GITHUB_ISSUER
from lepton_ci.core.git import Git
from lepton_ci.trust import store
from lepton_ci.trust.signer import SIGSTORE_ENV
from tests.conftest import git
from tests.support.trust import key_pair, trust_repo, uncertified_keyless_bundle

pytestmark = pytest.mark.e2e

WORKFLOW_REF = "acme/models/.github/workflows/model-main.yml@refs/heads/main"
SAN = f"https://github.com/{WORKFLOW_REF}"
PUBLIC_GOOD = Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"


class StandIns:
    """GitHub's OIDC token endpoint and a Fulcio that refuses, on one local server."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        now = int(time.time())
        self.token = jwt.encode(
            {
                "iss": GITHUB_ISSUER,
                "aud": "sigstore",
                "sub": "repo:acme/models:ref:refs/heads/main",
                "iat": now,
                "exp": now + 600,
                "job_workflow_ref": WORKFLOW_REF,
            },
            "not-a-real-issuer-key-0123456789ab",
            algorithm="HS256",
        )
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def _record(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.seen.append(
                    (self.command, self.path, self.headers.get("Authorization"), body)
                )
                return body

            def do_GET(self) -> None:  # the Actions token endpoint
                self._record()
                data = json.dumps({"value": outer.token}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # Fulcio, Rekor: unavailable
                self._record()
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trust_config(self, path: Path) -> Path:
        """The public-good trusted root, with every service URL pointed at the stand-in."""
        signing = json.loads((PUBLIC_GOOD / "signing_config.v0.2.json").read_text())
        for kind in ("caUrls", "rekorTlogUrls", "tsaUrls", "oidcUrls"):
            for service in signing[kind]:
                service["url"] = self.url
        path.write_text(
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                    "trustedRoot": json.loads((PUBLIC_GOOD / "trusted_root.json").read_text()),
                    "signingConfig": signing,
                }
            )
        )
        return path


@pytest.fixture
def stand_ins():
    s = StandIns()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def in_actions(stand_ins, monkeypatch, tmp_path):
    """A release job with `id-token: write`: the runner sets the token request URL and token."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{stand_ins.url}/token?api-version=2.0")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-123")
    monkeypatch.setenv(SIGSTORE_ENV, str(stand_ins.trust_config(tmp_path / "trust.json")))
    return stand_ins


def test_a_job_with_an_oidc_token_signs_keyless_through_fulcio(cli, toy_repo, in_actions, tmp_path):
    _, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(toy_repo, pub)
    assert cli("run")[0] == 0
    code, _, err = cli("register")
    assert code == 1
    assert f"keyless signing as {'repo:acme/models:ref:refs/heads/main'}" in err
    assert f"(issuer {GITHUB_ISSUER}) failed: FulcioClientError" in err
    assert git(toy_repo, "tag") == "" and git(toy_repo, "for-each-ref", "refs/lepton-ci") == ""
    (method, path, auth, _), *rest = in_actions.seen
    assert (method, auth) == ("GET", "bearer request-token-123")
    assert "api-version=2.0" in path and "audience=sigstore" in path
    fulcio = [s for s in rest if s[1] == "/api/v2/signingCert"]
    assert fulcio, rest
    assert fulcio[0][2] == f"Bearer {in_actions.token}"
    assert "certificateSigningRequest" in json.loads(fulcio[0][3])


def test_a_signing_key_wins_over_the_oidc_token(cli, toy_repo, in_actions, tmp_path):
    priv, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(toy_repo, pub)
    assert cli("run")[0] == 0
    code, out, err = cli("register", "--signing-key", str(priv))
    assert code == 0, err
    assert "signed by key" in out
    assert in_actions.seen == []


def _registered_with(cli, repo, bundle_of) -> str:
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0  # unsigned
    tag = "toy@v0.1.0"
    payload = b'{"_type": "https://in-toto.io/Statement/v1"}'
    store.write(Git(repo), tag, {store.STATEMENT: bundle_of(payload).encode()})
    return tag


def test_a_keyless_signer_the_policy_does_not_list_is_refused(cli, toy_repo, tmp_path):
    _, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(toy_repo, pub)
    tag = _registered_with(cli, toy_repo, lambda p: uncertified_keyless_bundle(p, SAN))
    code, _, err = cli("verify", tag)
    assert code == 1
    assert f"{tag}: signer: signed keyless by {SAN}, but `trust.identities` lists no" in err


def test_a_keyless_bundle_no_fulcio_certified_is_refused_by_sigstore(
    cli, toy_repo, tmp_path, stand_ins, monkeypatch
):
    _, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(
        toy_repo,
        pub,
        extra="  identities:\n"
        "    - {repository: acme/models, workflow: .github/workflows/model-main.yml}\n",
    )
    monkeypatch.setenv(SIGSTORE_ENV, str(stand_ins.trust_config(tmp_path / "trust.json")))
    tag = _registered_with(cli, toy_repo, lambda p: uncertified_keyless_bundle(p, SAN))
    code, _, err = cli("verify", tag)
    assert code == 1
    assert f"{tag}: signature or signer: Sigstore refused the bundle signed by {SAN}" in err
    assert f"(accepted: {SAN})" in err


def test_a_token_sigstore_cannot_use_is_named_and_nothing_is_written(
    cli, toy_repo, in_actions, tmp_path
):
    _, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(toy_repo, pub)
    assert cli("run")[0] == 0
    in_actions.token = "not-a-jwt"
    code, _, err = cli("register")
    assert code == 1
    assert "the job's OIDC token is not one Sigstore can use" in err
    assert "permissions: {id-token: write}" in err
    assert git(toy_repo, "tag") == ""
