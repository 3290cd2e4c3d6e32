"""Deploys with the podman target: real pods from the rendered manifests, checked over HTTP."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import EXAMPLE, Cli, commit_all, example_repo, first_deploy_on_free_port
from tests.support.backends import stop_splitters
from tests.support.services import check_port

pytestmark = pytest.mark.e2e
WRONG = (
    "        preds = [int(c) for c in self.model.predict(instances)]",
    "        preds = [(int(c) + 1) % 10 for c in self.model.predict(instances)]",
)
BROKEN_HEALTH = (
    '                code, body = 200, {"status": "ok"}',
    '                code, body = 500, {"status": "broken"}',
)


class Site:
    """The digits example in a git repo, deploying to staging with the podman target."""

    def __init__(self, repo: Path, cli: Cli) -> None:
        self.repo, self.cli, self.port = repo, cli, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def first_deploy(self) -> tuple[int, str, str]:
        """`deploy staging` on a free host_port (another one if the port was taken)."""

        def deploy() -> tuple[int, str, str]:
            code, out, err = self.cli("deploy", "staging")
            check_port(err)
            return code, out, err

        self.port, result = first_deploy_on_free_port(self.repo, deploy)
        return result


@pytest.fixture
def site(tmp_path, services, monkeypatch, capsys, shared_deps_cache):
    podman = services["podman"]
    for k, v in podman.config_env.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "digits"
    example_repo(repo, services)
    yield Site(repo, Cli(repo, capsys))
    podman("pod", "rm", "-af", "-t", "0", check=False)
    stop_splitters(repo)


def release(repo, cli, change=None, message="fix: change"):
    """Commit a change (to serve.py), then run, register and build: a deployable version."""
    if change is not None:
        serve = repo / "serve.py"
        text = serve.read_text()
        assert change[0] in text
        serve.write_text(text.replace(change[0], change[1]))
        commit_all(repo, message)
    for args in (("run",), ("register",), ("build",)):
        code, out, err = cli(*args)
        assert code == 0, (args, out, err)


def predict(url):
    zero, one = yaml.safe_load((EXAMPLE / "lepton.yaml").read_text())["models"]["digits"]["deploy"][
        "environments"
    ]["staging"]["checks"]["golden"][0]["request"]["instances"]
    return requests.post(url + "/predict", json={"instances": [zero, one]}, timeout=5).json()


def history(cli):
    code, out, _ = cli("history", "staging", "--json")
    assert code == 0
    return json.loads(out)


def test_good_version_deploys_and_is_recorded(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    code, out, err = site.first_deploy()
    assert code == 0, err
    assert "staging: revision 1 deployed v0.1.0" in out
    assert predict(site.url) == {"predictions": [0, 1], "model_version": "v0.1.0"}
    (rev,) = history(cli)
    assert rev["status"] == "deployed" and rev["version"] == "v0.1.0"
    assert "@sha256:" in rev["image"]
    assert {p["check"] for p in rev["probes"]} >= {
        "http /healthz",
        "golden /predict",
        "latency p95 /healthz",
    }
    assert all(p["ok"] for p in rev["probes"])


def test_wrong_predictions_are_reverted_and_previous_serves_again(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    release(repo, cli, WRONG, "perf: faster response path")
    code, out, err = cli("deploy", "staging")
    assert code == 1
    assert "reverting to revision 1 (v0.1.0)" in out
    assert "revision 2 (v0.1.1) failed: health check failed" in err
    assert "golden /predict: expected {'predictions': [0, 1]}, got {'predictions': [1, 2]}" in err
    assert "Reverted automatically: revision 3 serves v0.1.0 again" in err
    assert predict(site.url) == {"predictions": [0, 1], "model_version": "v0.1.0"}
    revs = history(cli)
    assert [(r["number"], r["status"], r["version"]) for r in revs] == [
        (1, "superseded", "v0.1.0"),
        (2, "failed", "v0.1.1"),
        (3, "deployed", "v0.1.0"),
    ]
    assert revs[2]["description"] == "rollback to 1" and revs[2]["rollback_of"] == 1
    assert any(not p["ok"] for p in revs[1]["probes"])


def test_broken_healthz_is_reverted(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    release(repo, cli, BROKEN_HEALTH, "fix: health endpoint")
    code, _, err = cli("deploy", "staging")
    assert code == 1 and "http /healthz: 500" in err and "Reverted automatically" in err
    assert requests.get(site.url + "/healthz", timeout=5).status_code == 200
    assert predict(site.url)["model_version"] == "v0.1.0"


def test_failed_first_deploy_is_removed(site, services):
    repo, cli = site.repo, site.cli
    release(repo, cli, WRONG, "feat: broken from the start")
    code, _, err = site.first_deploy()
    assert code == 1 and "no previous revision, so it was removed" in err
    pods = services["podman"]("pod", "ps", "--format", "{{.Name}}").stdout
    assert "digits-staging" not in pods
    assert [r["status"] for r in history(cli)] == ["failed"]


def test_manual_rollback_is_a_new_revision(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 0.5"))
    commit_all(repo, "fix: regularise")
    release(repo, cli)
    assert cli("deploy", "staging")[0] == 0
    assert predict(site.url)["model_version"] == "v0.1.1"
    code, out, _ = cli("rollback", "staging")
    assert code == 0 and "revision 3 (rollback to 1) serves v0.1.0" in out, out
    assert predict(site.url)["model_version"] == "v0.1.0"
    assert [r["status"] for r in history(cli)] == ["superseded", "rolled-back", "deployed"]
    code, _, err = cli("rollback", "staging", "--to", "9")
    assert code == 1 and "revision 9 is not a healthy revision" in err


def test_killed_deploy_is_repaired_by_the_next_command(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    release(repo, cli, WRONG, "perf: x")
    state = repo / ".lepton" / "deploy" / "digits" / "staging"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), "deploy", "staging"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches `podman kube play`
    )
    deadline = time.monotonic() + 30
    while not (state / "revision-00002.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and everything it started, as a runner does
    proc.wait(10)
    assert json.loads((state / "revision-00002.json").read_text())["status"] == "pending"
    code, out, err = cli("rollback", "staging")
    assert code == 0, err
    assert "repair: revision 2 was interrupted; restoring revision 1 (v0.1.0)" in out
    revs = history(cli)
    assert revs[1]["status"] == "failed" and revs[1]["reason"].startswith("interrupted")
    assert revs[2]["description"] == "rollback to 1 (repair)"
    assert predict(site.url) == {"predictions": [0, 1], "model_version": "v0.1.0"}


def test_render_and_dry_run_apply_nothing(site, services):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    code, out, _ = cli("render", "staging")
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    # the example watches staging: alert rules and a dashboard come with the release
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PrometheusRule", "ConfigMap"]
    dep = docs[0]
    assert dep["metadata"]["annotations"]["dev.lepton-ci/version"] == "v0.1.0"
    assert "@sha256:" in dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lepton-ci"
    code, out, _ = cli("deploy", "staging", "--dry-run")
    assert code == 0 and "dry run: would deploy v0.1.0" in out
    assert history(cli) == []
    assert "digits-staging" not in services["podman"]("pod", "ps").stdout


def test_one_deploy_at_a_time(site):
    from lepton_ci.deploy.releases import FileStore

    repo, cli = site.repo, site.cli
    release(repo, cli)
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "      target: podman", "      target: podman\n      lock_timeout: 0.5"
        )
    )
    store = FileStore(repo / ".lepton" / "deploy" / "digits" / "staging")
    held, release_lock = threading.Event(), threading.Event()

    def hold():
        with store.lock(5):
            held.set()
            release_lock.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        code, _, err = cli("deploy", "staging")
        assert code == 1 and "another deploy of this environment is running" in err
    finally:
        release_lock.set()
        t.join()
    assert history(cli) == []


def test_unknown_environment_and_undigested_image(site):
    repo, cli = site.repo, site.cli
    release(repo, cli)
    code, _, err = cli("deploy", "prod")
    assert code == 1 and "no model deploys to an environment `prod`" in err
    code, _, err = cli("deploy", "staging", "--image", "127.0.0.1:1/digits:0.1.0")
    assert code == 1 and "must name a digest" in err


@pytest.mark.unit
def test_tls_is_skipped_only_for_images_on_this_machine(tmp_path):
    from lepton_ci.deploy.podman import PodmanTarget

    calls = []

    class Recorder:
        def __call__(self, *args, check=True):
            calls.append(args)
            return subprocess.CompletedProcess(args, 0, "", "")

    def pod(image):
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": image}]},
            }
        )

    target = PodmanTarget(tmp_path, Recorder())
    target.apply("local", pod("127.0.0.1:5000/digits@sha256:" + "0" * 64))
    target.apply("remote", pod("ghcr.io/acme/digits@sha256:" + "0" * 64))
    assert "--tls-verify=false" in calls[0]
    assert "--tls-verify=false" not in calls[1]


def test_podman_says_it_runs_one_pod_of_several_replicas(tmp_path):
    """podman kube play caps a Deployment at one pod ("Limiting replica count to 1"): the
    deploy must say so rather than report three replicas checked."""
    from lepton_ci.deploy.podman import PodmanTarget

    class Podman:
        def __call__(self, *args, check=True):
            return subprocess.CompletedProcess(args, 0, "", "")

    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "digits-prod"},
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    notes = PodmanTarget(tmp_path, Podman()).apply("digits-prod", yaml.safe_dump(dep))
    assert notes == [
        "Deployment/digits-prod replicas 3 (podman runs one pod; the health checks probe that one)"
    ]
    dep["spec"]["replicas"] = 1
    assert PodmanTarget(tmp_path, Podman()).apply("digits-prod", yaml.safe_dump(dep)) == []


def _interrupt(repo: Path, state: Path, number: int, signum: int, *args: str) -> int:
    """Start `lepton-ci ARGS`, send `signum` once revision `number` is written (pending), and
    return the exit code. SIGINT goes to the whole group, as a terminal's Ctrl-C does; SIGTERM
    to lepton-ci alone, as a runner's cancel does."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (state / f"revision-{number:05d}.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    assert json.loads((state / f"revision-{number:05d}.json").read_text())["status"] == "pending"
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    return proc.wait(120)


def test_interrupted_deploy_and_rollback_leave_the_previous_revision_serving(site):
    """SIGTERM or Ctrl-C mid-deploy left nothing serving and the revision pending; now the
    command puts back what served, records why, and exits 143 or 130."""
    repo, cli = site.repo, site.cli
    release(repo, cli)
    assert site.first_deploy()[0] == 0
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 0.5"))
    commit_all(repo, "fix: regularise")
    release(repo, cli)
    state = repo / ".lepton" / "deploy" / "digits" / "staging"
    assert _interrupt(repo, state, 2, signal.SIGTERM, "deploy", "staging") == 143
    assert predict(site.url)["model_version"] == "v0.1.0"
    assert _interrupt(repo, state, 4, signal.SIGINT, "deploy", "staging") == 130
    assert predict(site.url)["model_version"] == "v0.1.0"
    revs = history(cli)
    assert [(r["number"], r["status"], r["version"]) for r in revs] == [
        (1, "superseded", "v0.1.0"),
        (2, "failed", "v0.1.1"),
        (3, "superseded", "v0.1.0"),
        (4, "failed", "v0.1.1"),
        (5, "deployed", "v0.1.0"),
    ]
    assert revs[1]["reason"].startswith("interrupted") and revs[4]["rollback_of"] == 3
    # A rollback cut short puts back the revision it was replacing.
    assert cli("deploy", "staging")[0] == 0
    assert _interrupt(repo, state, 7, signal.SIGTERM, "rollback", "staging") == 143
    assert predict(site.url)["model_version"] == "v0.1.1"
    assert [r["status"] for r in history(cli)][5:] == ["rolled-back", "failed", "deployed"]
    _, out, err = cli("watch", "staging", "--once")
    assert "nothing serves" not in out + err


def test_a_revert_to_what_serves_downs_the_half_promoted_slot(tmp_path):
    """Ctrl-C while the stable track took a passed canary (seen on the digits example): the
    repair reapplies what still serves, which the target short-cuts; the new revision played
    into the other slot was left running, unrecorded, until some later deploy."""
    from lepton_ci.deploy.podman import PodmanTarget

    calls = []

    class Podman:
        def __call__(self, *args, check=True):
            calls.append(args)
            return subprocess.CompletedProcess(args, 0, '{"Containers": []}', "")

    class NoNginx:
        def __init__(self, *a):
            pass

        def configure(self, *a, **kw):
            pass

    def pod(image):
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [{"name": "c", "image": image, "ports": [{"hostPort": 18080}]}]
                },
            }
        )

    target = PodmanTarget(tmp_path, Podman(), splitter=NoNginx)
    good, new = pod("r/d@sha256:" + "1" * 64), pod("r/d@sha256:" + "2" * 64)
    target.apply("digits-prod", good)
    target.promote("digits-prod")
    target.apply("digits-prod", new)  # played beside, then interrupted before promote
    (other,) = [p for p in tmp_path.glob("digits-prod.*.kube.yaml") if "2" * 64 in p.read_text()]
    calls.clear()
    target.apply("digits-prod", good)  # the repair's revert to what serves
    assert ("kube", "down", str(other)) in calls
    assert not other.exists()
