"""The kubernetes target against the kmock emulator with a test controller."""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from kubernetes import client

from lepton_ci.core import config
from lepton_ci.core.errors import LeptonError
from lepton_ci.deploy import health, manifests
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.deploy.deployer import Deployer, DeployFailed
from lepton_ci.deploy.kubernetes import SSA, ConfigMapStore, KubernetesTarget, rollout_pending
from lepton_ci.deploy.releases import DeployError, Revision
from tests.conftest import commit_all
from tests.support.kube import Cluster, Fault

pytestmark = pytest.mark.e2e
GOOD = "registry.test/digits@sha256:" + "1" * 64
GOOD2 = "registry.test/digits@sha256:" + "2" * 64
BROKEN = "registry.test/digits@sha256:" + "b" * 64
STUCK = "registry.test/digits@sha256:" + "5" * 64


@pytest.fixture
def cluster():
    """One emulated cluster per test: kmock scans every stored object on each call, so a
    shared one slows down as tests add objects, and no test may see another's."""
    c = Cluster()
    yield c
    c.close()


_counter = iter(range(1000))


@pytest.fixture
def ns():
    """A namespace of its own per test: lists stay small and no test sees another's objects."""
    return f"t{next(_counter)}"


@pytest.fixture
def setup(cluster, ns, tmp_path):
    """A fresh namespace-sized world per test: its own environment name, health checks through
    the service in front of whichever pods the controller has available."""
    env = f"env{next(_counter)}"
    name = manifests.dns_name("digits", env)

    def make(lease_seconds=60, **env_extra):
        deploy = config.DeployConfig.model_validate(
            {
                "target": "kubernetes",
                "lock_timeout": 0.5,
                "environments": {
                    env: {
                        "namespace": ns,
                        "url": cluster.service_url(ns, name),
                        # virtual seconds: the cluster's deadline is half, 10
                        "rollout_timeout": 20,
                        "rollback_timeout": 20,
                        "checks": {"count": 2, "interval": 0, "http": [{"path": "/healthz"}]},
                        **env_extra,
                    }
                },
            }
        )
        # Every wait of the deployer is the cluster's time passing: nothing sleeps.
        target = KubernetesTarget(cluster.api, ns, sleep=cluster.advance, clock=cluster.now)
        store = ConfigMapStore(
            cluster.api,
            ns,
            name,
            sleep=cluster.advance,
            lease_seconds=lease_seconds,
            clock=cluster.now,
            now=cluster.utcnow,
        )
        return Deployer(
            "digits", env, deploy, tmp_path, target=target, store=store, log=lambda m: None
        ), name

    return make


def release(image, version):
    return manifests.Release("digits", version, image, "blake3:" + "0" * 64, 0, "run", "ci")


def deployment(cluster, name, ns):
    return client.AppsV1Api(cluster.api).read_namespaced_deployment(name, ns)


def test_apply_wait_and_history_in_configmaps(cluster, ns, setup):
    d, name = setup()
    out = d.deploy(release(GOOD, "v1.0.0"))
    assert out.revision.status == "deployed"
    dep = deployment(cluster, name, ns)
    assert dep.spec.template.spec.containers[0].image == GOOD
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "lepton-ci"
    assert dep.metadata.annotations["dev.lepton-ci/version"] == "v1.0.0"
    svc = client.CoreV1Api(cluster.api).read_namespaced_service(name, ns)
    assert svc.spec.selector["app.kubernetes.io/instance"] == name
    cms = client.CoreV1Api(cluster.api).list_namespaced_config_map(ns).items
    mine = [c for c in cms if (c.metadata.labels or {}).get("dev.lepton-ci/release") == name]
    assert len(mine) == 1 and '"status":"deployed"' in mine[0].data["revision.json"]
    assert [r.status for r in d.history()] == ["deployed"]


def test_prune_removes_objects_the_new_render_drops(cluster, ns, setup):
    d, name = setup(hpa={"max": 4})
    d.deploy(release(GOOD, "v1.0.0"))
    hpa = client.AutoscalingV2Api(cluster.api)
    assert hpa.read_namespaced_horizontal_pod_autoscaler(name, ns).spec.max_replicas == 4
    d.env = d.env.model_copy(update={"hpa": None})
    d.deploy(release(GOOD2, "v1.0.1"))
    with pytest.raises(client.ApiException) as e:
        hpa.read_namespaced_horizontal_pod_autoscaler(name, ns)
    assert e.value.status == 404
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD2


def test_a_deploy_keeps_the_replica_count_the_autoscaler_chose(cluster, ns, setup):
    """With an HPA, the Deployment rendered `replicas: 1` and each deploy reset the count."""
    d, name = setup(hpa={"min": 1, "max": 6})
    assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"
    cluster.load[(ns, name)] = 4  # the load asks for 4: the HPA scales to it
    cluster.advance(1)
    assert deployment(cluster, name, ns).spec.replicas == 4
    assert d.deploy(release(GOOD2, "v1.0.1")).revision.status == "deployed"
    dep = deployment(cluster, name, ns)
    assert dep.spec.template.spec.containers[0].image == GOOD2
    assert dep.spec.replicas == 4
    assert owners_of(dep, "f:replicas") == ["kube-controller-manager"]


def owners_of(dep, field):
    """The field managers that own spec.<field> of a Deployment."""
    return [
        m.manager
        for m in dep.metadata.managed_fields or []
        if field in ((m.fields_v1 or {}).get("f:spec") or {})
    ]


def test_adding_an_autoscaler_never_drops_the_replicas_that_serve(cluster, ns, setup):
    """Server-side apply removes a field its manager stops sending unless another manager
    owns it too, and the API server defaults a missing `replicas` to 1. The first deploy
    with an HPA leaves `replicas` out (it is the HPA's now): the 3 replicas lepton-ci owned
    fell to 1 until the HPA scaled up again. It is handed over first, as Kubernetes
    documents: a manager of its own keeps the count, the HPA takes it from there."""
    d, name = setup(replicas=3)
    d.deploy(release(GOOD, "v1.0.0"))
    assert owners_of(deployment(cluster, name, ns), "f:replicas") == ["lepton-ci"]
    d.env = d.env.model_copy(update={"hpa": {"min": 2, "max": 6}})
    assert d.deploy(release(GOOD2, "v1.0.1")).revision.status == "deployed"
    seen = [v["spec"]["replicas"] for v in cluster.history("deployments", ns, name)]
    assert min(seen) == 3, seen
    dep = deployment(cluster, name, ns)
    assert dep.spec.replicas == 3 and "lepton-ci" not in owners_of(dep, "f:replicas")
    cluster.load[(ns, name)] = 5
    cluster.advance(1)
    assert owners_of(deployment(cluster, name, ns), "f:replicas") == ["kube-controller-manager"]
    d.deploy(release(GOOD, "v1.0.2"))
    assert deployment(cluster, name, ns).spec.replicas == 5


def test_apply_is_server_side_dropped_fields_go_and_other_managers_fields_stay(cluster, ns, setup):
    """What the new render no longer has is removed (a merge patch would leave the old
    memory limit in place for ever); what another manager added stays; a field lepton-ci
    owns that someone changed by hand is taken back (the apply is forced)."""
    d, name = setup(resources={"limits": {"memory": "256Mi"}})
    d.deploy(release(GOOD, "v1.0.0"))
    apps = client.AppsV1Api(cluster.api)
    apps.patch_namespaced_deployment(
        name, ns, {"metadata": {"annotations": {"team": "ml"}}}, field_manager="kubectl-annotate"
    )
    apps.patch_namespaced_deployment_scale(
        name, ns, {"spec": {"replicas": 5}}, field_manager="kubectl-scale"
    )
    assert owners_of(deployment(cluster, name, ns), "f:replicas") == ["kubectl-scale"]
    d.env = d.env.model_copy(update={"resources": {}})
    d.deploy(release(GOOD2, "v1.0.1"))
    dep = deployment(cluster, name, ns)
    assert dep.spec.template.spec.containers[0].resources in (None, {}) or not (
        dep.spec.template.spec.containers[0].resources.limits
    )
    assert dep.metadata.annotations["team"] == "ml"
    assert dep.spec.replicas == 1 and owners_of(dep, "f:replicas") == ["lepton-ci"]


def test_the_stand_in_refuses_an_unforced_apply_over_another_managers_field(cluster, ns, setup):
    """As the API server does: another manager's apply that sets a field lepton-ci owns to
    another value is a conflict (409, the field named) unless forced; the same value is
    owned together."""
    from lepton_ci.deploy.kubernetes import status_message

    d, name = setup(replicas=2)
    d.deploy(release(GOOD, "v1.0.0"))
    apps = client.AppsV1Api(cluster.api)
    mine = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}}

    def apply(replicas, **kw):
        body = {**mine, "spec": {"replicas": replicas}}
        return apps.patch_namespaced_deployment(
            name, ns, body, field_manager="ops-script", _content_type=SSA, **kw
        )

    with pytest.raises(client.ApiException) as e:
        apply(5)
    assert e.value.status == 409
    assert status_message(e.value) == (
        '409 Conflict: Apply failed with 1 conflict: conflict with "lepton-ci" using apps/v1: '
        ".spec.replicas"
    )
    apply(2)  # the same value: no conflict, both own it
    assert sorted(owners_of(deployment(cluster, name, ns), "f:replicas")) == [
        "lepton-ci",
        "ops-script",
    ]
    apply(5, force=True)
    assert owners_of(deployment(cluster, name, ns), "f:replicas") == ["ops-script"]


def test_a_change_of_the_pod_template_alone_is_rolled_out_and_reverted(cluster, ns, setup):
    """Same image, another environment variable: a new ReplicaSet all the same. A setting
    that crashes the server is caught by the rollout and reverted like a bad image."""
    cluster.broken_env.add(("MODEL_THREADS", "0"))
    d, name = setup(env={"MODEL_THREADS": "4"})
    d.deploy(release(GOOD, "v1.0.0"))
    d.env = d.env.model_copy(update={"env": {"MODEL_THREADS": "0"}})
    with pytest.raises(DeployFailed, match="ProgressDeadlineExceeded"):
        d.deploy(release(GOOD, "v1.0.1"))
    # three pod templates rolled out, one image: v1.0.0, the crashing v1.0.1, the revert
    assert len(cluster.rollouts[(ns, name)].templates) == 3
    env = deployment(cluster, name, ns).spec.template.spec.containers[0].env
    assert {e.name: e.value for e in env}["MODEL_THREADS"] == "4"


@pytest.mark.parametrize(
    ("strategy", "lowest", "highest"),
    [
        ({"type": "Recreate"}, 0, 2),  # every old pod gone before a new one starts
        ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}, 1, 2),
        ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}, 2, 4),
    ],
)
def test_the_manifests_strategy_is_how_the_pods_are_replaced(
    cluster, ns, setup, strategy, lowest, highest
):
    """A user's template may set the strategy: the wait follows the rollout it makes, and
    is done only when every new pod is ready and no old one is left."""
    import yaml

    d, name = setup(replicas=2)
    d.deploy(release(GOOD, "v1.0.0"))
    objs = list(yaml.safe_load_all(d.render(release(GOOD2, "v1.0.1"))))
    for o in objs:
        if o["kind"] == "Deployment":
            o["spec"]["strategy"] = strategy
    text = yaml.safe_dump_all(objs)
    before = len(cluster.rollouts[(ns, name)].history)
    d.target.apply(d.name, text)
    d.target.wait(text, 60, None)
    during = cluster.rollouts[(ns, name)].history[before:]
    walked = during
    assert min(st["availableReplicas"] for st in during) == lowest
    assert max(st["replicas"] for st in during) == highest
    assert walked[-1]["updatedReplicas"] == walked[-1]["availableReplicas"] == 2
    assert walked[-1]["replicas"] == 2


def test_a_prometheus_check_on_a_scalar_reverts_a_bad_release(cluster, ns, setup, tmp_path):
    """`checks.prometheus` with a scalar(...) query crashed with TypeError after the new
    release was applied: the revision stayed pending and nothing was reverted."""
    from tests.support.prometheus import PrometheusServer

    prom = PrometheusServer(tmp_path / "prom", targets=[]).start()
    try:
        query = {"url": prom.url, "query": "scalar(vector(0.5))", "max": 1}
        checks = {"count": 1, "interval": 0, "http": [{"path": "/healthz"}], "prometheus": query}
        d, name = setup(checks=checks)
        assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"
        # The new release's value is over the bound (the query's value stands in for what the
        # release would change); the old one's, checked again on the revert, is not.
        bound = config.ChecksConfig.model_validate({**checks, "prometheus": {**query, "max": 0.1}})
        calls = []

        def checker(cfg: config.ChecksConfig, url: str) -> health.Report:
            calls.append(url)
            return health.run(bound if len(calls) == 1 else cfg, url)

        d.checker = checker
        with pytest.raises(DeployFailed) as e:
            d.deploy(release(GOOD2, "v1.0.1"))
        assert "value 0.5 out of bounds (max 0.1)" in str(e.value)
        assert e.value.outcome.reverted_to is not None
        assert [r.status for r in d.history()] == ["superseded", "failed", "deployed"]
        assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD
    finally:
        prom.stop()


def test_watched_environment_deploys_its_alert_rules_and_dashboard(cluster, ns, setup):
    """`watch:` SLOs render a PrometheusRule (prometheus-operator's CRD) and a dashboard
    ConfigMap; the kubernetes target applies both instead of refusing the deploy."""
    slos = [{"name": "errors", "query": "vector(0)", "max": 0.01}]
    d, name = setup(watch={"slos": slos})
    assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"
    rule = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", ns, "prometheusrules", name
    )
    assert rule["spec"]["groups"][0]["rules"][0]["expr"] == "(vector(0)) > 0.01"
    board = client.CoreV1Api(cluster.api).read_namespaced_config_map(f"{name}-dashboard", ns)
    assert board.metadata.labels["grafana_dashboard"] == "1"


@pytest.mark.parametrize("image", [BROKEN, STUCK])
def test_progress_deadline_exceeded_reverts_to_previous(cluster, ns, setup, image):
    """Pods that crash-loop, or stay Pending, make no progress: the cluster says
    ProgressDeadlineExceeded once the manifest's progressDeadlineSeconds pass. It counts them
    from the rollout's last progress, so the deadline is rendered below lepton-ci's own
    budget (half, by default): rendered equal, lepton-ci's budget always ran out first and
    the cluster's reason was never what it reported."""
    cluster.broken.add(BROKEN)
    cluster.stuck.add(STUCK)
    d, name = setup(rollout_timeout=60)
    d.deploy(release(GOOD, "v1.0.0"))
    assert deployment(cluster, name, ns).spec.progress_deadline_seconds == 30
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(image, "v1.1.0"))
    assert "rollout failed: deployment " + name + ": ProgressDeadlineExceeded" in str(e.value)
    assert "has timed out progressing" in str(e.value)
    assert "revision 3 serves v1.0.0 again" in str(e.value)
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD
    assert [(r.number, r.status, r.description) for r in d.history()] == [
        (1, "superseded", "deploy v1.0.0"),
        (2, "failed", "deploy v1.1.0"),
        (3, "deployed", "rollback to 1"),
    ]


def test_a_progress_deadline_must_be_below_the_rollout_budget():
    with pytest.raises(ValueError, match=r"progress_deadline \(60\) must be below rollout_timeout"):
        config.DeployEnvironment.model_validate({"rollout_timeout": 60, "progress_deadline": 60})
    env = config.DeployEnvironment.model_validate({"rollout_timeout": 60, "progress_deadline": 20})
    assert env.progress_deadline_seconds() == 20
    assert config.DeployEnvironment().progress_deadline_seconds() == 60  # half of 120


def test_rollout_budget_and_separate_rollback_budget(cluster, ns, setup):
    """A rollout that keeps progressing, too slowly: no deadline passes without progress, so
    lepton-ci's own budget ends it (and the revert gets a budget of its own)."""
    slow = "registry.test/digits@sha256:" + "51" * 32
    cluster.slow[slow] = 10  # each pod takes 10 s to become ready; 3 replicas, one by one
    d, name = setup(replicas=3, rollout_timeout=24, progress_deadline=12, rollback_timeout=60)
    d.deploy(release(GOOD, "v1.0.0"))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(slow, "v1.2.0"))
    assert "not rolled out after 24s" in str(e.value)
    assert "ProgressDeadlineExceeded" not in str(e.value)
    assert e.value.outcome.reverted_to is not None
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD


def test_first_release_failing_is_removed_or_scaled_to_zero(cluster, ns, setup):
    cluster.broken.add(BROKEN)
    d, name = setup()
    with pytest.raises(LeptonError, match="it was removed"):
        d.deploy(release(BROKEN, "v0.1.0"))
    with pytest.raises(client.ApiException):
        deployment(cluster, name, ns)
    d2, name2 = setup(on_first_failure="scale-to-zero")
    with pytest.raises(LeptonError, match="scaled to zero"):
        d2.deploy(release(BROKEN, "v0.1.0"))
    assert deployment(cluster, name2, ns).spec.replicas == 0


def test_lease_allows_one_deploy_at_a_time(cluster, ns, setup):
    d, _name = setup()
    busy = pytest.raises(LeptonError, match="another deploy of this environment is running")
    with d.store.lock(1), busy:
        d.deploy(release(GOOD, "v1.0.0"))
    d.deploy(release(GOOD, "v1.0.0"))  # released again afterwards


def test_revision_left_pending_is_repaired(cluster, ns, setup):
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
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD


def test_manual_rollback_to_a_revision(cluster, ns, setup):
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    d.deploy(release(GOOD2, "v1.0.1"))
    out = d.rollback(to=1)
    assert out.revision.number == 3 and out.revision.version == "v1.0.0"
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD
    assert [r.status for r in d.history()] == ["superseded", "rolled-back", "deployed"]


def test_apply_conflicts_as_the_api_server_reports_them(cluster, ns, setup):
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    # the object changed between our read and our write, once: retried, and it lands
    cluster.emulator.faults.append(Fault("deployments", name, times=1))
    d.deploy(release(GOOD2, "v1.0.1"))
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD2
    # it keeps changing: the apply fails with the server's own words, the previous one serves
    cluster.emulator.faults.append(Fault("deployments", name, times=4))  # 1 try + 3 retries
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(GOOD, "v1.0.2"))
    assert f'apply failed: 409 Conflict: Operation cannot be fulfilled on deployments "{name}"' in (
        str(e.value)
    )
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD2


def test_mid_rollout_is_not_done(cluster, ns, setup):
    """A rollout passes through 'updated 1, available 1' while the available pod is the OLD
    one; a release whose new pods fail their checks must be caught, not the old pod probed."""
    sick = "registry.test/digits@sha256:" + "5ec" * 21 + "5"
    cluster.sick.add(sick)
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(sick, "v1.1.0"))
    assert "health check failed" in str(e.value)
    assert "revision 3 serves v1.0.0 again" in str(e.value)
    walked = cluster.rollouts[(ns, name)].history
    surged = [
        st
        for st in walked
        if st["replicas"] > st["updatedReplicas"] and st["availableReplicas"] >= 1
    ]
    assert surged, "the controller must pass through a surge with the old pod available"


def test_rollout_pending_as_kubectl_decides():
    def dep(gen, observed, want, replicas, updated, available, reason="ReplicaSetUpdated"):
        return client.V1Deployment(
            metadata=client.V1ObjectMeta(generation=gen),
            spec=client.V1DeploymentSpec(replicas=want, selector={}, template={}),
            status=client.V1DeploymentStatus(
                observed_generation=observed,
                replicas=replicas,
                updated_replicas=updated,
                available_replicas=available,
                conditions=[
                    client.V1DeploymentCondition(type="Progressing", status="True", reason=reason)
                ],
            ),
        )

    assert "observe generation 2" in rollout_pending("d", dep(2, 1, 1, 1, 1, 1))
    assert "1 old replicas pending termination" in rollout_pending("d", dep(2, 2, 1, 2, 1, 1))
    assert "1 of 2 new replicas updated" in rollout_pending("d", dep(2, 2, 2, 3, 1, 2))
    assert "0 of 1 updated replicas available" in rollout_pending("d", dep(2, 2, 1, 1, 1, 0))
    assert rollout_pending("d", dep(2, 2, 2, 2, 2, 2)) == ""
    with pytest.raises(RolloutFailed, match="ProgressDeadlineExceeded"):
        rollout_pending("d", dep(2, 2, 1, 2, 1, 1, reason="ProgressDeadlineExceeded"))


def test_failing_health_check_reverts(cluster, ns, setup):
    sick = "registry.test/digits@sha256:" + "51c" * 21 + "0"
    cluster.sick.add(sick)
    d, name = setup()
    d.deploy(release(GOOD, "v1.0.0"))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(sick, "v1.1.0"))
    assert "health check failed" in str(e.value)
    assert e.value.outcome.reverted_to.number == 3
    assert deployment(cluster, name, ns).spec.template.spec.containers[0].image == GOOD
    assert [r.status for r in d.history()] == ["superseded", "failed", "deployed"]


def test_revert_that_fails_too_says_nothing_healthy_serves(cluster, ns, setup):
    was_good = "registry.test/digits@sha256:" + "9a" * 32
    d, _name = setup()
    d.deploy(release(was_good, "v1.0.0"))
    cluster.sick.add(was_good)  # what served before broke meanwhile (a dependency went away)
    cluster.broken.add(BROKEN)
    with pytest.raises(DeployError) as e:
        d.deploy(release(BROKEN, "v1.1.0"))
    assert not isinstance(e.value, DeployFailed)
    assert "also failed: health check failed" in str(e.value)
    assert "Nothing healthy is serving" in str(e.value)
    assert [r.status for r in d.history()][1:] == ["failed", "failed"]


def test_repair_when_nothing_healthy_came_before(cluster, ns, setup):
    d, name = setup()
    # the very first deploy was killed after applying: revision 1 pending, nothing before it
    out = d.deploy(release(GOOD, "v1.0.0"), dry_run=True)
    killed = out.revision.model_copy(update={"status": "pending"})
    d.store.save(killed)
    d.target.apply(d.name, killed.manifests)
    with pytest.raises(DeployError, match="no earlier healthy revision"):
        d.rollback()
    with pytest.raises(client.ApiException):
        deployment(cluster, name, ns)  # the half-applied release was removed
    d.deploy(release(GOOD2, "v1.0.1"))
    assert [(r.number, r.status) for r in d.history()] == [(1, "failed"), (2, "deployed")]


def test_lease_renewed_while_held_and_taken_over_after_sigkill(cluster, ns, setup, tmp_path):
    """A deploy killed with SIGKILL cannot release its Lease: the next one takes it over once
    it expires, while a live holder keeps renewing it past its duration. The holder is a real
    process on the real clock; the taker judges at times the test sets."""
    d, name = setup(lease_seconds=1)
    lease_name = manifests.dns_name("lepton", name, "lock")
    coord = client.CoordinationV1Api(cluster.api)
    script = tmp_path / "holder.py"
    script.write_text(
        "import sys, time\n"
        "from kubernetes import client\n"
        "from lepton_ci.deploy.kubernetes import ConfigMapStore\n"
        "cfg = client.Configuration(); cfg.host = sys.argv[1]\n"
        "store = ConfigMapStore(client.ApiClient(cfg), sys.argv[3], sys.argv[2], lease_seconds=1)\n"
        "with store.lock(10):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, str(script), cluster.url, name, ns],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def lease():
        return coord.read_namespaced_lease(lease_name, ns).spec

    def taker(at):
        return ConfigMapStore(
            cluster.api, ns, name, sleep=cluster.advance, clock=cluster.now,
            now=lambda: at, lease_seconds=1,
        )  # fmt: skip

    try:
        assert holder.stdout.readline().strip() == "held"
        acquired = lease().acquire_time
        # the holder's own renewals carry it past its duration (an event awaited, not a delay)
        until(lambda: (lease().renew_time - acquired).total_seconds() > 1.5)
        fresh = lease().renew_time + timedelta(seconds=0.5)
        busy = pytest.raises(LeptonError, match="another deploy of this environment is running")
        with busy, taker(fresh).lock(1):
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    dead = lease()
    with taker(dead.renew_time + timedelta(seconds=2)).lock(1):  # expired: taken over
        assert lease().holder_identity != dead.holder_identity
        assert lease().lease_transitions == 1
    with pytest.raises(client.ApiException):  # released afterwards
        coord.read_namespaced_lease(lease_name, ns)
    assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"


def until(condition, limit=60.0):
    """Wait for something another process does; the limit only keeps a broken test finite."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.05)


def test_lease_expiry_read_from_renew_time(cluster, ns, setup):
    """Controlled timestamps: a Lease renewed long ago is taken over, a fresh one is not."""
    d, name = setup()
    lease_name = manifests.dns_name("lepton", name, "lock")
    coord = client.CoordinationV1Api(cluster.api)

    def held_by(holder, renewed):
        spec = {"holderIdentity": holder, "leaseDurationSeconds": 60, "renewTime": renewed}
        coord.create_namespaced_lease(ns, {"metadata": {"name": lease_name}, "spec": spec})

    held_by("runner-alive", cluster.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    with pytest.raises(LeptonError, match="held by runner-alive"), d.store.lock(0.2):
        pass
    coord.delete_namespaced_lease(lease_name, ns)
    held_by("runner-gone", (cluster.utcnow() - timedelta(seconds=61)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    ))  # fmt: skip
    with d.store.lock(0.2):
        spec = coord.read_namespaced_lease(lease_name, ns).spec
        assert spec.holder_identity != "runner-gone" and spec.lease_transitions == 1


def test_dry_run_applies_nothing(cluster, ns, setup):
    d, name = setup()
    out = d.deploy(release(GOOD, "v1.0.0"), dry_run=True)
    assert "kind: Deployment" in out.revision.manifests
    assert d.history() == []
    with pytest.raises(client.ApiException):
        deployment(cluster, name, ns)


def test_revision_model_round_trips():
    r = Revision(
        number=1, env="e", model="m", version="v", image="i", record_digest="d", manifests="x"
    )
    assert Revision.model_validate_json(r.model_dump_json()) == r


def kube_repo(cluster, repo, tmp_path, monkeypatch, env_name, server=None):
    """The toy repo deploying to the emulator through a kubeconfig (or to `server`). The
    command builds its own target: the cluster's clock is what it waits on and sleeps with."""
    import types

    from lepton_ci.deploy import kubernetes as target_module

    monkeypatch.setattr(
        target_module, "time", types.SimpleNamespace(sleep=cluster.advance, monotonic=cluster.now)
    )
    service = cluster.service_url(env_name, f"toy-{env_name}")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: k, cluster: {{server: '{server or cluster.url}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        f"contexts: [{{name: c, context: {{cluster: k, user: u, namespace: {env_name}}}}}]\n"
        "current-context: c\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "stages:",
            (
                "    deploy:\n      target: kubernetes\n      environments:\n"
                f"        {env_name}: {{namespace: {env_name}, url: '{service}',\n"
                "                  rollout_timeout: 5,\n"
                "                  checks: {count: 1, http: [{path: /healthz}]}}\nstages:"
            ),
        )
    )
    commit_all(repo, "feat: deploy to kubernetes")
    return service


def test_cli_deploys_through_kubeconfig(cluster, toy_repo, cli, tmp_path, monkeypatch):
    kube_repo(cluster, toy_repo, tmp_path, monkeypatch, "cli-env")
    assert cli("run")[0] == 0
    code, out, err = cli("deploy", "cli-env", "--image", GOOD)
    assert code == 0, err
    assert "cli-env: revision 1 deployed v0.1.0" in out
    dep = deployment(cluster, "toy-cli-env", "cli-env")
    assert dep.metadata.annotations["dev.lepton-ci/image"] == GOOD
    code, out, _ = cli("history", "cli-env")
    assert code == 0 and "deployed" in out and "v0.1.0" in out


def test_deploys_are_recorded_as_github_deployments(cluster, toy_repo, cli, tmp_path, monkeypatch):
    from tests.conftest import git
    from tests.support.github_server import GitHubServer

    service = kube_repo(cluster, toy_repo, tmp_path, monkeypatch, "gh-env")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    with GitHubServer() as gh:
        gh.state.git["acme/models"] = toy_repo  # every commit and tag is pushed to GitHub
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
        # a rollback is a deploy of an earlier release: recorded as a Deployment too
        assert cli("deploy", "gh-env", "--image", GOOD2)[0] == 0
        code, _, err = cli("rollback", "gh-env")
        assert code == 0, err
        rolled = gh.state.deployments["acme/models"][-1]
        assert (rolled["payload"]["image"], rolled["ref"]) == (GOOD, deps[0]["ref"])
        statuses = gh.state.statuses[rolled["id"]]
        assert [s["state"] for s in statuses] == ["in_progress", "success"]
        assert statuses[-1]["description"].startswith("rolled back to v0.1.0 (revision ")


def test_a_commit_github_does_not_hold_is_refused_before_anything_is_applied(
    cluster, toy_repo, cli, tmp_path, monkeypatch
):
    """A deploy is recorded as a GitHub Deployment of its commit, and GitHub refuses (422) a
    ref it does not hold: a commit never pushed. The deploy stops before anything is
    applied, and says why."""
    from tests.conftest import git
    from tests.support.github_server import GitHubServer

    kube_repo(cluster, toy_repo, tmp_path, monkeypatch, "unpushed-env")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(toy_repo, "push", "-q", str(origin), "HEAD:refs/heads/main")
    (toy_repo / "notes.txt").write_text("not pushed\n")
    head = commit_all(toy_repo, "docs: a local commit")
    assert cli("run")[0] == 0
    with GitHubServer() as gh:
        gh.state.git["acme/models"] = origin
        monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
        monkeypatch.setenv("GITHUB_TOKEN", "test-token")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        code, _, err = cli("deploy", "unpushed-env", "--image", GOOD)
        assert code == 1, err
        assert f"GitHub has no commit {head} in acme/models" in err
        assert f"No ref found for: {head}" in err and "nothing was deployed" in err
        assert "push the commit" in err
        assert gh.state.deployments["acme/models"] == []
    with pytest.raises(client.ApiException):
        deployment(cluster, "toy-unpushed-env", "unpushed-env")
    code, out, _ = cli("history", "unpushed-env")
    assert code == 0 and "deployed" not in out


def test_render_is_offline_and_numbers_from_the_cluster_when_there(
    cluster, toy_repo, cli, tmp_path, monkeypatch
):
    kube_repo(cluster, toy_repo, tmp_path, monkeypatch, "render-env")
    assert cli("run")[0] == 0
    assert cli("deploy", "render-env", "--image", GOOD)[0] == 0
    code, out, _ = cli("render", "render-env", "--image", GOOD2)
    assert code == 0 and "dev.lepton-ci/revision: '2'" in out
    monkeypatch.delenv("KUBECONFIG")  # like `helm template`: no cluster, no kubernetes package
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    code, out, err = cli("render", "render-env", "--image", GOOD2)
    assert code == 0, err
    assert "kind: Deployment" in out and "dev.lepton-ci/revision: '1'" in out
    assert "rendered as revision 1" in err and "rendered" not in out


def test_unreachable_api_server_and_missing_package_are_clear_errors(
    cluster, toy_repo, cli, tmp_path, monkeypatch
):
    with socket.socket() as dead:  # bound, never listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{dead.getsockname()[1]}"
        kube_repo(cluster, toy_repo, tmp_path, monkeypatch, "dead-env", server=server)
        code, _, err = cli("history", "dead-env")
    assert code == 1, err
    assert f"Kubernetes API server {server} unreachable" in err
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    code, _, err = cli("history", "dead-env")
    assert code == 1, err
    assert "needs the Python package `kubernetes`" in err
    assert "pip install 'lepton-ci[deploy]==" in err


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (": not yaml [", "while parsing"),
        ("clusters: [{name: k, cluster: {server: 'http://[bad'}}]", "Invalid IPv6 URL"),
        ("clusters: [{name: k, cluster: {server: 'http://127.0.0.1:99999'}}]", "Port out of"),
    ],
)
def test_a_broken_kubeconfig_is_a_clear_error(tmp_path, text, said):
    from lepton_ci.deploy.kubernetes import api_client_from_env

    kc = tmp_path / "kubeconfig"
    if text.startswith("clusters"):
        text = (
            f"apiVersion: v1\nkind: Config\n{text}\nusers: [{{name: u, user: {{token: t}}}}]\n"
            "contexts: [{name: c, context: {cluster: k, user: u}}]\ncurrent-context: c\n"
        )
    kc.write_text(text)
    with pytest.raises(DeployError, match=f"kubeconfig {kc} is not usable: {said}"):
        api_client_from_env({"KUBECONFIG": str(kc)})


def test_every_object_is_applied_server_side_by_lepton_ci_with_force(cluster, ns, setup):
    """A merge patch would drop the field ownership server-side apply keeps (and the API
    server refuses `force` on one): every write of a deploy is an apply patch."""
    slos = [{"name": "errors", "query": "vector(0)", "max": 0.01}]
    d, name = setup(hpa={"max": 4}, watch={"slos": slos})
    assert d.deploy(release(GOOD, "v1.0.0")).revision.status == "deployed"
    assert cluster.emulator is not None
    # leases are the deploy lock (a merge patch, no force); status is the controller's
    applied = [p for p in cluster.emulator.patches if p.plural != "leases" and not p.subresource]
    expected = {"deployments", "services", "horizontalpodautoscalers", "prometheusrules"}
    assert {(plural, name) for plural in expected} <= {(p.plural, p.name) for p in applied}
    assert {(p.content_type, p.field_manager, p.force) for p in applied} == {
        ("application/apply-patch+yaml", "lepton-ci", "true")
    }
