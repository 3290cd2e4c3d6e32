"""A small HTTP server for the digits model: the fitted scikit-learn pipeline, loaded with joblib.

GET /healthz  process is alive
GET /readyz   the model is loaded (with the version serving)
POST /predict {"instances": [[64 pixel values 0..16], ...]} -> {"predictions": [digit, ...]}
GET /metrics  Prometheus text format: requests by path and code, a /predict latency histogram,
              predictions by class, the version serving, process CPU, memory and start time
Environment: PORT (8080; 0 picks a free one), HOST (0.0.0.0), MODEL_PATH (model.joblib beside
this file), MODEL_VERSION (shown in /metrics and responses).
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib

MAX_BODY = 1 << 20
MAX_INSTANCES = 1000
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class Stats:
    def __init__(self, classes: list[int]) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        # Every class from the start, at 0: a series born at its first prediction is missed by
        # increase() until it has two samples, and a drift check would read the class as absent.
        self.predictions: dict[int, int] = dict.fromkeys(classes, 0)
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(
        self, path: str, code: int, seconds: float, predictions: list[int] | None = None
    ) -> None:
        with self.lock:
            self.requests[(path, code)] = self.requests.get((path, code), 0) + 1
            for c in predictions or []:
                self.predictions[c] = self.predictions.get(c, 0) + 1
            if path == "/predict":
                self.count += 1
                self.total += seconds
                for i, b in enumerate(BUCKETS):
                    if seconds <= b:
                        self.buckets[i] += 1

    def render(self, version: str) -> str:
        with self.lock:
            lines = [
                "# HELP digits_requests_total HTTP requests by path and status.",
                "# TYPE digits_requests_total counter",
            ]
            for (path, code), n in sorted(self.requests.items()):
                lines.append(f'digits_requests_total{{path="{path}",code="{code}"}} {n}')
            lines += [
                "# HELP digits_predictions_total Digits predicted, by class.",
                "# TYPE digits_predictions_total counter",
                *(
                    f'digits_predictions_total{{class="{c}"}} {n}'
                    for c, n in sorted(self.predictions.items())
                ),
                "# HELP digits_predict_seconds Latency of /predict.",
                "# TYPE digits_predict_seconds histogram",
            ]
            for b, n in zip(BUCKETS, self.buckets, strict=True):
                lines.append(f'digits_predict_seconds_bucket{{le="{b}"}} {n}')
            lines += [
                f'digits_predict_seconds_bucket{{le="+Inf"}} {self.count}',
                f"digits_predict_seconds_sum {self.total:.6f}",
                f"digits_predict_seconds_count {self.count}",
                "# HELP digits_model_info The version serving.",
                "# TYPE digits_model_info gauge",
                f'digits_model_info{{version="{version}"}} 1',
                *_process_metrics(),
            ]
            return "\n".join(lines) + "\n"


def _process_metrics() -> list[str]:
    """CPU seconds, resident memory and start time of this process, from /proc (Linux)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return []
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    # proc(5) fields utime 14, stime 15, starttime 22, rss 24; index 0 here is field 3.
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    return [
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {cpu:.2f}",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {int(stat[21]) * page}",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {boot + int(stat[19]) / ticks:.2f}",
    ]


class App:
    def __init__(self, model: Any, version: str) -> None:
        self.model = model  # a fitted scikit-learn estimator
        self.version = version
        self.stats = Stats([int(c) for c in model.classes_])

    def predict(self, body: bytes) -> tuple[int, dict]:
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        instances = data.get("instances") if isinstance(data, dict) else None
        if not isinstance(instances, list) or not instances:
            return 400, {"error": 'expected {"instances": [[64 numbers], ...]}'}
        if len(instances) > MAX_INSTANCES:
            return 413, {"error": f"at most {MAX_INSTANCES} instances per request"}
        for i, x in enumerate(instances):
            ok = (
                isinstance(x, list)
                and len(x) == 64
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x)
            )
            if not ok:
                return 400, {"error": f"instance {i} must be a list of 64 numbers"}
        preds = [int(c) for c in self.model.predict(instances)]
        return 200, {"predictions": preds, "model_version": self.version}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "digits-serve"

        def log_message(self, fmt: str, *args: object) -> None:  # one line, no client address
            pass

        def _send(self, code: int, body: str | dict, ctype: str = "application/json") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            t0 = time.perf_counter()
            if self.path == "/healthz":
                code, body = 200, {"status": "ok"}
            elif self.path == "/readyz":
                code, body = 200, {"status": "ready", "model_version": app.version}
            elif self.path == "/metrics":
                self._send(200, app.stats.render(app.version), "text/plain; version=0.0.4")
                app.stats.observe("/metrics", 200, time.perf_counter() - t0)
                return
            else:
                code, body = 404, {"error": "not found"}
            self._send(code, body)
            app.stats.observe(self.path if code != 404 else "other", code, time.perf_counter() - t0)

        def do_POST(self) -> None:
            t0 = time.perf_counter()
            if self.path != "/predict":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                code, body = 413, {"error": "body too large"}
            else:
                code, body = app.predict(self.rfile.read(length))
            self._send(code, body)
            preds = body.get("predictions", []) if code == 200 else []
            app.stats.observe("/predict", code, time.perf_counter() - t0, preds)

    return Handler


def serve(host: str, port: int, model_path: Path, version: str) -> ThreadingHTTPServer:
    app = App(joblib.load(model_path), version)
    return ThreadingHTTPServer((host, port), make_handler(app))


def main() -> None:
    here = Path(__file__).parent
    server = serve(
        os.environ.get("HOST", "0.0.0.0"),
        int(os.environ.get("PORT", "8080")),
        Path(os.environ.get("MODEL_PATH", here / "model.joblib")),
        os.environ.get("MODEL_VERSION", "dev"),
    )
    print(f"serving on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
