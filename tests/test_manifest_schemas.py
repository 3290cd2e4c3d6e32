"""Rendered manifests (ours and a user's overrides) against the Kubernetes API schemas of the
oldest and newest version we support, offline (kubernetes-validate ships them), and the
custom resources we emit (ServiceMonitor, PrometheusRule) against prometheus-operator's
published CRD schemas."""

import pytest

from lepton_ci.core import config
from lepton_ci.deploy import manifests
from tests.support import crd

pytestmark = pytest.mark.unit
kubernetes_validate = pytest.importorskip("kubernetes_validate")
OLDEST, NEWEST = "1.25", "1.37"  # the range docs/explanation/deploys.md states


def render(tmp_path, user_templates=None, **env):
    deploy = {"target": "kubernetes", "environments": {"prod": {"url": "http://x", **env}}}
    if user_templates:
        (tmp_path / "k8s").mkdir(parents=True)
        for name, text in user_templates.items():
            (tmp_path / "k8s" / name).write_text(text)
        deploy["templates"] = "k8s"
    cfg = config.DeployConfig.model_validate(deploy)
    rel = manifests.Release(
        "digits", "v1.2.3", "registry.test/digits@sha256:" + "1" * 64, "blake3:" + "0" * 64,
        4, "https://ci/run/1", "ci",
    )  # fmt: skip
    return manifests.objects(manifests.render("prod", cfg.environments["prod"], cfg, rel, tmp_path))


def check(objs):
    kinds = []
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: its schema is not in kubernetes-validate
        for version in (OLDEST, NEWEST):
            # strict: an unknown field (a typo in a template) is an error too
            kubernetes_validate.validate(obj, version, strict=True)
        kinds.append(obj["kind"])
    return kinds


def test_our_manifests_are_valid_in_the_oldest_and_newest_kubernetes(tmp_path):
    objs = render(
        tmp_path,
        replicas=3,
        hpa={"min": 2, "max": 5},
        service_monitor=True,
        env={"LOG_LEVEL": "debug", "QUOTED": "a: b # c"},
        resources={"limits": {"cpu": "500m", "memory": "256Mi"}},
    )
    assert check(objs) == ["Deployment", "Service", "HorizontalPodAutoscaler"]


def test_user_overrides_are_valid_in_the_oldest_and_newest_kubernetes(tmp_path):
    extra = (
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\n"
        "metadata: {name: {{ name }}, namespace: {{ env.namespace }}}\n"
        "spec: {minAvailable: 1, selector: {matchLabels: {{ selector }}}}\n"
    )
    assert "PodDisruptionBudget" in check(render(tmp_path, {"pdb.yaml.j2": extra}))


def test_our_custom_resources_are_valid_by_their_published_crd_schemas(tmp_path):
    if not crd.available():
        pytest.fail("the CRD schemas are missing: run `bash .ci/setup` (it installs them)")
    slos = [
        {"name": "errors", "query": "sum(rate(x_total[5m]))", "max": 0.01},
        {"name": "p95", "query": "histogram_quantile(0.95, sum by (le) (rate(y[5m])))", "max": 0.2},
    ]
    objs = render(tmp_path, service_monitor=True, watch={"slos": slos})
    custom = [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in custom) == ["PrometheusRule", "ServiceMonitor"]
    for obj in custom:
        assert crd.violations(obj) == [], obj["kind"]
    rule = next(o for o in custom if o["kind"] == "PrometheusRule")
    broken = {**rule, "spec": {"groups": [{"name": "g", "rules": "not a list"}]}}
    assert any(v["instancePath"] == "/spec/groups/0/rules" for v in crd.violations(broken))


def test_with_an_hpa_the_deployment_leaves_replicas_to_it(tmp_path):
    """Every forced apply reset the count the autoscaler chose to `replicas:`."""
    objs = render(tmp_path, replicas=3, hpa={"min": 2, "max": 5})
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert "replicas" not in dep["spec"]
    check(objs)
    (dep,) = [o for o in render(tmp_path / "no-hpa", replicas=3) if o["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 3


PDB = (
    "apiVersion: policy/v1\nkind: PodDisruptionBudget\n"
    "metadata: {name: {{ name }}, namespace: {{ env.namespace }}}\n"
    "spec: {minAvailable: 1, selector: {matchLabels: {{ selector }}}}\n"
)


def test_render_checks_a_users_template_against_the_schemas(tmp_path):
    """`render` and `deploy` (both render) refuse a template with a field Kubernetes does
    not have, naming the template, the object and the field; a good one and a custom
    resource (no schema in the package) pass."""
    from lepton_ci.core.errors import ConfigError

    assert "PodDisruptionBudget" in check(render(tmp_path / "ok", {"pdb.yaml.j2": PDB}))
    monitor = (
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\n"
        "metadata: {name: {{ name }}}\nspec: {anything: goes}\n"
    )
    render(tmp_path / "crd", {"monitor.yaml.j2": monitor})
    typo = PDB.replace("minAvailable", "minAvailble")
    with pytest.raises(ConfigError) as e:
        render(tmp_path / "typo", {"pdb.yaml.j2": typo})
    msg = str(e.value)
    assert "k8s/pdb.yaml.j2: PodDisruptionBudget digits-prod is not valid Kubernetes 1.37" in msg
    assert "'minAvailble' was unexpected" in msg and "(at spec)" in msg


def test_without_kubernetes_validate_a_users_template_is_not_checked(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)  # as if not installed
    typo = PDB.replace("minAvailable", "minAvailble")
    objs = render(tmp_path, {"pdb.yaml.j2": typo})
    assert any(o["kind"] == "PodDisruptionBudget" for o in objs)
