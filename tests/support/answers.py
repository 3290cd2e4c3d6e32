"""Real HTTP model servers on loopback whose answers are known: the two tracks of a shadow.

`ModelServer(answer)` serves POST /predict `{"instances": [...]}` with `{"predictions":
answer(instances)}` (other paths: 404), and GET /readyz; `raw` replaces the whole answer
(status, body) to play a candidate that answers garbage. `gate` (a threading.Event) holds
every /predict answer until it is set, so a test can prove something happened while the
candidate had not answered yet.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[list[Any]], list[Any]]


def label(x: list[float]) -> int:
    """The serving model's 'prediction': a function of the input both tracks can compute."""
    return int(sum(x)) % 10


class ModelServer:
    def __init__(
        self,
        answer: Answer | None = None,
        *,
        raw: Callable[[bytes], tuple[int, bytes]] | None = None,
        delay: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.answer = answer or (lambda xs: [label(x) for x in xs])
        self.raw, self.delay, self.gate = raw, delay, gate
        self.received = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits for a delayed ACK

            def log_message(self, *a: object) -> None:
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, b'{"status": "ready"}')

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/predict":
                    self._send(404, b'{"error": "not found"}')
                    return
                with server.lock:
                    server.received += 1
                if server.gate is not None:
                    server.gate.wait(30)
                if server.delay:
                    time.sleep(server.delay)
                if server.raw is not None:
                    self._send(*server.raw(body))
                    return
                try:
                    xs = json.loads(body)["instances"]
                except (ValueError, KeyError, TypeError):
                    self._send(400, b'{"error": "bad request"}')
                    return
                self._send(200, json.dumps({"predictions": server.answer(xs)}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]  # a client gone
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def servers(*made: ModelServer) -> Iterator[tuple[ModelServer, ...]]:
    for s in made:
        s.__enter__()
    try:
        yield made
    finally:
        for s in made:
            s.__exit__()


def main() -> None:
    """`python -m tests.support.answers DELAY`: a ModelServer in a process of its own (the
    benches keep the model servers out of the measuring process, as pods are); prints its
    port, serves until stdin closes."""
    import sys

    with ModelServer(delay=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as s:
        print(s.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
