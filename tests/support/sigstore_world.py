"""A Sigstore of our own for the keyless tests: a local OIDC issuer, Fulcio and Rekor.

- The issuer is a test RSA key: `mint(...)` writes a GitHub Actions OIDC token (RS256) for a
  workflow at a ref, with the claims GitHub sets.
- Fulcio and Rekor are @sigstore/mock's CA, CT log and transparency log (what sigstore-js
  tests itself against) behind `sigstore_standins.js`, a small node HTTP server; Fulcio checks
  the token against the issuer's public key before it certifies.
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
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lepton_ci.core.config import GITHUB_ISSUER

CACHE = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci")) / "npm"
MODULES = CACHE / "sigstore-mock-0.13.0" / "node_modules"
SERVER = Path(__file__).with_name("sigstore_standins.js")
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

    def mint(self, workflow_ref: str, *, aud: str = "sigstore", **claims: Any) -> str:
        """A GitHub Actions OIDC token for `owner/repo/.github/workflows/x.yml@refs/...`."""
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
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": "test"})

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

    def trust_config(self, path: Path) -> Path:
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
            "oidcUrls": [service(self.url)],
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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
