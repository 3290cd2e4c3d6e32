"""SLO evaluation against a real Prometheus, the breach/act loop, PSI and the config's errors.

The loop runs on the real deployer and file store with a target that only records what it is
asked to apply (the podman target is exercised in test_watch_e2e.py).
"""

import json
import math
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lepton_ci.core.config import SLO
from lepton_ci.core.context import Context
from lepton_ci.core.errors import ConfigError, SLOBreached, WatchError
from lepton_ci.core.printer import to_json
from lepton_ci.core.prometheus import MAX_ANSWER, Prometheus
from lepton_ci.deploy.deployer import Deployer
from lepton_ci.deploy.health import Report
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import FileStore, history_text
from lepton_ci.watch import slo
from lepton_ci.watch.operation import Round, WatchOperation
from tests.conftest import EXAMPLE, EXAMPLE_OUTPUTS, parse_outputs
from tests.support.prometheus import scraping

CONFIG = """
models:
  digits:
    evaluate: "true"
    metrics: [metrics.json]
    deploy:
      environments:
        staging:
          host_port: 18080
          watch:
            for: {for_}
            on_breach: {on_breach}
            slos:
{slos}
"""
ONE = "              - {name: a, query: up, max: 1}"


# -- unit: PSI, references, config -----------------------------------------------------------


@pytest.mark.unit
def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    ref = {str(c): 0.1 for c in range(10)}
    assert slo.psi(ref, {str(c): 50 for c in range(10)}) == pytest.approx(0.0)
    shifted = {**{str(c): 40.0 for c in range(10)}, "7": 140.0}
    # by hand: one class at 0.28 instead of 0.1, nine at 0.08
    expected = (0.28 - 0.1) * math.log(2.8) + 9 * (0.08 - 0.1) * math.log(0.8)
    assert slo.psi(ref, shifted) == pytest.approx(expected)
    one_class = slo.psi(ref, {"7": 500})
    assert math.isfinite(one_class) and one_class > 2
    with pytest.raises(ValueError):
        slo.psi(ref, {})


@pytest.mark.unit
def test_reference_shares_come_from_the_record_metrics_prefix():
    metrics = {"accuracy": 0.97, "class_share.0": 0.2, "class_share.1": 0.8, "class_shares": 1}
    assert slo.reference_shares(metrics, "class_share") == {"0": 0.2, "1": 0.8}


def _write(tmp_path: Path, slos: str, for_: int = 2, on_breach: str = "rollback") -> Path:
    cfg = tmp_path / "lepton.yaml"
    cfg.write_text(CONFIG.format(slos=slos, for_=for_, on_breach=on_breach))
    return cfg


@pytest.mark.unit
@pytest.mark.parametrize(
    ("slos", "needle"),
    [
        ("              - {name: a, query: up}", "`a` needs `max` or `min`"),
        ("              - {name: a, max: 1}", "exactly one of `query` or `drift`"),
        (
            "              - {name: a, query: up, max: 1, drift: {metric: m, max_psi: 1}}",
            "exactly one of",
        ),
        ("              - {name: a, drift: {metric: m, max_psi: 0}}", "greater than 0"),
        ("              - {name: a, drift: {metric: m, label: 'a-b', max_psi: 1}}", "label name"),
        (f"{ONE}\n{ONE}", "repeated: a"),
        ("              - {name: 'a b', query: up, max: 1}", "SLO name `a b`"),
        ('              - {name: "a\\n", query: up, max: 1}', "SLO name `a\n`"),
        (
            '              - {name: a, drift: {metric: m, label: "class\\n", max_psi: 1}}',
            "label name",
        ),
        ("              - {name: a, query: up, maxx: 1}", "unknown key; did you mean `max`?"),
        (
            "              - {name: a, drift: {metric: m, max_psi: 1, window: '5m]) or vector(1'}}",
            "not a PromQL duration",
        ),
        (
            "              - {name: a, drift: {metric: 'm) or vector(1', max_psi: 1}}",
            "not a Prometheus metric name",
        ),
    ],
)
def test_bad_slo_config_names_file_line_and_fix(tmp_path, slos, needle):
    from lepton_ci.core import config

    with pytest.raises(ConfigError) as e:
        config.load(_write(tmp_path, slos))
    assert needle in str(e.value) and "lepton.yaml:" in str(e.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("interval", "1e308", "less than or equal"),
        ("timeout", "1e308", "less than or equal"),
        ("for", "10000000", "less than or equal"),
        ("metrics_prefix", "'x{a=\"b\"}'", "not a Prometheus metric name prefix"),
    ],
)
def test_out_of_range_watch_settings_are_config_errors(tmp_path, key, value, needle):
    """time.sleep(1e308) and a 1e308 s socket timeout raise OverflowError (exit 70), the
    PrometheusRule's hold (for x interval) would overflow int(), and a prefix that is no metric
    name would break every dashboard query."""
    from lepton_ci.core import config

    text = (
        _write(tmp_path, ONE)
        .read_text()
        .replace("            for: 2\n", f"            for: 2\n            {key}: {value}\n")
        .replace("            for: 2\n            for:", "            for:")
    )
    (tmp_path / "lepton.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path / "lepton.yaml")
    assert f"watch.{key}" in str(e.value) and needle in str(e.value)


# -- against a real Prometheus ---------------------------------------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    with scraping(tmp_path_factory.mktemp("prom")) as server:
        yield server


def _slo(**kw) -> SLO:
    return SLO.model_validate({"name": "s", **kw})


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "bounds", "status", "value"),
    [
        ("vector(0.5)", {"max": 0.1}, "breach", 0.5),
        ("vector(0.05)", {"max": 0.1}, "ok", 0.05),
        ("vector(0.05)", {"min": 0.1}, "breach", 0.05),
        ("scalar(vector(2))", {"min": 1, "max": 3}, "ok", 2.0),
        ("vector(0) / 0", {"max": 0.1}, "no-data", None),  # 0/0: no traffic yet
        ("sum(no_such_metric)", {"max": 0.1}, "no-data", None),
        ("rate(up)", {"max": 0.1}, "error", None),  # a refused query is not a breach
        ("up[1m]", {"max": 0.1}, "error", None),  # a range vector is no single number
    ],
)
def test_query_slo_states(prom, query, bounds, status, value):
    ev = slo.evaluate(Prometheus(prom.url), _slo(query=query, **bounds))
    assert (ev.status, ev.value) == (status, value), ev
    if status == "error":
        assert "refused" in ev.detail or "range vector" in ev.detail or "matrix" in ev.detail


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "bounds", "status", "value", "said"),
    [
        ("lepton_test_error_ratio", {"max": 0.1}, "breach", 0.5, ""),  # scraped, two pods
        ("pod:lepton_test_error_ratio:max", {"max": 0.6}, "ok", 0.5, ""),  # a recording rule
        ("scalar(pod:lepton_test_error_ratio:max)", {"max": 0.1}, "breach", 0.5, ""),
        ("vector(1) / 0", {"max": 0.1}, "breach", math.inf, ""),  # "+Inf" is a value
        ('lepton_test_error_ratio{pod="c"}', {"max": 0.1}, "no-data", None, "no value"),
        ("lepton_test_error_ratio[1m]", {"max": 0.1}, "error", None, "returned a matrix"),
        ('"text"', {"max": 0.1}, "error", None, "returned a string"),
        (  # Prometheus parses it, then refuses to run it: HTTP 422, its words kept
            "lepton_test_error_ratio + on() vector(1)",
            {"max": 0.1},
            "error",
            None,
            "Prometheus refused the query 'lepton_test_error_ratio + on() vector(1)': HTTP 422 "
            "multiple matches for labels",
        ),
        (
            "rate(lepton_test_error_ratio)",
            {"max": 0.1},
            "error",
            None,
            'HTTP 400 invalid parameter "query": 1:6: parse error: expected type range vector',
        ),
    ],
)
def test_every_answer_of_the_real_prometheus(prom, query, bounds, status, value, said):
    """Each result type the real server gives, from series it scraped and a rule it evaluated:
    a number is judged, anything else is an error (never a breach) in Prometheus's words."""
    ev = slo.evaluate(Prometheus(prom.url, retries=0), _slo(query=query, **bounds))
    assert (ev.status, ev.value) == (status, value), ev
    assert said in ev.detail, ev.detail


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("reference", "status"), [({"0": 0.9, "1": 0.1}, "ok"), ({"0": 0.1, "1": 0.9}, "breach")]
)
def test_drift_against_counters_the_real_prometheus_scraped(prom, reference, status):
    drift = _slo(drift={"metric": "lepton_test_predictions_total", "max_psi": 0.2, "window": "1m"})
    ev = slo.evaluate(Prometheus(prom.url, retries=0), drift, reference)
    assert ev.status == status, ev
    assert "most frequent class 0 (90%)" in ev.detail, ev.detail


@pytest.mark.e2e
def test_worst_series_speaks_for_the_slo(prom):
    q = (
        'label_replace(vector(0.01), "pod", "a", "", "") '
        'or label_replace(vector(0.5), "pod", "b", "", "")'
    )
    ev = slo.evaluate(Prometheus(prom.url), _slo(query=q, max=0.1))
    assert (ev.status, ev.value) == ("breach", 0.5)


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    ["prometheus:9090", "http://[::1", "ftp://x", "http://host:99999", f"http://{'a' * 64}.io"],
)
def test_a_malformed_prometheus_url_is_a_clear_error(url):
    try:
        ev = slo.evaluate(Prometheus(url, retries=0), _slo(query="vector(1)", max=0))
    except WatchError as e:
        assert "not an http(s) URL" in str(e) or "is malformed" in str(e)
    else:
        assert ev.status == "error" and "cannot ask Prometheus" in ev.detail


@pytest.fixture
def refused_port():
    """A loopback port that refuses connections: bound, never listening, so no server can take
    it meanwhile (as one could a port picked with free_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.e2e
def test_unreachable_prometheus_is_an_error_after_bounded_retries(refused_port):
    waits: list[float] = []
    p = Prometheus(f"http://127.0.0.1:{refused_port}", timeout=1, retries=2, sleep=waits.append)
    ev = slo.evaluate(p, _slo(query="vector(1)", max=0))
    assert ev.status == "error" and "did not answer after 3 tries" in ev.detail
    assert waits == [0.5, 1.0]


class _Answer(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def odd_prometheus():
    """A server that answers 200 with whatever body a test sets: a proxy, a wrong port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.unit
@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "success", "data": [1]}',
        b'{"status": "success", "data": "x"}',
        b'{"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}}',
        b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": [1, 2], '
        b'"value": [0, "1"]}]}}',
        b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, '
        b'"value": [0, "1"]}]}}',
        b'{"status": "success", "data": {"resultType": "scalar", "result": "0.5"}}',
        b'{"status": "success", "data": {"resultType": "table", "result": []}}',
        b'{"message": "Not Found"}',  # another API's JSON error
        b'"ok"',
        b"[" * 100_000,  # crashed with RecursionError
        b"\xff\xfe not JSON",
    ],
)
def test_an_answer_not_in_prometheus_shape_is_said_to_be_not_prometheus(odd_prometheus, body):
    """Not "no data" (nothing would ever be judged) nor "refused the query" (the query is fine):
    whatever answered is not Prometheus."""
    _Answer.body = body
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    ev = slo.evaluate(Prometheus(url, retries=0), _slo(query="up", max=1))
    assert ev.status == "error", ev
    assert "not Prometheus's JSON (HTTP 200)" in ev.detail and "refused" not in ev.detail, ev
    assert len(ev.detail) < 1000  # it is recorded and posted: it stays short


@pytest.mark.unit
def test_a_huge_refusal_is_kept_short(odd_prometheus):
    _Answer.body = b'{"status": "error", "error": "%s"}' % (b"x" * 100_000)
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    ev = slo.evaluate(Prometheus(url, retries=0), _slo(query="up", max=1))
    assert ev.status == "error" and "refused the query 'up': HTTP 200 xxx" in ev.detail, ev
    assert len(ev.detail) < 1000


@pytest.mark.unit
@pytest.mark.parametrize(
    ("reference", "count"),
    [({"0": 0.0, "1": 0.0}, "500"), ({"0": 0.5, "1": 0.5}, "+Inf")],
)
def test_drift_that_cannot_be_measured_is_an_error_not_a_breach(odd_prometheus, reference, count):
    """All-zero recorded shares (an empty evaluation set) or an infinite live count have no
    PSI: that must never crash the watcher nor revert a release."""
    _Answer.body = (
        b'{"status": "success", "data": {"resultType": "vector", "result": ['
        b'{"metric": {"class": "0"}, "value": [0, "%s"]}]}}' % count.encode()
    )
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    drift = _slo(drift={"metric": "m", "max_psi": 0.2})
    ev = slo.evaluate(Prometheus(url, retries=0), drift, reference)
    assert ev.status == "error", ev


@pytest.mark.unit
def test_drift_detail_names_the_most_frequent_class(odd_prometheus):
    """The most frequent live class is the one a reader checks first; it is named whatever
    order Prometheus lists the series in."""
    _Answer.body = (
        b'{"status": "success", "data": {"resultType": "vector", "result": ['
        b'{"metric": {"class": "3"}, "value": [0, "100"]}, '
        b'{"metric": {"class": "7"}, "value": [0, "400"]}, '
        b'{"metric": {"class": "9"}, "value": [0, "0"]}]}}'
    )
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    drift = _slo(drift={"metric": "m", "max_psi": 0.2})
    ev = slo.evaluate(Prometheus(url, retries=0), drift, {"3": 0.5, "7": 0.5})
    assert ev.status == "breach", ev
    assert ev.detail == "500 predictions; most frequent class 7 (80%)"


@pytest.mark.unit
def test_label_values_cannot_forge_workflow_commands_or_reorder_the_text(odd_prometheus):
    _Answer.body = (
        b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": '
        b'{"class": "7\\n::error::forged \\u202egnp.exe"}, "value": [0, "500"]}]}}'
    )
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    drift = _slo(drift={"metric": "m", "max_psi": 0.2})
    ev = slo.evaluate(Prometheus(url, retries=0), drift, {"0": 1.0})
    assert ev.status == "breach" and "\n" in ev.detail  # the data itself is kept as it came
    line = ev.text()
    assert "\n" not in line and "\u202e" not in line, line
    assert "class 7\\n::error::forged \\u202egnp.exe" in line


@pytest.mark.unit
def test_a_password_in_the_prometheus_url_is_never_shown(odd_prometheus, refused_port):
    _Answer.body = b'{"status": "error", "error": "bad"}'
    for url in (
        f"http://watch:s3cret@127.0.0.1:{odd_prometheus.server_port}",  # refused query
        f"http://watch:s3cret@127.0.0.1:{refused_port}",  # unreachable
    ):
        ev = slo.evaluate(Prometheus(url, retries=0, timeout=2), _slo(query="up", max=1))
        assert ev.status == "error" and "s3cret" not in ev.detail, ev
    with pytest.raises(WatchError) as e:
        Prometheus("ftp://watch:s3cret@host")
    assert "s3cret" not in str(e.value) and "***@host" in str(e.value)


class RecordingTarget:
    """Stands in for pods: remembers what was applied; the deployer's logic is the real one."""

    def __init__(self):
        self.applied: list[str] = []

    def apply(self, name, text):
        self.applied.append(text)
        return []

    def wait(self, text, budget, ready_url):
        return 0.0

    def remove(self, name):
        self.applied.append("removed")

    def scale_to_zero(self, name):
        self.remove(name)


def _watcher(tmp_path, prom_url, slos, *, for_=2, on_breach="rollback", releases=2):
    cfg_path = _write(tmp_path, slos, for_, on_breach)
    ctx = Context.load(str(cfg_path), env={**os.environ, "LEPTON_PROMETHEUS_URL": prom_url})
    _, model = ctx.cfg.model("digits")
    target = RecordingTarget()
    dep = Deployer(
        "digits",
        "staging",
        model.deploy,
        tmp_path,
        target=target,
        store=FileStore(tmp_path / "state"),
        checker=lambda checks, url: Report(True, [], "ok"),
        log=lambda m: None,
    )
    for n in range(len(dep.history()) + 1, len(dep.history()) + releases + 1):
        dep.deploy(Release("digits", f"v0.1.{n}", f"r/digits@sha256:{n:064x}", "d", 0))
    sleeps: list[float] = []
    op = WatchOperation(ctx, "staging", deployer=dep, sleep=sleeps.append)
    return op, dep, target, sleeps


@pytest.mark.e2e
def test_breach_on_for_consecutive_evaluations_reverts_through_the_deployer(tmp_path, prom):
    slos = (
        "              - {name: errors, query: 'vector(0.5)', max: 0.01}\n"
        "              - {name: fine, query: 'vector(0)', max: 0.01}"
    )
    op, dep, target, sleeps = _watcher(tmp_path, prom.url, slos, for_=3)
    rounds = []
    with pytest.raises(SLOBreached) as e:
        op.run(report=rounds.append)
    assert [r.status for r in rounds] == ["healthy", "healthy", "breached"]  # for: 3
    assert [r.breached for r in rounds] == [[], [], ["errors"]]
    assert sleeps == [30.0, 30.0]
    assert "errors: breach 0.5 (bound <= 0.01)" in str(e.value)
    assert "rolled back: revision 4 serves v0.1.1" not in str(e.value)  # 1 is the healthy one
    revs = dep.history()
    assert [(r.number, r.status, r.version) for r in revs] == [
        (1, "superseded", "v0.1.1"),
        (2, "failed", "v0.1.2"),
        (3, "deployed", "v0.1.1"),
    ]
    assert revs[1].reason == "SLO breached after release: errors"
    (b,) = revs[1].breaches
    assert (b.slo, b.value, b.bound, b.action) == ("errors", 0.5, "<= 0.01", "rollback")
    assert revs[2].rollback_of == 1 and revs[2].description == "rollback to 1 (watch)"
    assert "[SLO breached: errors]" in history_text("staging", revs).splitlines()[1]
    assert target.applied[-1] == revs[0].manifests  # the healthy revision's own manifests
    assert "Rolled back: revision 3 serves v0.1.1 again" in str(e.value)


@pytest.mark.e2e
def test_alert_only_records_and_leaves_the_release(tmp_path, prom):
    slos = "              - {name: errors, query: 'vector(0.5)', max: 0.01}"
    op, dep, target, _ = _watcher(tmp_path, prom.url, slos, on_breach="alert")
    applied = len(target.applied)
    with pytest.raises(SLOBreached):
        op.run(once=True)  # with --once one breaching evaluation is enough
    revs = dep.history()
    assert [r.status for r in revs] == ["superseded", "deployed"]
    assert [b.slo for b in revs[1].breaches] == ["errors"]
    assert len(target.applied) == applied


@pytest.mark.e2e
def test_judge_only_leaves_a_breach_to_the_job_that_acts(tmp_path, prom, gh_files):
    """model-watch's cron judge has no environment (no credentials to revert, no deployment):
    a breach it finds is neither recorded nor reverted there, the step succeeds and says
    `act=true`; the job that acts judges again and reverts."""
    from tests.conftest import parse_outputs

    slos = "              - {name: errors, query: 'vector(0.5)', max: 0.01}"
    op, dep, target, _ = _watcher(tmp_path, prom.url, slos)
    applied = len(target.applied)
    r = op.run(once=True, judge_only=True)
    assert r.status == "breached" and r.breached == ["errors"]
    assert "left to the job that acts (rollback)" in r.action
    assert [(x.status, x.breaches) for x in dep.history()] == [("superseded", []), ("deployed", [])]
    assert len(target.applied) == applied
    out = parse_outputs(gh_files["output"].read_text())
    assert (out["act"], out["status"], out["breached"]) == ("true", "breached", "errors")
    with pytest.raises(SLOBreached):  # the acting job
        op.run(once=True)
    assert [x.status for x in dep.history()] == ["superseded", "failed", "deployed"]
    assert parse_outputs(gh_files["output"].read_text())["act"] == "false"
    with pytest.raises(WatchError, match="--judge-only judges once"):
        op.run(judge_only=True)


@pytest.mark.e2e
def test_a_revision_put_back_does_not_inherit_the_breaches_of_the_one_it_copies(tmp_path, prom):
    slos = "              - {name: errors, query: 'vector(0.5)', max: 0.01}"
    op, dep, _, _ = _watcher(tmp_path, prom.url, slos, on_breach="alert")
    with pytest.raises(SLOBreached):
        op.run(once=True)  # alert: breach recorded on revision 2, which keeps serving
    dep.deploy(Release("digits", "v0.1.3", f"r/digits@sha256:{3:064x}", "d", 0))
    dep.rollback()  # back to revision 2's release, as revision 4
    revs = dep.history()
    assert [(r.number, r.version, len(r.breaches)) for r in revs[1:]] == [
        (2, "v0.1.2", 1),
        (3, "v0.1.3", 0),
        (4, "v0.1.2", 0),
    ]
    assert "SLO breached" not in history_text("staging", revs).splitlines()[-1]


@pytest.mark.unit
def test_lookback_is_the_longest_range_a_query_reads():
    q = "sum(rate(a[5m])) / sum(rate(b[1h30m:1m])) + max_over_time(c[90s])"
    assert slo.lookback(_slo(query=q, max=1)) == (5400, "1h30m")
    assert slo.lookback(_slo(query="up", max=1)) == (0, "")
    assert slo.lookback(_slo(drift={"metric": "m", "max_psi": 1, "window": "2m"})) == (120, "2m")


@pytest.mark.e2e
def test_a_release_younger_than_the_query_window_is_not_judged_by_the_one_before(tmp_path, prom):
    """Right after a deploy or a rollback (the example workflow watches then), a 5m window
    still holds the previous release's errors: judging the new one by them would revert a
    good release. Its SLOs are no-data until it has served for the window."""
    slos = "              - {name: errors, query: 'max_over_time(vector(0.5)[5m:1m])', max: 0.01}"
    op, dep, _, _ = _watcher(tmp_path, prom.url, slos, for_=1)
    r = op.run(once=True)
    (ev,) = r.evaluations
    assert (r.status, ev.status) == ("healthy", "no-data")
    assert "less than the 5m the query reads: it would be judged by the release" in ev.detail
    assert [x.status for x in dep.history()] == ["superseded", "deployed"]
    rev = dep.history()[-1]
    rev.finished_at = "2020-01-01T00:00:00+00:00"  # served long enough
    dep.store.save(rev)
    with pytest.raises(SLOBreached):
        op.run(once=True)
    assert [x.status for x in dep.history()] == ["superseded", "failed", "deployed"]


@pytest.mark.e2e
def test_errors_never_act_and_break_the_streak(tmp_path, prom):
    slos = "              - {name: broken, query: 'rate(up)', max: 0.01}"
    op, dep, _, _ = _watcher(tmp_path, prom.url, slos, for_=1)
    rounds = []
    assert op.run(count=3, report=rounds.append).status == "unknown"
    assert [r.status for r in rounds] == ["unknown"] * 3
    with pytest.raises(WatchError) as e:
        op.run(once=True)
    assert "this is not a breach" in str(e.value)
    assert [r.status for r in dep.history()] == ["superseded", "deployed"]
    assert not any(r.breaches for r in dep.history())


@pytest.mark.e2e
def test_prometheus_down_costs_one_round_of_retries_per_evaluation_not_one_per_slo(
    tmp_path, refused_port
):
    slos = "\n".join(f"              - {{name: s{i}, query: up, max: 1}}" for i in range(3))
    op, *_ = _watcher(tmp_path, f"http://127.0.0.1:{refused_port}", slos, for_=1)
    waits: list[float] = []
    op.prometheus.sleep = waits.append
    r = op.evaluate()
    assert [e.status for e in r.evaluations] == ["error"] * 3
    assert waits == [0.5, 1.0]  # the first SLO's retries only
    assert "did not answer after 3 tries" in r.evaluations[0].detail
    assert r.evaluations[2].detail.startswith("not asked: Prometheus at")
    waits.clear()
    op.evaluate()  # the next evaluation asks again
    assert waits == [0.5, 1.0]


@pytest.mark.e2e
def test_drift_without_a_reference_is_an_error_not_a_breach(tmp_path, prom):
    slos = "              - {name: drift, drift: {metric: up, label: job, max_psi: 0.2}}"
    op, *_ = _watcher(tmp_path, prom.url, slos, for_=1)
    r = op.run(count=1)
    assert r.status == "unknown"
    assert "no record of v0.1.2" in r.evaluations[0].detail


@pytest.mark.e2e
def test_json_lines_and_outputs_in_actions(tmp_path, prom, gh_files):
    slos = "              - {name: 'p95.latency', query: 'vector(0.25)', max: 0.2}"
    op, _, _, _ = _watcher(tmp_path, prom.url, slos, on_breach="alert")
    lines = []
    with pytest.raises(SLOBreached):
        op.run(once=True, report=lambda r: lines.append(to_json(r, indent=None)))
    (line,) = lines
    data = json.loads(line)
    assert data["status"] == "breached" and data["slos"][0]["value"] == 0.25
    out = parse_outputs(gh_files["output"].read_text())
    assert out["status"] == "breached" and out["breached"] == "p95.latency"
    assert out["serving-version"] == "v0.1.2"
    assert "| p95.latency | breach | 0.25 | &lt;= 0.2 |" in out["evidence"]  # md-escaped
    assert "p95.latency" in gh_files["summary"].read_text()


@pytest.mark.unit
def test_the_evidence_table_shows_a_zero_as_zero_and_no_value_as_a_dash():
    evals = [slo.Evaluation("errors", "ok", 0.0, "<= 0.01"), slo.Evaluation("p95", "no-data")]
    table = Round("staging", "digits", 1, "t", 1, "v0.1.0", evals).markdown()
    assert "| errors | ok | 0.0 | &lt;= 0.01 |" in table and "| p95 | no-data | — |" in table

    hostile = slo.Evaluation("d", "breach", 1.0, "PSI <= 0.2", "class 7\u202e<b>x</b>\n| y")
    table = Round("staging", "digits", 1, "t", 1, "v0.1.0", [hostile]).markdown()
    assert "| class 7\\\\u202e&lt;b>x&lt;/b>\\\\n\\| y |" in table, table


@pytest.mark.unit
def test_watch_without_slos_or_prometheus_says_what_to_add(tmp_path):
    cfg = tmp_path / "lepton.yaml"
    cfg.write_text(CONFIG.split("          watch:")[0])
    ctx = Context.load(str(cfg), env={})
    with pytest.raises(WatchError, match="declares no SLOs") as e:
        WatchOperation(ctx, "staging")
    assert "deploy.environments.staging" in str(e.value)
    _write(tmp_path, "              - {name: a, query: up, max: 1}")
    with pytest.raises(WatchError, match="no Prometheus") as e:
        WatchOperation(Context.load(str(cfg), env={}), "staging")
    assert "LEPTON_PROMETHEUS_URL" in str(e.value)


# -- render: alert rules and the dashboard from the same SLOs -----------------------------------


def _rendered(tmp_path):
    import shutil

    import yaml

    from lepton_ci.core import config
    from lepton_ci.deploy import manifests

    root = tmp_path / "digits"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(*EXAMPLE_OUTPUTS))
    loaded = config.load(root / "lepton.yaml")
    deploy = loaded.config.models["digits"].deploy
    release = Release("digits", "v0.1.0", "r/digits@sha256:" + "1" * 64, "d", 3)
    text = manifests.render("staging", deploy.environments["staging"], deploy, release, root)
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


@pytest.mark.e2e
def test_render_emits_rules_and_dashboard_that_prometheus_accepts(tmp_path, prom):
    import subprocess

    import requests
    import yaml

    docs = _rendered(tmp_path)
    rule = docs["PrometheusRule"]
    (group,) = rule["spec"]["groups"]
    assert [r["alert"] for r in group["rules"]] == [
        "DigitsStagingPredictErrors",
        "DigitsStagingP95Latency",
    ]  # drift is judged against the record, which PromQL cannot see
    assert all(r["for"] == "60s" and r["labels"]["severity"] == "critical" for r in group["rules"])
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True)
    assert check.returncode == 0, check.stderr

    cm = docs["ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["name"] == "digits-staging-dashboard"
    board = json.loads(cm["data"]["digits-staging.json"])
    titles = [p["title"] for p in board["panels"]]
    for want in (
        "Version serving",
        "Requests by path and code",
        "Errors (5xx share)",
        "Latency percentiles",
        "Predictions by class",
        "CPU of the pods",
        "Memory of the pods",
        "SLO predict-errors",
        "SLO p95-latency",
    ):
        assert want in titles, titles
    annotations = [a["name"] for a in board["annotations"]["list"]]
    assert annotations == ["deploys and reverts", "version serving"]
    # Every query on the board parses and runs in a real Prometheus.
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    for e in exprs:
        r = requests.get(prom.url + "/api/v1/query", params={"query": e}, timeout=5)
        assert r.status_code == 200, (e, r.text)
    assert {p["gridPos"]["x"] for p in board["panels"]} <= {0, 12}


@pytest.mark.unit
def test_alert_rules_fire_at_the_watcher_s_exact_bounds():
    from lepton_ci.core.config import WatchConfig
    from lepton_ci.deploy.observability import rule_groups

    bounds = {"name": "a", "query": "up", "max": 1234567, "min": 0.000123456789}
    (group,) = rule_groups("digits", "staging", WatchConfig.model_validate({"slos": [bounds]}))
    (rule,) = group["rules"]
    assert rule["expr"] == "(up) > 1234567.0 or (up) < 0.000123456789"


@pytest.mark.unit
def test_no_watch_renders_no_rules_or_dashboard(tmp_path):
    import yaml

    from lepton_ci.core import config
    from lepton_ci.deploy import manifests

    cfg = tmp_path / "lepton.yaml"
    cfg.write_text(CONFIG.split("          watch:")[0])
    deploy = config.load(cfg).config.models["digits"].deploy
    release = Release("digits", "v0.1.0", "r/digits@sha256:" + "1" * 64, "d", 1)
    text = manifests.render("staging", deploy.environments["staging"], deploy, release, tmp_path)
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["Deployment", "Service"]


@pytest.mark.e2e
def test_one_issue_per_environment_opened_updated_and_closed(tmp_path, prom):
    from lepton_ci.core.github import GitHubClient
    from lepton_ci.watch.issues import IssueKeeper
    from tests.support.github_server import GitHubServer

    bad = "              - {name: errors, query: 'vector(0.5)', max: 0.01}"
    good = "              - {name: errors, query: 'vector(0)', max: 0.01}"
    down = "              - {name: errors, query: 'rate(up)', max: 0.01}"
    idle = "              - {name: errors, query: 'vector(0) / 0', max: 0.01}"  # no traffic
    with GitHubServer() as gh:
        keeper = IssueKeeper(GitHubClient("test-token", base_url=gh.url), "acme/shop")
        # someone else's issue with the label stays alone
        gh.state.new_issue("acme/shop", "x", "mine", ["lepton-ci-watch"], login="someone")

        def once(slos, releases=0):
            op, *_ = _watcher(tmp_path, prom.url, slos, on_breach="alert", releases=releases)
            op.issues = keeper
            try:
                return op.run(once=True).status
            except (SLOBreached, WatchError) as e:
                return type(e).__name__

        assert once(bad, releases=2) == "SLOBreached"
        assert once(bad) == "SLOBreached"
        issues = gh.state.issues["acme/shop"]
        assert len(issues) == 2  # one opened for digits/staging, the other untouched
        mine = issues[1]
        assert mine["title"] == "digits: SLO breach in staging" and mine["state"] == "open"
        assert "<!-- lepton-ci:watch model=digits env=staging -->" in mine["body"]
        assert "| errors | breach | 0.5 |" in mine["body"]
        comments = gh.state.comments[("acme/shop", 2)]
        assert len(comments) == 1 and "| errors | breach |" in comments[0]["body"]

        assert once(down) == "WatchError"  # Prometheus cannot judge: the issue stays as it is
        assert mine["state"] == "open" and len(gh.state.comments[("acme/shop", 2)]) == 1
        assert once(idle) == "healthy"  # nothing to judge by: not "healthy again" either
        assert mine["state"] == "open" and len(gh.state.comments[("acme/shop", 2)]) == 1

        assert once(good) == "healthy"
        assert mine["state"] == "closed" and mine["state_reason"] == "completed"
        assert gh.state.comments[("acme/shop", 2)][-1]["body"].startswith("Healthy again")
        assert issues[0]["state"] == "open"
        assert once(good) == "healthy"  # nothing open: nothing to do
        assert len(gh.state.issues["acme/shop"]) == 2


@pytest.mark.e2e
def test_a_failing_issue_update_hides_no_breach(tmp_path, prom, gh_files):
    from lepton_ci.core.github import GitHubClient
    from lepton_ci.watch.issues import IssueKeeper
    from tests.support.github_server import GitHubServer

    slos = "              - {name: errors, query: 'vector(0.5)', max: 0.01}"
    op, dep, *_ = _watcher(tmp_path, prom.url, slos, for_=1)
    with GitHubServer() as gh:
        op.issues = IssueKeeper(GitHubClient("wrong", base_url=gh.url, max_retries=0), "a/b")
        with pytest.raises(SLOBreached):
            op.run(once=True)
    assert [r.status for r in dep.history()] == ["superseded", "failed", "deployed"]
    assert parse_outputs(gh_files["output"].read_text())["issue"] == ""


class _Odd(BaseHTTPRequestHandler):
    """Answers that real servers in front of Prometheus give: a trickle, a flood, a login page."""

    mode = "slow"

    def do_GET(self):
        self.send_response(200)
        html = self.mode == "html"
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.end_headers()
        try:
            if self.mode == "slow":  # one byte a second, for ever
                for _ in range(120):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            elif self.mode == "huge":  # 300 MB of a valid-looking answer
                self.wfile.write(b'{"status": "success", "data": {"resultType": "vector", ')
                for _ in range(300):
                    self.wfile.write(b'"x": "' + b"a" * 1_000_000 + b'", ')
                self.wfile.write(b'"result": []}}')
            elif self.mode == "dense":  # as many samples as fit under the size cap
                sample = b'{"metric":{},"value":[0,"1"]},'
                self.wfile.write(b'{"status":"success","data":{"resultType":"vector","result":[')
                self.wfile.write(sample * ((MAX_ANSWER - 200) // len(sample)))
                self.wfile.write(b'{"metric":{},"value":[0,"1"]}]}}')
            else:
                self.wfile.write(b"<!doctype html><html><body>Sign in to continue</body></html>")
        except OSError:
            pass  # the client hung up, as it should

    def log_message(self, *args):
        pass


@pytest.fixture
def odd_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("slow", "no complete answer within 2s"),
        ("huge", "larger than 4 MB"),
        ("html", "answered with an HTML page (text/html), not Prometheus's JSON"),
    ],
)
def test_a_slow_huge_or_html_answer_is_an_error_within_the_deadline(odd_server, mode, said):
    """`timeout` was per read: a server sending a byte a second held `watch --once` for a
    minute; a 300 MB answer was read whole; a login page was "Prometheus refused the query"."""
    _Odd.mode = mode
    ev = slo.evaluate(Prometheus(odd_server, retries=0, timeout=2), _slo(query="up", max=1))
    assert ev.status == "error" and said in ev.detail, ev.detail
    assert "refused the query" not in ev.detail


# The peak of this process's own memory: VmHWM starts afresh at exec, while ru_maxrss carries
# the high-water mark of the process that forked it (a big pytest worker) across exec.
_PEAK = """
import re, sys
from lepton_ci.core.prometheus import Prometheus, WatchError
try:
    print(len(Prometheus(sys.argv[1], retries=0, timeout=60).query("up")), end=" ")
except WatchError as e:
    print(e.message, end=" ")
with open("/proc/self/status") as f:
    print(int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) >> 10)
"""


@pytest.mark.unit
@pytest.mark.parametrize(("mode", "said"), [("huge", "larger than 4 MB"), ("dense", "139804")])
def test_the_memory_an_answer_takes_is_bounded(odd_server, mode, said):
    """A 300 MB answer took 632 MB of RSS; the largest answer read is parsed within ~150 MB."""
    import subprocess
    import sys

    _Odd.mode = mode
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, odd_server], capture_output=True, text=True, check=True
    ).stdout
    assert said in out, out
    assert int(out.split()[-1]) < 200, f"peak RSS {out.split()[-1]} MB"


@pytest.mark.unit
@pytest.mark.parametrize("value", ["true", '"1_000"', "1", '" 5"', '"\\u0661"', '"infinity"'])
def test_only_prometheus_float_strings_are_numbers(odd_prometheus, value):
    """`true` and "1_000" were read as numbers (float() takes them) and judged as breaches."""
    _Answer.body = (
        b'{"status": "success", "data": {"resultType": "vector", "result": '
        b'[{"metric": {}, "value": [0, %s]}]}}' % value.encode()
    )
    url = f"http://127.0.0.1:{odd_prometheus.server_port}"
    ev = slo.evaluate(Prometheus(url, retries=0), _slo(query="up", max=0))
    assert ev.status == "error", ev
    assert "a sample value that is not a number as Prometheus writes it" in ev.detail, ev
    _Answer.body = _Answer.body.replace(value.encode(), b'"+Inf"')
    assert slo.evaluate(Prometheus(url, retries=0), _slo(query="up", max=0)).status == "breach"
