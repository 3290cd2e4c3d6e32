"""Tiny HTTP backends on loopback for splitter tests: each answers its own name and counts
the requests it received (the splitter's counters are checked against these)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class Backend:
    def __init__(self, tag: str, status: int = 200, delay: float = 0.0) -> None:
        self.tag, self.status, self.delay = tag, status, delay
        self.hits = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits for a delayed ACK

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer._lock:
                    outer.hits += 1
                if outer.delay:
                    threading.Event().wait(outer.delay)
                body = outer.tag.encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Backend:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def backends(*tags: str, status: int = 200) -> Iterator[list[Backend]]:
    started = [Backend(t, status).start() for t in tags]
    try:
        yield started
    finally:
        for b in started:
            b.close()


def stop_splitters(root: Path) -> None:
    """Stop every splitter (nginx) a test's deploys started under `root`: they outlive the
    lepton-ci command that started them, as they must, but not the test. Found by their pid
    files, and by their command line where the files went with their directory (act removes
    its host workspace after a run)."""
    import os
    import signal

    from lepton_ci.rollout.splitter import Splitter

    for pid_file in root.rglob("*.splitter/nginx.pid"):
        prefix = pid_file.parent
        Splitter(prefix.parent, prefix.name.removesuffix(".splitter"), 0).stop()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if argv.startswith("nginx: master process") and f" -p {root}/" in argv:
            with suppress(ProcessLookupError):
                os.kill(int(cmdline.parent.name), signal.SIGQUIT)


@contextmanager
def splitters_stopped(root: Path) -> Iterator[None]:
    """For benches: the splitters their deploys start under `root` stop when they end."""
    try:
        yield
    finally:
        stop_splitters(root)
