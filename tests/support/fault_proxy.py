"""A forwarding HTTP proxy in front of a real registry that can fail chosen requests once."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Rule:
    method: str
    path: str
    status: int
    times: int = 1
    forward: bool = False  # pass the request on first: the write lands, the answer is lost


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, int]] = []
        self.received = 0  # request body bytes: what clients uploaded through the proxy
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                proxy.received += len(body or b"")
                hop = ("host", "transfer-encoding", "content-length", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                for r in proxy.rules:
                    if r.times > 0 and r.method == self.command and re.search(r.path, self.path):
                        r.times -= 1
                        if r.forward:
                            requests.request(
                                self.command,
                                f"http://{proxy.upstream}{self.path}",
                                data=body,
                                headers=headers,
                                timeout=60,
                                allow_redirects=False,
                            )
                        proxy.log.append((self.command, self.path, r.status))
                        self.send_response(r.status)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                resp = requests.request(
                    self.command,
                    f"http://{proxy.upstream}{self.path}",
                    data=body,
                    headers=headers,
                    timeout=60,
                    allow_redirects=False,
                )
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
