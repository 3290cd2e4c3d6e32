"""A forwarding HTTP proxy in front of a real registry that fails chosen requests the way
networks and registries do.

Modes of a Rule:
- "reject": answer `status` without forwarding (the write did not land);
- "after": forward, then answer `status` instead of the registry's answer (the write landed,
  a 5xx came back, as from a load balancer that timed out);
- "lost": forward, then close the connection with no answer (the write landed, the answer
  was lost);
- "reset": read half the request body, then reset the connection (nothing landed);
- "break": read the request body, forward it only up to offset `at` of the BLOB (half the
  body when 0), then reset the connection: the stream broke in the middle of the blob after
  part of it landed. A resumed stream starts where the session stands, so rules with
  growing offsets break one upload at each of them;
- "stale" (on the upload-status GET, with `answer_416`): report `at` bytes held, fewer than
  the session holds, as a replica that lags behind does; the client's next range is then
  wrong and refused with 416;
- "cut" (on a blob GET): forward, then send the answer's head and the first `at` bytes of
  its body (the full Content-Length announced), then close: a download broken mid-blob. The
  Range header of every GET is kept in `read_ranges`; with `ignore_range` the registry never
  sees one (it answers 200 and the whole blob, as some registries and caches do);
- "slow" (on a GET): forward, then send the answer 64 KiB at a time, `delay` seconds apart:
  a slow link, for stopping a download half-way;
- "expire": the bearer token this request carries expires now: it and every later request
  with that token get the registry's own 401 challenge, until the client fetches a new one.
`skip` lets a rule fire on a later matching request (the second chunk, say). Everything
else is forwarded. The CNCF registry answers a chunk resent with a stale upload location with
404 (the client must start a new session); with `answer_416` the proxy answers as registries
that follow the spec's resumable flow do: the upload status (GET) from what the session
holds, and 416 Range Not Satisfiable for a PATCH whose Content-Range does not start there
(with no Range header: the spec has the client ask the status).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

# The CNCF registry's answer to a chunk out of order (distribution's ErrorCodeRangeInvalid).
RANGE_INVALID = json.dumps(
    {"errors": [{"code": "RANGE_INVALID", "message": "invalid content range", "detail": None}]}
).encode()


@dataclass
class Rule:
    method: str
    path: str
    status: int = 0
    times: int = 1
    mode: str = "reject"
    skip: int = 0
    at: int = 0
    delay: float = 0.0  # "slow": seconds between 64 KiB pieces of the answer

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
        self.expired: set[str] = set()  # Authorization values the registry no longer takes
        self.ranges: list[str] = []  # the Content-Range of every PATCH, "" when none
        self.read_ranges: list[str] = []  # the Range of every GET, "" when none
        self.sent = 0  # response body bytes: what clients downloaded through the proxy
        self.ignore_range = False  # forward GETs without Range, as registries that ignore it
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

            def _answer(
                self, status: int, headers: dict[str, str] | None = None, body: bytes = b""
            ) -> None:
                proxy.log.append((self.command, self.path, status))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                    proxy.sent += len(body)

            def _read(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                else:
                    body = self.rfile.read(n) if n else b""
                proxy.received += len(body)
                return body

            def _unauthorized(self) -> None:
                """The registry's own challenge for this request: asked without credentials
                and without a body (a registry refuses before it reads one)."""
                hop = ("host", "authorization", "transfer-encoding", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                resp = requests.request(
                    self.command,
                    f"http://{proxy.upstream}{self.path}",
                    headers=headers,
                    timeout=60,
                    allow_redirects=False,
                )
                challenge = resp.headers.get("WWW-Authenticate", "")
                self._answer(
                    401,
                    {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                    resp.content if resp.status_code == 401 else b"",
                )

            def _handle(self) -> None:
                with proxy.lock:
                    rule = next((r for r in proxy.rules if r.fires(self.command, self.path)), None)
                mode = rule.mode if rule is not None else ""
                auth = self.headers.get("Authorization", "")
                if mode == "expire" and auth:
                    proxy.expired.add(auth)
                if auth and auth in proxy.expired:
                    self._read()
                    self._unauthorized()
                    return
                if mode == "reset":
                    n = int(self.headers.get("Content-Length") or 0)
                    proxy.received += len(self.rfile.read(n // 2))
                    proxy.log.append((self.command, self.path, -1))
                    self._cut()
                    return
                body = self._read()
                session = self.path.split("?")[0]
                held = proxy.sessions.get(session)
                sent_range = self.headers.get("Content-Range", "")
                if self.command == "PATCH":
                    proxy.ranges.append(sent_range)
                if self.command == "GET":
                    proxy.read_ranges.append(self.headers.get("Range", ""))
                given = re.match(r"(\d+)-", sent_range)
                start = int(given[1]) if given else held[0] if held else 0
                if mode == "reject":
                    self._answer(rule.status)  # type: ignore[union-attr]
                    return
                if proxy.answer_416 and self.command == "GET" and held:
                    # the spec's upload status, which such registries answer for a session
                    report = rule.at if mode == "stale" else held[0]  # type: ignore[union-attr]
                    headers = {"Range": f"0-{max(report - 1, 0)}", "Location": held[1]}
                    self._answer(204, headers)
                    return
                wrong = start != (held[0] if held else 0)
                if proxy.answer_416 and self.command == "PATCH" and given and wrong:
                    self._answer(416, {"Content-Type": "application/json"}, RANGE_INVALID)
                    return
                headers = _forwarded(self.headers)
                if proxy.ignore_range and self.command == "GET":
                    headers = {k: v for k, v in headers.items() if k.lower() != "range"}
                if mode == "break" and body:
                    cut = rule.at - start if rule.at else len(body) // 2  # type: ignore[union-attr]
                    body = body[: max(cut, 0)]
                    if given:
                        headers["Content-Range"] = f"{start}-{start + len(body) - 1}"
                resp = requests.request(
                    self.command,
                    f"http://{proxy.upstream}{self.path}",
                    data=body or None,
                    headers=headers,
                    timeout=60,
                    allow_redirects=False,
                )
                landed = re.fullmatch(r"0-(\d+)", resp.headers.get("Range", ""))
                if self.command == "PATCH" and resp.status_code == 202 and landed:
                    location = resp.headers.get("Location", "").replace(proxy.upstream, proxy.host)
                    proxy.sessions[session] = (int(landed.group(1)) + 1, location)
                if mode == "cut":
                    proxy.log.append((self.command, self.path, -resp.status_code))
                    self.send_response(resp.status_code)
                    for k, v in resp.headers.items():
                        if k.lower() not in ("transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.end_headers()
                    part = resp.content[: rule.at]  # type: ignore[union-attr]
                    self.wfile.write(part)
                    self.wfile.flush()
                    proxy.sent += len(part)
                    self.connection.shutdown(socket.SHUT_RDWR)  # a FIN: what was sent arrives
                    self.close_connection = True
                    return
                if mode == "slow":
                    proxy.log.append((self.command, self.path, resp.status_code))
                    self.send_response(resp.status_code)
                    for k, v in resp.headers.items():
                        if k.lower() not in ("transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.end_headers()
                    try:
                        for i in range(0, len(resp.content), 1 << 16):
                            self.wfile.write(resp.content[i : i + (1 << 16)])
                            self.wfile.flush()
                            proxy.sent += len(resp.content[i : i + (1 << 16)])
                            time.sleep(rule.delay)  # type: ignore[union-attr]
                    except OSError:  # the client went away
                        self.close_connection = True
                    return
                if mode in ("lost", "break"):
                    proxy.log.append((self.command, self.path, -resp.status_code))
                    self._cut()
                    return
                if mode == "after":
                    self._answer(rule.status)  # type: ignore[union-attr]
                    return
                out = {
                    k: v.replace(proxy.upstream, proxy.host) if k.lower() == "location" else v
                    for k, v in resp.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length", "connection")
                }
                self._answer(resp.status_code, out, resp.content)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _forwarded(headers: object) -> dict[str, str]:
    hop = ("host", "transfer-encoding", "content-length", "connection")
    return {k: v for k, v in headers.items() if k.lower() not in hop}  # type: ignore[attr-defined]


def _read_chunked(stream: object) -> bytes:
    out = b""
    while True:
        size = int(stream.readline().strip() or b"0", 16)  # type: ignore[attr-defined]
        if size == 0:
            stream.readline()  # type: ignore[attr-defined]
            return out
        out += stream.read(size)  # type: ignore[attr-defined]
        stream.readline()  # type: ignore[attr-defined]
