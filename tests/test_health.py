"""Health windows against real local HTTP servers."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lepton_ci.core.config import ChecksConfig, DeployConfig
from lepton_ci.deploy import health
from lepton_ci.deploy.deployer import Deployer, DeployFailed
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import FileStore

pytestmark = pytest.mark.unit


class Fake:
    """A tiny server whose answers a test can change while it runs."""

    def __init__(self):
        self.health_status = 200
        self.prediction = [0, 1]
        self.prom_value = "0.5"
        self.prom_answer: tuple[str, bytes] | None = None  # (content type, body) instead
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
                if self.path.startswith("/api/v1/query") and fake.prom_answer is not None:
                    self._raw(*fake.prom_answer)
                elif self.path.startswith("/api/v1/query"):
                    sample = {"metric": {}, "value": [0, fake.prom_value]}
                    data = {"resultType": "vector", "result": [sample]}
                    self._send(200, {"status": "success", "data": data})  # Prometheus's shape
                elif fake.fail_first > 0:
                    fake.fail_first -= 1
                    self._send(503, {"status": "warming"})
                else:
                    self._send(fake.health_status, {"status": "ok"})

            def _raw(self, content_type, body):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                try:
                    if body == b"slow":  # a byte a second, for two minutes
                        for _ in range(120):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(1)
                    else:
                        self.wfile.write(body)
                except OSError:
                    pass  # the client hung up, as it should

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self._send(200, {"predictions": fake.prediction, "score": 0.91})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
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


def _vector(value: bytes) -> tuple[str, bytes]:
    return "application/json", (
        b'{"status": "success", "data": {"resultType": "vector", "result": '
        b'[{"metric": {}, "value": [0, %s]}]}}' % value
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (("application/json", b"slow"), "no complete answer within 2s"),
        (
            ("text/html; charset=utf-8", b"<!doctype html><title>Sign in</title>"),
            "answered with an HTML page (text/html), not Prometheus's JSON (HTTP 200)",
        ),
        (_vector(b"true"), "not a number as Prometheus writes it: True"),
        (_vector(b'"1_000"'), "not a number as Prometheus writes it: '1_000'"),
        (("application/json", b'{"ok": true}'), "JSON without Prometheus's `status`"),
    ],
)
def test_a_prometheus_check_on_what_is_not_prometheus_fails_saying_so(fake, answer, said):
    """A login page was "Prometheus refused the query"; `true` and "1_000" were numbers; a
    server trickling a byte a second held the health window for as long as it liked."""
    fake.prom_answer = answer
    prom = {"url": fake.url, "query": "up", "min": 0}
    r = health.run(checks(timeout=2, prometheus=prom), fake.url)
    (probe,) = [p for p in r.probes if p.check.startswith("prometheus")]
    assert not probe.ok and not r.ok
    assert said in probe.detail and "refused" not in probe.detail, probe.detail


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from tests.support.prometheus import scraping

    with scraping(tmp_path_factory.mktemp("prom")) as server:
        yield server


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "ok", "detail"),
    [
        ("vector(0.05)", True, "value 0.05"),
        ('lepton_test_error_ratio{pod="a"}', True, "value 0.01"),  # scraped
        ("lepton_test_error_ratio", False, "value 0.5 out of bounds (max 0.1)"),  # one pod is
        ("pod:lepton_test_error_ratio:max", False, "value 0.5 out of bounds"),  # a rule
        ("vector(1) / 0", False, "value inf out of bounds"),
        ("scalar(vector(0.05))", True, "value 0.05"),  # crashed with TypeError
        ("scalar(vector(0.5))", False, "value 0.5"),
        ("vector(0.5) > 1", False, "no data: the query returned an empty result"),  # IndexError
        ('"text"', False, "returned a string, not an instant vector or scalar"),
        ("up[1m]", False, "returned a matrix, not an instant vector or scalar"),
        ("lepton_test_error_ratio + on() vector(1)", False, "HTTP 422 multiple matches"),
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


class _Pods:
    """A target that runs whatever it is given at once and knows which image serves."""

    serving = ""

    def apply(self, name, text):
        self.serving = next(line for line in text.split() if "@sha256:" in line)
        return []

    def wait(self, text, budget, ready_url):
        return 0.0

    def remove(self, name):
        pass

    def scale_to_zero(self, name):
        pass


def _image(n):
    return f"r/digits@sha256:{n:064x}"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("scalar(pod:lepton_test_error_ratio:max)", "value 0.5 out of bounds (max 0.1)"),
        ('lepton_test_error_ratio{pod="c"}', "no data: the query returned an empty result"),
        ("rate(up)", "Prometheus refused the query 'rate(up)': HTTP 400"),
        ("up[1m]", "returned a matrix"),
    ],
)
def test_a_deploy_whose_prometheus_check_fails_is_reverted(tmp_path, prom, query, why):
    """A scalar answer raised TypeError after the new release was applied: the deploy died,
    the revision stayed pending and nothing was reverted. The second release's health is
    judged by `query`, the first's by a healthy one; both by the real health check."""
    pods = _Pods()

    def check(cfg, url):
        q = query if pods.serving.endswith(_image(2)) else 'lepton_test_error_ratio{pod="a"}'
        prometheus = {"url": prom.url, "query": q, "max": 0.1}
        return health.run(
            ChecksConfig.model_validate({**cfg.model_dump(), "prometheus": prometheus}), url
        )

    env = {"namespace": "ns", "url": "http://127.0.0.1:1", "checks": {"count": 1, "http": []}}
    cfg = DeployConfig.model_validate({"target": "kubernetes", "environments": {"prod": env}})
    store = FileStore(tmp_path / "state")
    deployer = Deployer("digits", "prod", cfg, tmp_path, target=pods, store=store, checker=check)

    for n in (1, 2):
        release = Release("digits", f"v0.1.{n}", _image(n), f"d{n}", 0)
        if n == 1:
            deployer.deploy(release)
            continue
        with pytest.raises(DeployFailed) as e:
            deployer.deploy(release)
    assert why in str(e.value)
    revs = sorted(store.list(), key=lambda r: r.number)
    assert [(r.number, r.status, r.rollback_of) for r in revs] == [
        (1, "superseded", None),
        (2, "failed", None),
        (3, "deployed", 1),
    ]
    assert why in revs[1].reason and revs[1].probes[-1].check == f"prometheus {query}"
