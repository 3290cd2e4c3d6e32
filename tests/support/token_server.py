"""A registry token server, as the distribution spec's token flow describes it.

The CNCF registry (`auth: token`) trusts the self-signed certificate made here and checks
the RS256 JWTs this server signs with its key (openssl, no Python crypto package). It
records every token request's query (scopes arrive repeated or space-separated) and can drop
the connection instead of answering. A token expiring mid-upload is played by the fault proxy
(`Rule(mode="expire")`), which answers with this registry's own challenge: no test waits for
a clock.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

SERVICE = "lepton-test-registry"
ISSUER = "lepton-test-issuer"
LEEWAY = 60  # distribution accepts a token this long after its exp


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, root: Path, users: dict[str, str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = root / "token.key", root / "token.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=lepton-test-token", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.requests: list[list[tuple[str, str]]] = []
        self.drop = 0  # the next N token requests get their connection closed, no answer
        self.expires_in = 300
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qsl(urlsplit(self.path).query)
                server.requests.append(query)
                if server.drop > 0:
                    server.drop -= 1
                    self.close_connection = True
                    return  # the connection closes with no answer at all
                auth = self.headers.get("Authorization", "")
                user, _, pw = base64.b64decode(auth[6:] or "").decode().partition(":")
                if not auth.startswith("Basic ") or server.users.get(user) != pw:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(
                    {"token": server.sign(user, query), "expires_in": server.expires_in}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def registry_auth(self) -> str:
        """The `auth:` section of a CNCF registry config trusting this server."""
        return (
            f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {self.cert}\n"
        )

    def sign(self, user: str, query: list[tuple[str, str]]) -> str:
        now = int(time.time())
        access = []
        for k, v in query:
            if k != "scope":
                continue
            for scope in v.split():
                kind, name, actions = (
                    scope.split(":")[0],
                    scope.split(":")[1],
                    scope.rsplit(":", 1)[1],
                )
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + self.expires_in - LEEWAY,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(sig)}"

    def scopes(self) -> list[list[str]]:
        return [[v for k, v in q if k == "scope"] for q in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
