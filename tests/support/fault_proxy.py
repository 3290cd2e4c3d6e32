"""A forwarding HTTP proxy in front of a real registry that fails chosen requests the way
networks and registries do.

Modes of a Rule:
- "reject": answer `status` without forwarding (the write did not land);
- "after": forward, then answer `status` instead of the registry's answer (the write landed,
  a 5xx came back, as from a load balancer that timed out);
- "lost": forward, then close the connection with no answer (the write landed, the answer
  was lost);
- "reset": read half the request body, then reset the connection (nothing landed);
- "break": read the request body, forward only its first `at` bytes (half when 0), then
  reset the connection: the stream broke in the middle of the blob after part of it
  landed, so a resumed upload must send exactly what follows.
`skip` lets a rule fire on a later matching request (the second chunk, say). Everything
else is forwarded. The CNCF registry answers a chunk resent with a stale upload location with
404 (the client must start a new session); with `answer_416` the proxy answers as registries
that follow the spec's resumable flow do: 416 for a chunk the session already has, with the
session's Range and latest Location, and the upload status (GET) from what it holds.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Rule:
    method: str
    path: str
    status: int = 0
    times: int = 1
    mode: str = "reject"
    skip: int = 0
    at: int = 0

    def fires(self, method: str, path: str) -> bool:
        if self.times <= 0 or method != self.method or not re.search(self.path, path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.times -= 1
        return True


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, int]] = []
        self.received = 0  # request body bytes: what clients uploaded through the proxy
        self.lock = threading.Lock()
        self.answer_416 = False
        self.sessions: dict[str, tuple[int, str]] = {}  # upload path -> (bytes held, Location)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def _cut(self) -> None:
                """Close with a TCP reset: the client sees its connection broken."""
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def _handle(self) -> None:
                with proxy.lock:
                    rule = next((r for r in proxy.rules if r.fires(self.command, self.path)), None)
                n = int(self.headers.get("Content-Length") or 0)
                if rule is not None and rule.mode == "reset":
                    proxy.received += len(self.rfile.read(n // 2))
                    proxy.log.append((self.command, self.path, -1))
                    self._cut()
                    return
                body = self.rfile.read(n) if n else None
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                proxy.received += len(body or b"")
                if rule is not None and rule.mode == "break" and body:
                    body = body[: rule.at or len(body) // 2]
                session = self.path.split("?")[0]
                held = proxy.sessions.get(session)
                given = re.match(r"(\d+)-", self.headers.get("Content-Range", ""))
                have = held is not None and given is not None and int(given.group(1)) < held[0]
                if rule is not None and rule.mode == "reject":
                    proxy.log.append((self.command, self.path, rule.status))
                    self.send_response(rule.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.answer_416 and self.command == "GET" and held:
                    # the spec's upload status, which such registries answer for a session
                    proxy.log.append((self.command, self.path, 204))
                    self.send_response(204)
                    self.send_header("Range", f"0-{held[0] - 1}")
                    self.send_header("Location", held[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.answer_416 and self.command == "PATCH" and held and have:
                    proxy.log.append((self.command, self.path, 416))
                    self.send_response(416)
                    self.send_header("Range", f"0-{held[0] - 1}")
                    self.send_header("Location", held[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hop = ("host", "transfer-encoding", "content-length", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                resp = requests.request(
                    self.command,
                    f"http://{proxy.upstream}{self.path}",
                    data=body,
                    headers=headers,
                    timeout=60,
                    allow_redirects=False,
                )
                landed = re.fullmatch(r"0-(\d+)", resp.headers.get("Range", ""))
                if self.command == "PATCH" and resp.status_code == 202 and landed:
                    location = resp.headers.get("Location", "").replace(proxy.upstream, proxy.host)
                    proxy.sessions[session] = (int(landed.group(1)) + 1, location)
                if rule is not None and rule.mode in ("lost", "break"):
                    proxy.log.append((self.command, self.path, -resp.status_code))
                    self._cut()
                    return
                if rule is not None and rule.mode == "after":
                    proxy.log.append((self.command, self.path, rule.status))
                    self.send_response(rule.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.log.append((self.command, self.path, resp.status_code))
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in ("transfer-encoding", "content-length", "connection"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(proxy.upstream, proxy.host)
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_chunked(stream: object) -> bytes:
    out = b""
    while True:
        size = int(stream.readline().strip() or b"0", 16)  # type: ignore[attr-defined]
        if size == 0:
            stream.readline()  # type: ignore[attr-defined]
            return out
        out += stream.read(size)  # type: ignore[attr-defined]
        stream.readline()  # type: ignore[attr-defined]
