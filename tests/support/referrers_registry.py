"""A registry that answers the OCI 1.1 referrers API: a forwarding proxy in front of the CNCF
registry (which does not) that keeps the referrers index itself.

A manifest PUT with a `subject` is forwarded, then indexed, and answered with `OCI-Subject`
as a 1.1 registry answers; GET /v2/<name>/referrers/<digest> answers from that index (with
`artifactType` filtering and OCI-Filters-Applied). Everything else goes to the registry.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

INDEX = "application/vnd.oci.image.index.v1+json"


class ReferrersRegistry:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.api_calls = 0
        lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
                with lock:
                    stand_in.api_calls += 1
                    found = list(stand_in.index.get((name, digest), []))
                want = (query.get("artifactType") or [None])[0]
                headers = {"Content-Type": INDEX}
                if want:
                    found = [d for d in found if d.get("artifactType") == want]
                    headers["OCI-Filters-Applied"] = "artifactType"
                body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": found})
                self._answer(200, body.encode(), headers)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                r = requests.request(
                    self.command,
                    f"http://{stand_in.upstream}{self.path}",
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                    timeout=60,
                )
                out = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                }
                parts = urlsplit(self.path).path.split("/")
                if self.command == "PUT" and "manifests" in parts and r.status_code == 201 and data:
                    doc = json.loads(data)
                    subject = (doc.get("subject") or {}).get("digest")
                    if subject:
                        name = "/".join(parts[2 : parts.index("manifests")])
                        entry = {
                            "mediaType": doc.get("mediaType"),
                            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                            "artifactType": doc.get("artifactType"),
                            "annotations": doc.get("annotations") or {},
                        }
                        with lock:
                            stand_in.index.setdefault((name, subject), []).append(entry)
                        out["OCI-Subject"] = subject
                body = b"" if self.command == "HEAD" else r.content
                self.send_response(r.status_code)
                for k, v in out.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _handle(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.split("/")
                if self.command == "GET" and "referrers" in parts and len(parts) > 4:
                    i = parts.index("referrers")
                    self._referrers("/".join(parts[2:i]), parts[i + 1], parse_qs(url.query))
                    return
                self._forward()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
