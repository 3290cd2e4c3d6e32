"""Podman deploys through the splitter: no request fails, and a canary goes step by step or
goes away. Real pods, real nginx, a real registry (and a real Prometheus for the SLOs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import Cli, commit_all, example_repo
from tests.support.backends import stop_splitters
from tests.support.prometheus import PrometheusServer
from tests.test_deploy import WRONG, Site, history, predict, release

pytestmark = pytest.mark.e2e
STATE = Path(".lepton") / "deploy" / "digits" / "staging"
SLOW = (  # passes every deploy check (none times /predict), breaches the p95-latency SLO
    "    def predict(self, body: bytes) -> tuple[int, dict]:\n",
    "    def predict(self, body: bytes) -> tuple[int, dict]:\n        time.sleep(0.3)\n",
)


@pytest.fixture
def site(tmp_path, services, monkeypatch, capsys, shared_deps_cache):
    for k, v in services["podman"].config_env.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "digits"
    example_repo(repo, services)
    yield Site(repo, Cli(repo, capsys))
    services["podman"]("pod", "rm", "-af", "-t", "0", check=False)
    stop_splitters(tmp_path)


class SteadyClient:
    """A request every 20 ms to /predict, as the issue measured: failures are counted (an
    exception or a status other than 200), and which version answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.instances = yaml.safe_load(
            (Path(__file__).parent.parent / "examples/digits/lepton.yaml").read_text()
        )["models"]["digits"]["deploy"]["environments"]["staging"]["checks"]["golden"][0][
            "request"
        ]["instances"]

    def _run(self) -> None:
        http = requests.Session()
        while not self._stop.is_set():
            try:
                r = http.post(self.url + "/predict", json={"instances": self.instances}, timeout=5)
                if r.status_code != 200:
                    self.failures.append(f"HTTP {r.status_code}")
                else:
                    v = r.json().get("model_version", "?")
                    self.versions[v] = self.versions.get(v, 0) + 1
            except requests.RequestException as e:
                self.failures.append(type(e).__name__)
            self.sent += 1
            self._stop.wait(0.02)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def set_rollout(repo: Path, rollout: dict, edit=None) -> None:
    cfg = repo / "lepton.yaml"
    data = yaml.safe_load(cfg.read_text())
    env = data["models"]["digits"]["deploy"]["environments"]["staging"]
    env["rollout"] = rollout
    if edit is not None:
        edit(env)
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    commit_all(repo, "ci: canary rollouts")


def new_version(repo: Path, cli, change=None) -> None:
    """A second version: retrained with another C, or with a change to serve.py."""
    if change is None:
        params = repo / "params.yaml"
        params.write_text(params.read_text().replace("C: 1.0", "C: 0.5"))
        commit_all(repo, "fix: regularise")
        release(repo, cli)
    else:
        release(repo, cli, change)


def pods(podman) -> list[str]:
    out = podman("pod", "ps", "--format", "{{.Name}}").stdout
    return sorted(out.split())


def test_a_deploy_under_a_steady_client_fails_no_request(site, services) -> None:
    """The issue measured 135 failed requests while podman replaced the pod; through the
    splitter the new revision starts beside the old one and takes over by a graceful reload."""
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    new_version(repo, cli)
    with SteadyClient(site.url) as client:
        time.sleep(0.5)
        code, _, err = cli("deploy", "staging")
        time.sleep(0.5)
    assert code == 0, err
    assert client.sent > 50
    assert client.failures == []
    assert set(client.versions) == {"v0.1.0", "v0.1.1"}
    assert predict(site.url)["model_version"] == "v0.1.1"
    assert pods(services["podman"]) == ["digits-staging-green-pod-0"]  # the old slot retired
    targets = json.loads((repo / STATE / "digits-staging.targets.json").read_text())
    assert [t["labels"] for t in targets] == [{"revision": "2", "track": "stable"}]


def test_a_broken_canary_aborts_at_the_first_step_and_stable_serves_everything(
    site, services
) -> None:
    repo, cli = site.repo, site.cli
    set_rollout(repo, {"strategy": "canary", "steps": [10, 50, 100], "interval": 2})
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    new_version(repo, cli, WRONG)
    summary = repo.parent / "step_summary"
    with SteadyClient(site.url) as client, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_STEP_SUMMARY", str(summary))
        code, out, err = cli("deploy", "staging")
    assert code == 1
    assert "| 10% | aborted |" in summary.read_text()
    assert "revision 2 (v0.1.1) failed: canary aborted at step 10%" in err
    assert "golden /predict" in err
    assert "Revision 1 (v0.1.0) serves every request again" in err
    assert client.failures == []  # wrong answers, but answers
    assert client.versions.get("v0.1.1", 0) > 0
    assert predict(site.url)["model_version"] == "v0.1.0"
    assert pods(services["podman"]) == ["digits-staging-blue-pod-0"]  # no canary left
    revs = history(cli)
    assert [(r["number"], r["status"]) for r in revs] == [(1, "deployed"), (2, "failed")]
    (step,) = revs[1]["steps"]
    assert step["verdict"] == "aborted" and step["effective"] == 10
    assert step["checks_ok"] is False
    assert 0.05 <= step["share"] <= 0.12  # every tenth request, give or take the checks'
    # The SLOs could not be judged (no Prometheus where lepton.yaml says): said, no breach.
    assert {s["status"] for s in step["slos"]} == {"error", "no-data"}
    code, out, _ = cli("history", "staging")
    assert "step 10%: aborted" in out


def test_a_good_canary_goes_step_by_step_and_takes_over(site, services) -> None:
    repo, cli = site.repo, site.cli
    set_rollout(repo, {"strategy": "canary", "steps": [50, 100], "interval": 1})
    release(repo, cli)
    code, out, _ = site.first_deploy()
    assert code == 0 and "canary skipped (nothing serves yet to compare with)" in out
    new_version(repo, cli)
    with SteadyClient(site.url) as client:
        code, out, err = cli("deploy", "staging")
    assert code == 0, err
    assert client.failures == []
    assert predict(site.url)["model_version"] == "v0.1.1"
    revs = history(cli)
    assert [(r["number"], r["status"]) for r in revs] == [(1, "superseded"), (2, "deployed")]
    assert [(s["effective"], s["verdict"]) for s in revs[1]["steps"]] == [
        (50, "passed"),
        (100, "passed"),
    ]
    assert revs[1]["steps"][1]["share"] == 1.0
    assert pods(services["podman"]) == ["digits-staging-green-pod-0"]


def test_an_interrupted_canary_leaves_stable_serving(site, services) -> None:
    repo, cli = site.repo, site.cli
    set_rollout(repo, {"strategy": "canary", "steps": [50, 100], "interval": 30})
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    new_version(repo, cli)
    slots = repo / STATE / "digits-staging.slots.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), "deploy", "staging"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while (json.loads(slots.read_text()).get("canary") or {}).get("weight") != 50:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    versions = {predict(site.url)["model_version"] for _ in range(6)}
    assert versions == {"v0.1.0", "v0.1.1"}  # the canary serves half
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    assert {predict(site.url)["model_version"] for _ in range(6)} == {"v0.1.0"}
    assert pods(services["podman"]) == ["digits-staging-blue-pod-0"]
    revs = history(cli)
    assert revs[1]["status"] == "failed" and revs[1]["reason"].startswith("interrupted")
    assert revs[-1]["status"] == "deployed" and revs[-1]["version"] == "v0.1.0"


def test_a_canary_breaching_an_slo_per_revision_is_aborted(site, services, tmp_path) -> None:
    """Prometheus scrapes each pod by the target file lepton-ci writes; the p95 latency of the
    canary's own series breaches (stable's does not) though every deploy check passes."""

    def seconds(env: dict) -> None:
        for slo in env["watch"]["slos"]:
            if "query" in slo:
                slo["query"] = slo["query"].replace("[1m]", "[5s]")
        env["watch"]["slos"] = [s for s in env["watch"]["slos"] if "query" in s]

    repo, cli = site.repo, site.cli
    set_rollout(repo, {"strategy": "canary", "steps": [50, 100], "interval": 8}, seconds)
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    prom = PrometheusServer(
        tmp_path / "prom", targets=[], file_sd=repo / STATE / "digits-staging.targets.json"
    ).start()
    try:
        new_version(repo, cli, SLOW)
        env = {"LEPTON_PROMETHEUS_URL": prom.url}
        with SteadyClient(site.url) as client, pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            code, out, err = cli("deploy", "staging")
    finally:
        prom.stop()
    assert code == 1, out
    assert "canary aborted at step 50%: SLO p95-latency breach" in err
    assert client.failures == []
    (step,) = history(cli)[1]["steps"]
    assert step["checks_ok"] is True
    slo = {s["slo"]: s for s in step["slos"]}["p95-latency"]
    assert slo["status"] == "breach"
    assert slo["canary"] > 0.2 > slo["stable"]
    assert predict(site.url)["model_version"] == "v0.1.0"
