"""Health windows against real local HTTP servers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lepton_ci.core.config import ChecksConfig
from lepton_ci.deploy import health

pytestmark = pytest.mark.unit


class Fake:
    """A tiny server whose answers a test can change while it runs."""

    def __init__(self):
        self.health_status = 200
        self.prediction = [0, 1]
        self.prom_value = "0.5"
        self.fail_first = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/api/v1/query"):
                    sample = {"metric": {}, "value": [0, fake.prom_value]}
                    data = {"resultType": "vector", "result": [sample]}
                    self._send(200, {"status": "success", "data": data})  # Prometheus's shape
                elif fake.fail_first > 0:
                    fake.fail_first -= 1
                    self._send(503, {"status": "warming"})
                else:
                    self._send(fake.health_status, {"status": "ok"})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self._send(200, {"predictions": fake.prediction, "score": 0.91})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.httpd.shutdown()


def checks(**kw):
    base = {
        "count": 4,
        "interval": 0,
        "golden": [
            {
                "path": "/predict",
                "request": {"instances": [[0]]},
                "expect": {"predictions": [0, 1], "score": 0.9},
                "tolerance": 0.02,
            }
        ],
    }
    return ChecksConfig.model_validate({**base, **kw})


def test_healthy_window_records_every_probe(fake):
    r = health.run(checks(latency={"path": "/healthz", "p95_ms": 2000}), fake.url)
    assert r.ok, r.summary
    assert len([p for p in r.probes if p.check == "http /healthz"]) == 4
    assert any(p.check.startswith("latency p95") and p.ok for p in r.probes)


def test_golden_outside_tolerance_fails(fake):
    fake.prediction = [1, 1]
    r = health.run(checks(), fake.url)
    assert not r.ok and "expected {'predictions': [0, 1], 'score': 0.9}" in r.summary


def test_tolerance_applies_to_numbers_only():
    assert health._close({"s": 0.91}, {"s": 0.9}, 0.02)
    assert not health._close({"s": 0.95}, {"s": 0.9}, 0.02)
    assert not health._close({"p": "1"}, {"p": 1}, 0.5)


def test_failure_threshold_tolerates_a_blip(fake):
    fake.fail_first = 1
    assert health.run(checks(failure_threshold=2), fake.url).ok
    fake.fail_first = 1
    assert not health.run(checks(failure_threshold=1), fake.url).ok


def test_latency_bound(fake):
    r = health.run(checks(latency={"path": "/healthz", "p95_ms": 0.0001}), fake.url)
    assert not r.ok and "p95 latency" in r.summary


def test_prometheus_query_threshold(fake):
    prom = {"url": fake.url, "query": "rate(errors[5m])", "max": 0.1}
    r = health.run(checks(prometheus=prom), fake.url)
    assert not r.ok and "prometheus" in r.summary
    fake.prom_value = "0.05"
    assert health.run(checks(prometheus=prom), fake.url).ok


def test_unreachable_service_fails_quickly():
    r = health.run(checks(count=2, timeout=1), "http://127.0.0.1:9")
    assert not r.ok and "ConnectionError" in r.summary


def test_p95():
    assert health.p95([float(i) for i in range(1, 101)]) == 95.0
    assert health.p95([3.0]) == 3.0


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from tests.support.prometheus import PrometheusServer

    server = PrometheusServer(tmp_path_factory.mktemp("prom"), targets=[]).start()
    yield server
    server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "ok", "detail"),
    [
        ("vector(0.05)", True, "value 0.05"),
        ("scalar(vector(0.05))", True, "value 0.05"),  # crashed with TypeError
        ("scalar(vector(0.5))", False, "value 0.5"),
        ("vector(0.5) > 1", False, "no data: the query returned an empty result"),  # IndexError
        ('"text"', False, "returned a string, not an instant vector or scalar"),
        ("up[1m]", False, "returned a matrix, not an instant vector or scalar"),
        ("rate(up)", False, "Prometheus refused the query 'rate(up)': HTTP 400 "),  # KeyError
    ],
)
def test_prometheus_check_against_the_real_prometheus(fake, prom, query, ok, detail):
    """Every result type Prometheus answers: a number in bounds passes, everything else is a
    failing probe that says why in Prometheus's words, never an exception."""
    r = health.run(checks(prometheus={"url": prom.url, "query": query, "max": 0.1}), fake.url)
    (probe,) = [p for p in r.probes if p.check.startswith("prometheus")]
    assert (probe.ok, r.ok) == (ok, ok), probe
    assert detail in probe.detail, probe.detail
    if query == "rate(up)":
        assert "parse error" in probe.detail or "expected type range vector" in probe.detail
