"""A real Prometheus (Debian's package) on a free loopback port, scraping every second.

Prometheus cannot bind port 0, so a free port is picked and the start retried on another if
some process took it first (on_free_port).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.support.services import check_port, on_free_port


class PrometheusServer:
    def __init__(
        self,
        root: Path,
        targets: list[str],
        job: str = "model",
        rules: str = "",
        file_sd: Path | None = None,
    ) -> None:
        """`rules`: the text of a rule file (recording rules: `groups: [...]`), if any;
        `file_sd`: a target file (the podman target's NAME.targets.json) read as it changes."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "prometheus.yml"
        rule_files = ""
        if rules:
            (root / "rules.yml").write_text(rules)
            rule_files = f"rule_files: [{root / 'rules.yml'}]\n"
        self.config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            + rule_files
            + "scrape_configs:\n"
            + f"  - job_name: {job}\n"
            "    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: [{', '.join(targets)}]}}]\n"
            + (
                f"    file_sd_configs: [{{files: [{file_sd}], refresh_interval: 1s}}]\n"
                if file_sd is not None
                else ""
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.port = on_free_port(self._start)
        return self

    def _start(self, port: int) -> int:
        log = self.root / "prometheus.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                    return port
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        check_port(log.read_text())  # another process took the port: on_free_port tries another
        raise RuntimeError(f"prometheus did not start: {log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def query(self, expr: str) -> list[dict]:
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        return list(r.json()["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict]:
        """Until `expr` has a value (e.g. the first scrape landed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"{expr} had no value within {timeout}s")


class StaticTarget:
    """A scrape target serving metrics in Prometheus's text format, so the series a test
    queries were scraped by the real server (labels `job` and `instance` included).
    `exposition(n)` is the text of the n-th scrape (counters can grow)."""

    def __init__(self, exposition: Callable[[int], str]) -> None:
        scrapes = iter(range(1, 1 << 62))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(next(scrapes)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Gauges of two pods, a counter of predictions by class growing 90:10 each scrape, and a
# recording rule over the gauges: series the real server scraped and computed itself.
SERIES = """# TYPE lepton_test_error_ratio gauge
lepton_test_error_ratio{{pod="a"}} 0.01
lepton_test_error_ratio{{pod="b"}} 0.5
# TYPE lepton_test_predictions_total counter
lepton_test_predictions_total{{class="0"}} {zero}
lepton_test_predictions_total{{class="1"}} {one}
"""
RULES = """groups:
  - name: lepton-test
    rules:
      - record: pod:lepton_test_error_ratio:max
        expr: max(lepton_test_error_ratio)
"""


@contextmanager
def scraping(root: Path) -> Iterator[PrometheusServer]:
    """A real Prometheus that has scraped SERIES (twice, so a rate has two points) and
    evaluated RULES."""
    target = StaticTarget(lambda n: SERIES.format(zero=90 * n, one=10 * n))
    prom = PrometheusServer(root, targets=[target.address], rules=RULES)
    try:
        prom.start()
        prom.wait_for("pod:lepton_test_error_ratio:max")
        prom.wait_for("count_over_time(lepton_test_error_ratio[1m]) >= 2")
        yield prom
    finally:
        prom.stop()
        target.stop()
