"""A Sigstore of our own for the keyless tests: a local OIDC issuer, Fulcio and Rekor.

- The issuer is a test RSA key: `mint(...)` writes a GitHub Actions OIDC token (RS256) for a
  workflow at a ref, with the claims GitHub sets. `actions_env(token)` is what a runner gives a
  job with `id-token: write`: a token request URL (served here, answering with `token` when
  asked for audience `sigstore` with the request token) and the request token.
- Fulcio and Rekor are @sigstore/mock's CA, CT log and transparency log (what sigstore-js
  tests itself against) behind `sigstore_standins.js`, a small node HTTP server; Fulcio checks
  the token against the issuer's public key before it certifies.
- `verify_js(...)` checks a bundle with sigstore-js's verifier (node), independent of ours.
- `trust_config(path)` writes the client trust config that names them (trusted root: the CA,
  the CT log and Rekor keys; signing config: their URLs), which sigstore-python signs and
  verifies with, as `trust.sigstore` or LEPTON_SIGSTORE_TRUST_CONFIG would give it.
.ci/setup installs the npm packages into the test cache (LEPTON_TEST_CACHE).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lepton_ci.core.config import GITHUB_ISSUER

CACHE = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci")) / "npm"
MODULES = CACHE / "sigstore-mock-0.13.0" / "node_modules"
SERVER = Path(__file__).with_name("sigstore_standins.js")
VERIFY_JS = Path(__file__).with_name("sigstore_verify.js")
REQUEST_TOKEN = "actions-request-token-7"
START = "2020-01-01T00:00:00Z"


def available() -> bool:
    return (MODULES / "@sigstore" / "mock").is_dir() and shutil.which("node") is not None


class SigstoreWorld:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer_pub = root / "issuer.pub"
        issuer_pub.write_bytes(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.log = (root / "standins.log").open("w")
        self.proc = subprocess.Popen(
            ["node", str(SERVER), str(issuer_pub)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "NODE_PATH": str(MODULES)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the Sigstore stand-ins did not start: {root / 'standins.log'}")
        self.info: dict[str, str] = json.loads(line)
        self.url = self.info["url"]
        self.token = ""  # what the Actions token endpoint hands out
        self.token_requests: list[str] = []
        self._actions = self._token_endpoint()

    def _token_endpoint(self) -> ThreadingHTTPServer:
        world = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                world.token_requests.append(self.path)
                ok = self.headers.get("Authorization") == f"bearer {REQUEST_TOKEN}"
                ok = ok and "audience=sigstore" in self.path
                data = json.dumps({"value": world.token}).encode() if ok else b""
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def actions_env(self, token: str) -> dict[str, str]:
        self.token = token
        port = self._actions.server_address[1]
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{port}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
        }

    def verify_js(self, bundle: Path, san: str, issuer: str = GITHUB_ISSUER) -> dict[str, Any]:
        """sigstore-js's verdict on `bundle` against this world's trusted root."""
        root = bundle.with_name("trusted_root.json")
        root.write_text(json.dumps(self.trusted_root()))
        proc = subprocess.run(
            ["node", str(VERIFY_JS), str(root), str(bundle), san, issuer],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NODE_PATH": str(MODULES)},
        )
        try:
            out: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        except (IndexError, ValueError):
            raise AssertionError(f"sigstore_verify.js: {proc.stdout}{proc.stderr}") from None
        assert out["verified"] == (proc.returncode == 0), out
        return out

    def mint(
        self,
        workflow_ref: str,
        *,
        aud: str = "sigstore",
        key: rsa.RSAPrivateKey | None = None,
        **claims: Any,
    ) -> str:
        """A GitHub Actions OIDC token for `owner/repo/.github/workflows/x.yml@refs/...`,
        signed by the issuer's key (or by `key`: a forgery)."""
        repo = "/".join(workflow_ref.split("/")[:2])
        ref = workflow_ref.split("@", 1)[1]
        now = int(time.time())
        body = {
            "iss": GITHUB_ISSUER,
            "aud": aud,
            "sub": f"repo:{repo}:ref:{ref}",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "repository": repo,
            "ref": ref,
            "sha": "0" * 40,
            "workflow_ref": workflow_ref,
            "job_workflow_ref": workflow_ref,
            "event_name": "push",
            "run_id": "4242",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            **claims,
        }
        return jwt.encode(body, key or self._key, algorithm="RS256", headers={"kid": "test"})

    def trusted_root(self) -> dict[str, Any]:
        i = self.info

        def log(key: str, log_id: str) -> dict[str, Any]:
            return {
                "baseUrl": self.url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": key,
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": START},
                },
                "logId": {"keyId": log_id},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(i["rekor_key"], i["rekor_log_id"])],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "sigstore.mock", "commonName": "sigstore"},
                    "uri": self.url,
                    "certChain": {"certificates": [{"rawBytes": i["fulcio_root"]}]},
                    "validFor": {"start": START},
                }
            ],
            "ctlogs": [log(i["ctlog_key"], i["ctlog_log_id"])],
            "timestampAuthorities": [],
        }

    def trust_config(self, path: Path, *, oidc: str | None = None) -> Path:
        """The client trust config naming this world (`oidc`: another OIDC issuer URL)."""

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": {"start": START},
                "operator": "lepton-test",
            }

        signing = {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(self.url)],
            "oidcUrls": [service(oidc or self.url)],
            "rekorTlogUrls": [service(self.url)],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaUrls": [],
            "tsaConfig": {"selector": "ANY"},
        }
        path.write_text(
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                    "trustedRoot": self.trusted_root(),
                    "signingConfig": signing,
                }
            )
        )
        return path

    def close(self) -> None:
        self._actions.shutdown()
        self._actions.server_close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
