"""`watch` on the digits example served by podman and scraped by a real Prometheus (1 s).

A release that degrades after its health window is caught and reverted; a healthy one is left
alone over several evaluations; Prometheus being down is reported and is not a breach.
"""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import requests

from lepton_ci.core.context import Context
from lepton_ci.watch.operation import WatchOperation
from tests.conftest import commit_all, example_repo, first_deploy_on_free_port
from tests.support.backends import stop_splitters
from tests.support.prometheus import PrometheusServer
from tests.support.services import check_port
from tests.support.traffic import Traffic, degrade_later

pytestmark = pytest.mark.e2e
UP = 'sum(rate(digits_requests_total{path="/predict"}[5s])) > 0'


@pytest.fixture
def served(tmp_path, services, monkeypatch, shared_deps_cache):
    """The example in a git repo, shipped to staging on a free port that a fresh Prometheus
    scrapes."""
    podman = services["podman"]
    for k, v in podman.config_env.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "digits"

    def seconds(cfg):  # windows of seconds, not minutes: Prometheus scrapes every second here
        cfg.write_text(
            cfg.read_text()
            .replace("[1m]", "[5s]")
            .replace("window: 1m", "window: 5s")
            .replace("interval: 30 ", "interval: 1 ")
        )

    example_repo(repo, services, seconds)
    release(repo)
    port, _ = first_deploy_on_free_port(repo, lambda: deploy(repo))
    prom = PrometheusServer(tmp_path / "prom", targets=[f"127.0.0.1:{port}"]).start()
    monkeypatch.setenv("LEPTON_PROMETHEUS_URL", prom.url)
    yield repo, f"http://127.0.0.1:{port}", prom
    prom.stop()
    podman("pod", "rm", "-af", "-t", "0", check=False)
    stop_splitters(tmp_path)


def lepton(repo, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def release(repo, message=None):
    """Commit the work tree, then run, register and build it."""
    if message:
        commit_all(repo, message)
    for args in (("run",), ("register",), ("build",)):
        p = lepton(repo, *args)
        assert p.returncode == 0, (args, p.stdout, p.stderr)


def deploy(repo):
    p = lepton(repo, "deploy", "staging")
    check_port(p.stderr)
    assert p.returncode == 0, (p.stdout, p.stderr)


def ship(repo, message=None):
    """Commit the work tree, then run, register, build and deploy it to staging."""
    release(repo, message)
    deploy(repo)


def serving(url):
    return requests.get(url + "/readyz", timeout=5).json()["model_version"]


def history(repo):
    return json.loads(lepton(repo, "history", "staging", "--json").stdout)


def test_release_that_degrades_after_its_health_window_is_caught_and_reverted(served):
    repo, url, prom = served  # v0.1.0 serves
    degrade_later(repo / "serve.py")
    ship(repo, "perf: cache the model")
    assert serving(url) == "v0.1.1"  # it passed its deploy-time health window
    with Traffic(url) as traffic:
        prom.wait_for('sum(rate(digits_requests_total{code="500"}[5s])) > 0')
        # An SLO is judged once the release has served its query window (5 s here); before
        # that the window still holds the previous release's traffic and the answer is no-data.
        served_at = datetime.fromisoformat(history(repo)[-1]["finished_at"])
        time.sleep(max(0.0, 6 - (datetime.now(UTC) - served_at).total_seconds()))

        # Prometheus down while the release is really bad: reported, never acted on.
        prom.stop()
        p = lepton(repo, "watch", "staging", "--once")
        assert p.returncode == 1
        assert "did not answer after 3 tries" in p.stderr and "not a breach" in p.stderr
        assert serving(url) == "v0.1.1"
        assert [r["status"] for r in history(repo)] == ["superseded", "deployed"]

        prom.start()
        os.environ["LEPTON_PROMETHEUS_URL"] = prom.url  # a new port
        p = lepton(repo, "watch", "staging", "--json")
    assert p.returncode == 1, p.stderr
    rounds = [json.loads(line) for line in p.stdout.splitlines()]
    errors = [next(s for s in r["slos"] if s["slo"] == "predict-errors") for r in rounds]
    assert [e["status"] for e in errors[-2:]] == ["breach", "breach"]  # `for: 2`
    assert rounds[-1]["status"] == "breached" and rounds[-1]["breached"] == ["predict-errors"]
    assert rounds[-1]["action"].startswith("rolled back: revision 3 serves v0.1.0 again")
    assert "SLO breached by v0.1.1 (revision 2): predict-errors: breach" in p.stderr
    assert serving(url) == "v0.1.0"
    revs = history(repo)
    assert [(r["number"], r["status"], r["version"]) for r in revs] == [
        (1, "superseded", "v0.1.0"),
        (2, "failed", "v0.1.1"),
        (3, "deployed", "v0.1.0"),
    ]
    (breach,) = revs[1]["breaches"]
    assert breach["slo"] == "predict-errors" and breach["value"] > 0.01
    assert breach["bound"] == "<= 0.01" and breach["action"] == "rollback" and breach["at"]
    assert revs[1]["reason"] == "SLO breached after release: predict-errors"
    assert revs[2]["description"] == "rollback to 1 (watch)" and revs[2]["rollback_of"] == 1
    assert all(pr["ok"] for pr in revs[2]["probes"])  # the revert was health-checked
    assert traffic.codes.get(500, 0) > 0


def test_healthy_release_is_left_alone_over_several_evaluations(served):
    repo, url, prom = served  # v0.1.0 serves
    with Traffic(url):
        prom.wait_for(UP)
        prom.wait_for("sum(increase(digits_predictions_total[5s])) > 200")
        # Served longer than the 5 s windows: younger, its SLOs would be no-data.
        (rev,) = history(repo)
        age = time.time() - datetime.fromisoformat(rev["finished_at"]).timestamp()
        time.sleep(max(0.0, 6 - age))
        op = WatchOperation(Context.load(None, repo), "staging")
        rounds = []
        last = op.run(count=4, report=rounds.append)
        p = lepton(repo, "watch", "staging", "--once", "--json")
    assert last.status == "healthy"
    assert len(rounds) == 4 and all(r.status == "healthy" for r in rounds)
    for r in rounds:
        by_name = {e.slo: e for e in r.evaluations}
        assert by_name["predict-errors"].status == "ok" and by_name["predict-errors"].value == 0
        assert by_name["p95-latency"].status == "ok"
        drift = by_name["class-drift"]
        assert drift.status == "ok" and drift.value is not None and drift.value < 0.2, drift
    assert p.returncode == 0, p.stderr
    (line,) = p.stdout.splitlines()
    assert json.loads(line)["status"] == "healthy"
    (rev,) = history(repo)
    assert rev["status"] == "deployed" and rev["breaches"] == []
    assert serving(url) == "v0.1.0"
