"""A real Prometheus (Debian's package) on a free loopback port, scraping every second.

Prometheus cannot bind port 0, so a free port is picked and the start retried on another if
some process took it first (on_free_port).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from tests.support.services import check_port, on_free_port


class PrometheusServer:
    def __init__(self, root: Path, targets: list[str], job: str = "model") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            "    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: [{', '.join(targets)}]}}]\n"
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
