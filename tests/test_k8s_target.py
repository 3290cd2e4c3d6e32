"""The kubernetes target against the kmock emulator with a test controller."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from lepton_ci.core import config
from lepton_ci.core.errors import LeptonError
from lepton_ci.deploy import manifests
from lepton_ci.deploy.deployer import Deployer, DeployFailed
from lepton_ci.deploy.kubernetes import ConfigMapStore, KubernetesTarget
from lepton_ci.deploy.releases import Revision
from tests.support.kube import Cluster

pytestmark = pytest.mark.e2e
GOOD = "registry.test/digits@sha256:" + "1" * 64
GOOD2 = "registry.test/digits@sha256:" + "2" * 64
BROKEN = "registry.test/digits@sha256:" + "b" * 64
STUCK = "registry.test/digits@sha256:" + "5" * 64


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.close()


@pytest.fixture(scope="module")
def service():
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


_counter = iter(range(1000))


@pytest.fixture
def setup(cluster, service, tmp_path):
    """A fresh namespace-sized world per test: its own environment name."""
    env = f"env{next(_counter)}"

    def make(**env_extra):
        deploy = config.DeployConfig.model_validate(
            {
                "target": "kubernetes",
                "lock_timeout": 0.5,
                "environments": {
                    env: {
                        "namespace": "staging",
                        "url": service,
                        "rollout_timeout": 3,
                        "rollback_timeout": 3,
                        "checks": {"count": 2, "interval": 0, "http": [{"path": "/healthz"}]},
                        **env_extra,
                    }
                },
            }
        )
        name = manifests.dns_name("digits", env)
        target = KubernetesTarget(cluster.api, "staging", sleep=lambda s: time.sleep(0.05))
        store = ConfigMapStore(cluster.api, "staging", name, sleep=lambda s: time.sleep(0.05))
        return Deployer(
            "digits", env, deploy, tmp_path, target=target, store=store, log=lambda m: None
        ), name

    return make


def release(image, version):
    return manifests.Release("digits", version, image, "blake3:" + "0" * 64, 0, "run", "ci")


def deployment(cluster, name):
    return client.AppsV1Api(cluster.api).read_namespaced_deployment(name, "staging")


def test_apply_wait_and_history_in_configmaps(cluster, setup):
    d, name = setup()
    out = d.deploy(release(GOOD, "v1.0.0"))
    assert out.revision.status == "deployed"
    dep = deployment(cluster, name)
    assert dep.spec.template.spec.containers[0].image == GOOD
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "lepton-ci"
    assert dep.metadata.annotations["dev.lepton-ci/version"] == "v1.0.0"
    svc = client.CoreV1Api(cluster.api).read_namespaced_service(name, "staging")
    assert svc.spec.selector["app.kubernetes.io/instance"] == name
    cms = client.CoreV1Api(cluster.api).list_namespaced_config_map("staging").items
    mine = [c for c in cms if (c.metadata.labels or {}).get("dev.lepton-ci/release") == name]
    assert len(mine) == 1 and '"status":"deployed"' in mine[0].data["revision.json"]
    assert [r.status for r in d.history()] == ["deployed"]


def test_prune_removes_objects_the_new_render_drops(cluster, setup):
    d, name = setup(hpa={"max": 4})
    d.deploy(release(GOOD, "v1.0.0"))
    hpa = client.AutoscalingV2Api(cluster.api)
    assert hpa.read_namespaced_horizontal_pod_autoscaler(name, "staging").spec.max_replicas == 4
    d.env = d.env.model_copy(update={"hpa": None})
    d.deploy(release(GOOD2, "v1.0.1"))
    with pytest.raises(client.ApiException) as e:
        hpa.read_namespaced_horizontal_pod_autoscaler(name, "staging")
    assert e.value.status == 404
    assert deployment(cluster, name).spec.template.spec.containers[0].image == GOOD2


def test_watched_environment_deploys_its_alert_rules_and_dashboard(cluster, setup):
    """`watch:` SLOs render a PrometheusRule (prometheus-operator's CRD) and a dashboard
    ConfigMap; the kubernetes target applies both instead of refusing the deploy."""
    slos = [{"name": "errors", "query": "vector(0)", "max": 0.01}]
    d, name = setup(watch={"slos": slos})
    assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"
    rule = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", "staging", "prometheusrules", name
    )
    assert rule["spec"]["groups"][0]["rules"][0]["expr"] == "(vector(0)) > 0.01"
    board = client.CoreV1Api(cluster.api).read_namespaced_config_map(f"{name}-dashboard", "staging")
    assert board.metadata.labels["grafana_dashboard"] == "1"


def test_progress_deadline_exceeded_reverts_to_previous(cluster, setup):
    cluster.broken.add(BROKEN)
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(BROKEN, "v1.1.0"))
    assert "ProgressDeadlineExceeded" in str(e.value)
    assert "revision 3 serves v1.0.0 again" in str(e.value)
    assert deployment(cluster, name).spec.template.spec.containers[0].image == GOOD
    assert [(r.number, r.status, r.description) for r in d.history()] == [
        (1, "superseded", "deploy v1.0.0"),
        (2, "failed", "deploy v1.1.0"),
        (3, "deployed", "rollback to 1"),
    ]


def test_rollout_budget_and_separate_rollback_budget(cluster, setup):
    cluster.stuck.add(STUCK)
    d, name = setup(rollout_timeout=0.5, rollback_timeout=5)
    d.deploy(release(GOOD, "v1.0.0"))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(STUCK, "v1.2.0"))
    assert "not rolled out after 0s" in str(e.value) or "not rolled out after 1s" in str(e.value)
    assert e.value.outcome.reverted_to is not None
    assert deployment(cluster, name).spec.template.spec.containers[0].image == GOOD


def test_first_release_failing_is_removed_or_scaled_to_zero(cluster, setup):
    cluster.broken.add(BROKEN)
    d, name = setup()
    with pytest.raises(LeptonError, match="it was removed"):
        d.deploy(release(BROKEN, "v0.1.0"))
    with pytest.raises(client.ApiException):
        deployment(cluster, name)
    d2, name2 = setup(on_first_failure="scale-to-zero")
    with pytest.raises(LeptonError, match="scaled to zero"):
        d2.deploy(release(BROKEN, "v0.1.0"))
    assert deployment(cluster, name2).spec.replicas == 0


def test_lease_allows_one_deploy_at_a_time(cluster, setup):
    d, _name = setup()
    busy = pytest.raises(LeptonError, match="another deploy of this environment is running")
    with d.store.lock(1), busy:
        d.deploy(release(GOOD, "v1.0.0"))
    d.deploy(release(GOOD, "v1.0.0"))  # released again afterwards


def test_revision_left_pending_is_repaired(cluster, setup):
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    first = d.history()[0]
    # a job killed after applying revision 2 leaves it pending, and its objects half-applied
    killed = first.model_copy(
        update={
            "number": 2,
            "status": "pending",
            "version": "v1.1.0",
            "image": GOOD2,
            "description": "deploy v1.1.0",
        }
    )
    d.store.save(killed)
    d.target.apply(d.name, killed.manifests.replace(GOOD, GOOD2))
    out = d.rollback()
    assert out.revision.description == "rollback to 1 (repair)"
    revs = d.history()
    assert revs[1].status == "failed" and revs[1].reason.startswith("interrupted")
    assert deployment(cluster, name).spec.template.spec.containers[0].image == GOOD


def test_manual_rollback_to_a_revision(cluster, setup):
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    d.deploy(release(GOOD2, "v1.0.1"))
    out = d.rollback(to=1)
    assert out.revision.number == 3 and out.revision.version == "v1.0.0"
    assert deployment(cluster, name).spec.template.spec.containers[0].image == GOOD
    assert [r.status for r in d.history()] == ["superseded", "rolled-back", "deployed"]


def test_apply_conflicts_are_retried(cluster, setup, monkeypatch):
    d, _name = setup()
    calls = {"n": 0}
    real = client.AppsV1Api.patch_namespaced_deployment

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise client.ApiException(status=409, reason="Conflict")
        return real(self, *a, **kw)

    monkeypatch.setattr(client.AppsV1Api, "patch_namespaced_deployment", flaky)
    d.deploy(release(GOOD, "v1.0.0"))
    assert calls["n"] >= 2


def test_dry_run_applies_nothing(cluster, setup):
    d, name = setup()
    out = d.deploy(release(GOOD, "v1.0.0"), dry_run=True)
    assert "kind: Deployment" in out.revision.manifests
    assert d.history() == []
    with pytest.raises(client.ApiException):
        deployment(cluster, name)


def test_revision_model_round_trips():
    r = Revision(
        number=1, env="e", model="m", version="v", image="i", record_digest="d", manifests="x"
    )
    assert Revision.model_validate_json(r.model_dump_json()) == r


def kube_repo(cluster, service, repo, tmp_path, monkeypatch, env_name):
    """The toy repo deploying to the emulator through a kubeconfig, run once."""
    from tests.conftest import commit_all

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: k, cluster: {{server: '{cluster.url}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: staging}}]\n"
        "current-context: c\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "stages:",
            (
                "    deploy:\n      target: kubernetes\n      environments:\n"
                f"        {env_name}: {{namespace: staging, url: '{service}', rollout_timeout: 5,\n"
                "                  checks: {count: 1, http: [{path: /healthz}]}}\nstages:"
            ),
        )
    )
    commit_all(repo, "feat: deploy to kubernetes")


def test_cli_deploys_through_kubeconfig(cluster, service, toy_repo, cli, tmp_path, monkeypatch):
    kube_repo(cluster, service, toy_repo, tmp_path, monkeypatch, "cli-env")
    assert cli("run")[0] == 0
    code, out, err = cli("deploy", "cli-env", "--image", GOOD)
    assert code == 0, err
    assert "cli-env: revision 1 deployed v0.1.0" in out
    dep = deployment(cluster, "toy-cli-env")
    assert dep.metadata.annotations["dev.lepton-ci/image"] == GOOD
    code, out, _ = cli("history", "cli-env")
    assert code == 0 and "deployed" in out and "v0.1.0" in out


def test_deploys_are_recorded_as_github_deployments(
    cluster, service, toy_repo, cli, tmp_path, monkeypatch
):
    from tests.conftest import git
    from tests.support.github_server import GitHubServer

    kube_repo(cluster, service, toy_repo, tmp_path, monkeypatch, "gh-env")
    assert cli("run")[0] == 0
    with GitHubServer() as gh:
        monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
        monkeypatch.setenv("GITHUB_TOKEN", "test-token")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        assert cli("deploy", "gh-env", "--image", GOOD)[0] == 0
        cluster.broken.add(BROKEN)
        code, _, _ = cli("deploy", "gh-env", "--image", BROKEN)
        assert code == 1
        deps = gh.state.deployments["acme/models"]
        assert [d["environment"] for d in deps] == ["gh-env", "gh-env"]
        assert deps[0]["payload"]["image"] == GOOD
        assert deps[0]["ref"] == git(toy_repo, "rev-parse", "HEAD")
        states = [[s["state"] for s in gh.state.statuses[d["id"]]] for d in deps]
        assert states == [["in_progress", "success"], ["in_progress", "failure"]]
        assert "reverted to v0.1.0" in gh.state.statuses[deps[1]["id"]][-1]["description"]
        assert gh.state.statuses[deps[0]["id"]][-1]["environment_url"] == service
