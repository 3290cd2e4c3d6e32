"""Canary and shadow rollouts on Kubernetes: the two tracks' manifests (checked against the
Kubernetes and the Gateway API's published schemas), and the kubernetes target driven through
the `Tracks` methods against the kmock stand-in, whose front answers as a Gateway (HTTPRoute
matches, weights, RequestMirror) or a Service (ready pods by label) would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from lepton_ci.core import config
from lepton_ci.core.errors import ConfigError
from lepton_ci.deploy import manifests
from lepton_ci.deploy.contract import RolloutFailed, Tracks
from lepton_ci.deploy.kubernetes import KubernetesTarget
from lepton_ci.deploy.releases import DeployError
from tests.support import crd
from tests.support.kube import Cluster

STABLE = "registry.test/digits@sha256:" + "1" * 64
CANDIDATE = "registry.test/digits@sha256:" + "2" * 64
BROKEN = "registry.test/digits@sha256:" + "b" * 64
GATEWAY = {"strategy": "canary", "gateway": {"name": "edge", "namespace": "infra"}}
REPLICAS = {"strategy": "canary", "traffic": "replicas"}
OLDEST, NEWEST = "1.25", "1.37"  # as tests/test_manifest_schemas.py


def render(
    track: str = "stable",
    image: str = STABLE,
    *,
    ns: str = "default",
    url: str = "https://digits.example.com",
    target: str = "kubernetes",
    **env: Any,
) -> str:
    deploy = config.DeployConfig.model_validate(
        {"target": target, "environments": {"prod": {"namespace": ns, "url": url, **env}}}
    )
    rel = manifests.Release(
        "digits", "v1.0.0" if image == STABLE else "v2.0.0", image, "blake3:" + "0" * 64,
        1 if image == STABLE else 2, "https://ci/run/1", "ci", track=track,
    )  # fmt: skip
    return manifests.render("prod", deploy.environments["prod"], deploy, rel, Path("/nonexistent"))


def kinds(text: str) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in manifests.objects(text)]


# -- the manifests -----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("rollout", [GATEWAY, REPLICAS, {"strategy": "shadow", **GATEWAY}])
def test_all_at_once_and_podman_render_exactly_as_before(rollout: dict[str, Any]) -> None:
    """The rollout settings add objects only to a Kubernetes environment that uses them."""
    plain = render(replicas=3, service_monitor=True)
    assert (
        render(replicas=3, service_monitor=True, rollout={**rollout, "strategy": "all-at-once"})
        == plain
    )
    # podman renders the same pods (its splitter, on `host_port`, does the splitting)
    podman = {"target": "podman", "host_port": 18080}
    assert render(**podman, rollout=rollout) == render(**podman)
    assert render(replicas=3, service_monitor=True, rollout=rollout) != plain


@pytest.mark.unit
@pytest.mark.parametrize("rollout", [GATEWAY, REPLICAS])
def test_the_serving_selector_is_kept_and_the_tracks_never_share_pods(
    rollout: dict[str, Any],
) -> None:
    """A Deployment's selector is immutable: the serving one keeps what an all-at-once release
    has, so the next deploy applies; the candidate's selects none of its pods (nor they its)."""

    def deployment(text: str) -> dict[str, Any]:
        return next(o for o in manifests.objects(text) if o["kind"] == "Deployment")

    before = deployment(render())
    stable, canary = (
        deployment(render(rollout=rollout)),
        deployment(render("canary", rollout=rollout)),
    )
    assert stable["spec"]["selector"] == before["spec"]["selector"]

    def selects(dep: dict[str, Any], pods_of: dict[str, Any]) -> bool:
        labels = pods_of["spec"]["template"]["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in dep["spec"]["selector"]["matchLabels"].items())

    assert selects(stable, stable) and selects(canary, canary)
    assert not selects(stable, canary) and not selects(canary, stable)


@pytest.mark.unit
def test_gateway_tracks_render_a_service_each_and_one_route() -> None:
    stable = render(replicas=2, service_monitor=True, rollout=GATEWAY)
    canary = render("canary", CANDIDATE, replicas=2, service_monitor=True, rollout=GATEWAY)
    assert kinds(stable) == [
        ("Deployment", "digits-prod"), ("Service", "digits-prod"),
        ("ServiceMonitor", "digits-prod"), ("HTTPRoute", "digits-prod"),
    ]  # fmt: skip
    assert kinds(canary) == [
        ("Deployment", "digits-prod-canary"), ("Service", "digits-prod-canary"),
        ("ServiceMonitor", "digits-prod-canary"), ("HTTPRoute", "digits-prod"),
    ]  # fmt: skip
    route = manifests.objects(stable)[-1]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "edge",
            "namespace": "infra",
        }
    ]
    assert route["spec"]["hostnames"] == ["digits.example.com"]
    assert route["spec"]["rules"] == [
        {"backendRefs": [{"name": "digits-prod", "port": 80, "weight": 100}]}
    ]
    # the candidate's copy is the serving release's object, labelled as such
    assert manifests.objects(canary)[-1]["spec"] == route["spec"]
    labels = manifests.objects(canary)[-1]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "digits-prod"
    assert "app.kubernetes.io/version" not in labels
    monitor = manifests.objects(stable)[2]
    # the series' `revision` and `track` labels, which the canary's SLO judge splits by
    meta = "__meta_kubernetes_pod_label_dev_lepton_ci_"
    assert monitor["spec"]["endpoints"][0]["relabelings"] == [
        {"sourceLabels": [meta + "revision"], "targetLabel": "revision"},
        {"sourceLabels": [meta + "track"], "targetLabel": "track"},
    ]
    from lepton_ci.rollout import judge

    assert judge.LABEL == "revision"
    ip = render(url="http://10.0.0.7:8080", rollout=GATEWAY)
    assert "hostnames" not in manifests.objects(ip)[-1]["spec"]  # an IP is no hostname


@pytest.mark.unit
def test_replica_tracks_share_one_service_and_the_candidate_starts_without_pods() -> None:
    stable = render(replicas=4, service_monitor=True, rollout=REPLICAS)
    canary = render("canary", CANDIDATE, replicas=4, service_monitor=True, rollout=REPLICAS)
    assert kinds(stable) == [
        ("Deployment", "digits-prod"), ("Service", "digits-prod"),
        ("ServiceMonitor", "digits-prod"),
    ]  # fmt: skip
    assert kinds(canary) == [("Deployment", "digits-prod-canary")]
    svc = manifests.objects(stable)[1]
    shared = {"app.kubernetes.io/name": "digits", manifests.SERVICE_LABEL: "digits-prod"}
    assert svc["spec"]["selector"] == shared
    for text in (stable, canary):
        pod = manifests.objects(text)[0]["spec"]["template"]["metadata"]["labels"]
        assert shared.items() <= pod.items()
    assert manifests.objects(canary)[0]["spec"]["replicas"] == 0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("env", "said", "fix"),
    [
        ({"rollout": {"strategy": "canary"}}, "needs the Gateway", "traffic: replicas"),
        ({"rollout": {**REPLICAS, "strategy": "shadow"}}, "cannot mirror", "traffic: gateway"),
        ({"rollout": REPLICAS, "hpa": {"max": 4}}, "HorizontalPodAutoscaler", "remove `hpa`"),
    ],
)
def test_a_rollout_the_cluster_cannot_carry_out_is_refused_with_the_fix(
    env: dict[str, Any], said: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as e:
        render(**env)
    assert said in str(e.value) and "deploy.environments.prod" in str(e.value)
    assert fix in (e.value.hint or "")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://digits.example.com", "https://digits.example.com/lepton-canary"),
        ("https://digits.example.com/", "https://digits.example.com/lepton-canary"),
        ("https://h.example.com:8443/api/v1", "https://h.example.com:8443/lepton-canary/api/v1"),
    ],
)
def test_the_candidate_s_address_puts_the_route_s_prefix_first(url: str, address: str) -> None:
    """The Gateway rewrites the prefix away from the front of the path: a url with a path of
    its own keeps it after the prefix, so the checks reach the same path on the candidate."""
    from lepton_ci.deploy.kubernetes import canary_address

    assert canary_address(url) == address


@pytest.mark.unit
@pytest.mark.parametrize(
    ("replicas", "percent", "split"),
    [
        (4, 10, (4, 1, 20)),  # the example: 1 of 5 pods
        (4, 25, (4, 1, 20)),
        (4, 50, (4, 4, 50)),
        (4, 75, (1, 4, 80)),
        (4, 90, (1, 4, 80)),
        (4, 100, (0, 4, 100)),
        (10, 10, (10, 1, 9)),
        (10, 25, (10, 3, 23)),
        (10, 90, (1, 10, 91)),
        (1, 10, (1, 1, 50)),
        (3, 0, (3, 0, 0)),
    ],
)
def test_replica_steps_round_to_what_the_pods_can_give(
    replicas: int, percent: int, split: tuple[int, int, int]
) -> None:
    assert manifests.replica_split(replicas, percent) == split


@pytest.mark.unit
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_both_tracks_are_valid_kubernetes(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for rollout in (GATEWAY, REPLICAS):
        for track, image in (("stable", STABLE), ("canary", CANDIDATE)):
            for obj in manifests.objects(render(track, image, replicas=3, rollout=rollout)):
                if "/" in obj["apiVersion"] and "." in obj["apiVersion"].split("/")[0]:
                    continue  # a CRD: checked against its published schema below
                kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.unit
def test_every_route_and_monitor_is_valid_by_the_published_crd_schemas() -> None:
    """The route as rendered and as every step leaves it (weights, mirror, the candidate's
    header and path rules), against the Gateway API's schema; the ServiceMonitor's
    podTargetLabels against prometheus-operator's."""
    if not crd.available():
        pytest.fail("the CRD schemas are missing: run `bash .ci/setup` (it installs them)")
    objs = manifests.objects(render(service_monitor=True, rollout=GATEWAY))
    objs += manifests.objects(render("canary", CANDIDATE, service_monitor=True, rollout=GATEWAY))
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    for percent, mirror in ((10, False), (50, False), (100, False), (0, True)):
        rules = manifests.route_rules("digits-prod", percent, mirror=mirror)
        objs.append({**route, "spec": {**route["spec"], "rules": rules}})
    custom = [o for o in objs if o["kind"] in ("HTTPRoute", "ServiceMonitor")]
    assert len(custom) == 8
    for obj in custom:
        assert crd.violations(obj) == [], obj
    broken = {**route, "spec": {**route["spec"], "rules": [{"backendRefs": [{"name": 5}]}]}}
    assert any("/backendRefs/0/name" in v["instancePath"] for v in crd.violations(broken))


# -- the target against kmock --------------------------------------------------------------------


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = requests.get(url, headers=headers or {}, timeout=10)
    return r.status_code, r.text, r.headers.get("X-Path", "")


def answers(url: str, n: int = 100) -> dict[str, int]:
    out: dict[str, int] = {}
    for _ in range(n):
        code, body, _ = get(url)
        key = body if code == 200 else f"HTTP {code}"
        out[key] = out.get(key, 0) + 1
    return out


class World:
    """One environment on the emulated cluster: its target, its address, and a probe that
    counts failed requests while the cluster's time passes (every wait of the target)."""

    def __init__(self, cluster: Cluster, ns: str, *, gateway: bool) -> None:
        self.cluster, self.ns, self.name = cluster, ns, "digits-prod"
        self.url = (
            cluster.gateway_url(ns, self.name) if gateway else cluster.service_url(ns, self.name)
        )
        self.failed: list[str] = []
        self.probing = False
        self.fewest_ready = 10**6  # the fewest ready pods the environment had at any tick
        self.target = KubernetesTarget(
            cluster.api, ns, sleep=self._sleep, clock=cluster.now, url=self.url, step_budget=120
        )

    def _sleep(self, seconds: float) -> None:
        self.cluster.advance(seconds)
        with self.cluster._lock:
            ready = sum(
                p.ready
                for (ns, _), r in self.cluster.rollouts.items()
                if ns == self.ns
                for p in r.pods
            )
        self.fewest_ready = min(self.fewest_ready, ready)
        if self.probing:
            code, body, _ = get(self.url + "/predict")
            if code != 200:
                self.failed.append(f"{code} {body}")

    def up(self, text: str) -> None:
        self.target.apply(self.name, text)
        self.target.wait(text, 120, None)

    def deployment(self, name: str) -> Any:
        return client.AppsV1Api(self.cluster.api).read_namespaced_deployment(name, self.ns)

    def route(self) -> dict[str, Any]:
        return dict(
            client.CustomObjectsApi(self.cluster.api).get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.ns, "httproutes", self.name
            )
        )


def test_the_target_meets_the_tracks_contract(cluster: Cluster) -> None:
    target = KubernetesTarget(cluster.api, "default")
    assert isinstance(target, Tracks)  # the deployer runs a canary only on such a target
    assert target.served("digits-prod") is None  # a cluster's split is Prometheus's to count


def test_gateway_canary_steps_weights_and_the_candidate_is_reachable_alone(
    cluster: Cluster,
) -> None:
    w = World(cluster, "gw", gateway=True)
    rollout = GATEWAY
    w.up(render(ns="gw", url=w.url, replicas=2, service_monitor=True, rollout=rollout))
    assert answers(w.url) == {STABLE: 100}
    canary = render(
        "canary", CANDIDATE, ns="gw", url=w.url, replicas=2, service_monitor=True, rollout=rollout
    )
    w.probing = True
    assert w.target.apply_canary(w.name, canary) == []
    w.target.wait(canary, 120, None)
    assert answers(w.url) == {STABLE: 100}, "applied, the candidate receives nothing yet"
    assert w.target.set_weight(w.name, 10) == 10
    assert answers(w.url) == {STABLE: 90, CANDIDATE: 10}
    # the deploy checks reach the candidate alone through the same address
    base = w.target.canary_url(w.name)
    assert base == w.url.replace("/-gateway/", "/lepton-canary/-gateway/")
    assert get(base + "/readyz") == (200, CANDIDATE, "/readyz")
    assert get(w.url + "/readyz", {"x-lepton-track": "canary"})[1] == CANDIDATE
    assert w.target.set_weight(w.name, 50) == 50
    assert answers(w.url) == {STABLE: 50, CANDIDATE: 50}
    # the step's rules are the rollout manager's; parentRefs stay the release's
    route = w.route()
    owners = {m["manager"]: m["fieldsV1"] for m in route["metadata"]["managedFields"]}
    assert "f:rules" in owners["lepton-ci-rollout"]["f:spec"]
    assert "f:parentRefs" in owners["lepton-ci"]["f:spec"]
    assert route["spec"]["parentRefs"][0]["name"] == "edge"
    w.target.remove_canary(w.name)
    assert answers(w.url) == {STABLE: 100}
    assert w.route()["spec"]["rules"] == manifests.route_rules(w.name)
    left = {(k, n) for k, n in w.target._release_objects(manifests.canary_name(w.name))}
    assert left == set()
    w.target.remove_canary(w.name)  # again (a repair): nothing to do, no error
    assert w.failed == []


def test_promotion_keeps_the_split_until_the_candidate_goes_then_the_release_owns_the_route(
    cluster: Cluster,
) -> None:
    """At 100 % the engine applies the candidate as the serving release: while the candidate
    is there that apply leaves the route's rules alone (the serving Deployment is still rolling
    out: requests stay on the candidate); remove_canary then sends everything to the serving
    Service, and the next apply of the release owns the rules again."""
    w = World(cluster, "promote", gateway=True)
    w.up(render(ns="promote", url=w.url, rollout=GATEWAY))
    text = render("canary", CANDIDATE, ns="promote", url=w.url, rollout=GATEWAY)
    w.target.apply_canary(w.name, text)
    w.target.wait(text, 120, None)
    w.target.set_weight(w.name, 100)
    promoted = render(image=CANDIDATE, ns="promote", url=w.url, rollout=GATEWAY)
    w.target.apply(w.name, promoted)
    assert w.route()["spec"]["rules"] == manifests.route_rules(w.name, 100)
    assert answers(w.url, 10) == {CANDIDATE: 10}  # no old answer while the release rolls
    w.target.wait(promoted, 120, None)
    w.target.remove_canary(w.name)
    assert w.route()["spec"]["rules"] == manifests.route_rules(w.name)
    assert answers(w.url, 20) == {CANDIDATE: 20}
    w.up(promoted)
    owners = {m["manager"]: m["fieldsV1"] for m in w.route()["metadata"]["managedFields"]}
    assert "f:rules" in owners["lepton-ci"]["f:spec"]


def test_shadow_mirrors_every_request_and_answers_from_the_serving_track(cluster: Cluster) -> None:
    w = World(cluster, "shadow", gateway=True)
    rollout = {**GATEWAY, "strategy": "shadow"}
    w.up(render(ns="shadow", url=w.url, rollout=rollout))
    w.target.apply_canary(
        w.name, text := render("canary", CANDIDATE, ns="shadow", url=w.url, rollout=rollout)
    )
    w.target.wait(text, 120, None)
    assert w.target.set_weight(w.name, 0, mirror=True) == 0
    (rule,) = [
        r
        for r in w.route()["spec"]["rules"]
        if r.get("filters", [{}])[0].get("type") == "RequestMirror"
    ]
    assert rule["filters"][0]["requestMirror"]["backendRef"]["name"] == "digits-prod-canary"
    assert answers(w.url, 40) == {STABLE: 40}
    assert cluster.mirrored[("shadow", "digits-prod-canary")] == 40
    w.target.remove_canary(w.name)
    assert answers(w.url, 10) == {STABLE: 10}
    assert cluster.mirrored[("shadow", "digits-prod-canary")] == 40


def test_a_release_from_before_the_gateway_setting_gets_its_route_from_the_candidate(
    cluster: Cluster,
) -> None:
    w = World(cluster, "old", gateway=True)
    w.up(render(ns="old", url=w.url))  # all at once: no route yet
    w.target.apply_canary(w.name, render("canary", CANDIDATE, ns="old", url=w.url, rollout=GATEWAY))
    assert w.route()["spec"]["rules"] == manifests.route_rules(w.name)
    assert w.target.set_weight(w.name, 10) == 10


def test_a_split_left_by_a_killed_rollout_gives_a_new_candidate_nothing_before_a_step(
    cluster: Cluster,
) -> None:
    w = World(cluster, "left", gateway=True)
    w.up(render(ns="left", url=w.url, rollout=GATEWAY))
    first = render("canary", BROKEN, ns="left", url=w.url, rollout=GATEWAY)
    w.target.apply_canary(w.name, first)
    w.target.set_weight(w.name, 50)  # ... and the job is killed here
    text = render("canary", CANDIDATE, ns="left", url=w.url, rollout=GATEWAY)
    w.target.apply_canary(w.name, text)
    w.target.wait(text, 120, None)
    assert answers(w.url, 20) == {STABLE: 20}


def test_a_cluster_without_the_gateway_api_is_a_clear_error(cluster: Cluster) -> None:
    bare = Cluster(gateway_api=False)
    try:
        w = World(bare, "bare", gateway=True)
        w.up(render(ns="bare", url=w.url))
        with pytest.raises(DeployError, match="no Gateway API") as e:
            w.target.apply_canary(
                w.name, render("canary", CANDIDATE, ns="bare", url=w.url, rollout=GATEWAY)
            )
        assert "traffic: replicas" in (e.value.hint or "")
        w.target.remove(w.name)  # listing a kind the cluster lacks is no error either
    finally:
        bare.close()


def test_replica_steps_scale_the_tracks_behind_one_service_without_a_failed_request(
    cluster: Cluster,
) -> None:
    """The serving release predates `traffic: replicas` (its pods lack the shared label):
    apply_canary relabels them with a rolling restart and then moves the Service's selector,
    and no request fails meanwhile; each step's share is the pods' ratio, as returned."""
    w = World(cluster, "rep", gateway=False)
    w.up(render(ns="rep", url=w.url, replicas=4))
    w.probing = True
    canary = render("canary", CANDIDATE, ns="rep", url=w.url, replicas=4, rollout=REPLICAS)
    w.target.apply_canary(w.name, canary)
    assert w.failed == [] and len(w.cluster.rollouts[("rep", w.name)].templates) == 2
    svc = client.CoreV1Api(cluster.api).read_namespaced_service(w.name, "rep")
    assert svc.spec.selector == {
        "app.kubernetes.io/name": "digits",
        manifests.SERVICE_LABEL: w.name,
    }
    assert answers(w.url, 20) == {STABLE: 20}
    assert w.target.canary_url(w.name) is None  # one Service cannot single the candidate out
    w.fewest_ready = 10**6
    assert w.target.set_weight(w.name, 10) == 20  # 1 of 5 pods
    assert answers(w.url) == {STABLE: 80, CANDIDATE: 20}
    assert w.target.set_weight(w.name, 75) == 80  # 4 of 5
    assert (
        w.deployment(w.name).spec.replicas,
        w.deployment("digits-prod-canary").spec.replicas,
    ) == (1, 4)
    assert answers(w.url) == {STABLE: 20, CANDIDATE: 80}
    assert w.fewest_ready >= 4, "a step scales up before down: capacity never drops"
    with pytest.raises(DeployError, match="cannot mirror"):
        w.target.set_weight(w.name, 0, mirror=True)
    w.target.remove_canary(w.name)  # an abort: the serving count comes back first
    assert w.deployment(w.name).spec.replicas == 4
    assert answers(w.url) == {STABLE: 100}
    assert w.failed == []
    # the serving release's next render applies over all this (its selector never changed)
    w.up(render(image=CANDIDATE, ns="rep", url=w.url, replicas=4, rollout=REPLICAS))
    assert answers(w.url, 20) == {CANDIDATE: 20}


def test_the_two_deployments_roll_out_independently(cluster: Cluster) -> None:
    """A candidate that never becomes ready fails its own wait; the serving pods go on."""
    w = World(cluster, "ind", gateway=True)
    w.up(render(ns="ind", url=w.url, replicas=2, rollout=GATEWAY))
    cluster.broken.add(BROKEN)
    text = render("canary", BROKEN, ns="ind", url=w.url, replicas=2, rollout=GATEWAY)
    w.target.apply_canary(w.name, text)
    with pytest.raises(RolloutFailed, match="digits-prod-canary"):
        w.target.wait(text, 30, None)
    assert w.deployment(w.name).status.available_replicas == 2
    assert answers(w.url, 10) == {STABLE: 10}
    w.target.remove_canary(w.name)


def test_a_changed_selector_is_refused_as_the_api_server_refuses_it(cluster: Cluster) -> None:
    w = World(cluster, "sel", gateway=False)
    text = render(ns="sel", url=w.url)
    w.up(text)
    objs = manifests.objects(text)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "other"
    dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    moved = "---\n".join(yaml.safe_dump(o) for o in objs)
    with pytest.raises(RolloutFailed, match="field is immutable"):
        w.target.apply(w.name, moved)


def test_apply_canary_refuses_the_serving_release_s_text(cluster: Cluster) -> None:
    w = World(cluster, "wrong", gateway=True)
    with pytest.raises(DeployError, match="not the candidate's render"):
        w.target.apply_canary(w.name, render(ns="wrong", url=w.url, rollout=GATEWAY))


def test_a_replica_canary_without_a_serving_release_is_a_clear_error(cluster: Cluster) -> None:
    w = World(cluster, "empty", gateway=False)
    text = render("canary", CANDIDATE, ns="empty", url=w.url, rollout=REPLICAS)
    with pytest.raises(DeployError, match="no serving Deployment digits-prod") as e:
        w.target.apply_canary(w.name, text)
    assert "all at once" in (e.value.hint or "")
    assert w.target._release_objects("digits-prod-canary") == []  # nothing half-done


@pytest.mark.parametrize("rollout", [GATEWAY, REPLICAS])
def test_removing_a_candidate_whose_serving_release_is_gone_still_cleans_up(
    cluster: Cluster, rollout: dict[str, Any]
) -> None:
    """A repair after the environment was removed: the candidate's objects go, no error."""
    w = World(cluster, "gone", gateway=rollout is GATEWAY)
    w.up(render(ns="gone", url=w.url, replicas=2, rollout=rollout))
    w.target.apply_canary(
        w.name, render("canary", CANDIDATE, ns="gone", url=w.url, rollout=rollout)
    )
    w.target.set_weight(w.name, 10)
    w.target.remove(w.name)
    assert w.target._release_objects(w.name) == []  # the route went with the release
    w.target.remove_canary(w.name)
    assert w.target._release_objects("digits-prod-canary") == []


# -- end to end: the deployer's canary loop (lepton_ci.rollout.canary) on the cluster -----------


def deployer(cluster: Cluster, ns: str, rollout: dict[str, Any], **env: Any) -> Any:
    from lepton_ci.deploy.deployer import Deployer
    from lepton_ci.deploy.kubernetes import ConfigMapStore

    name = "digits-prod"
    gateway = rollout.get("traffic", "gateway") == "gateway"
    url = cluster.gateway_url(ns, name) if gateway else cluster.service_url(ns, name)
    deploy = config.DeployConfig.model_validate(
        {
            "target": "kubernetes",
            "environments": {
                "prod": {
                    "namespace": ns,
                    "url": url,
                    "rollout_timeout": 60,
                    "checks": {"count": 2, "interval": 0, "http": [{"path": "/healthz"}]},
                    "rollout": {"steps": [10, 50, 100], "interval": 5, **rollout},
                    **env,
                }
            },
        }
    )
    target = KubernetesTarget(
        cluster.api, ns, sleep=cluster.advance, clock=cluster.now, url=url, step_budget=60
    )
    store = ConfigMapStore(
        cluster.api, ns, name, sleep=cluster.advance, clock=cluster.now, now=cluster.utcnow
    )
    return Deployer(
        "digits", "prod", deploy, Path("/nonexistent"), target=target, store=store,
        log=lambda m: None, sleep=cluster.advance, clock=cluster.now,
    ), url  # fmt: skip


def release(image: str) -> manifests.Release:
    version = "v1.0.0" if image == STABLE else "v2.0.0"
    return manifests.Release("digits", version, image, "blake3:" + "0" * 64, 0, "run", "ci")


def test_a_canary_deploy_through_the_gateway_steps_checks_the_candidate_and_promotes(
    cluster: Cluster,
) -> None:
    d, url = deployer(cluster, "e2e", GATEWAY, replicas=2)
    d.deploy(release(STABLE))  # the first release: nothing to compare with, all at once
    out = d.deploy(release(CANDIDATE))
    rev = out.revision
    assert (rev.status, rev.strategy) == ("deployed", "canary")
    assert [(s.weight, s.effective, s.verdict) for s in rev.steps] == [
        (10, 10, "passed"), (50, 50, "passed"), (100, 100, "passed"),
    ]  # fmt: skip
    assert all(s.checks_ok for s in rev.steps)  # run against the candidate alone
    assert answers(url, 20) == {CANDIDATE: 20}
    w = World(cluster, "e2e", gateway=True)
    assert w.route()["spec"]["rules"] == manifests.route_rules("digits-prod")
    assert w.target._release_objects("digits-prod-canary") == []
    assert w.deployment("digits-prod").spec.template.spec.containers[0].image == CANDIDATE


def test_a_candidate_answering_500_is_aborted_at_the_first_step(cluster: Cluster) -> None:
    from lepton_ci.deploy.deployer import DeployFailed

    d, url = deployer(cluster, "abort", GATEWAY, replicas=2)
    d.deploy(release(STABLE))
    cluster.sick.add(CANDIDATE)
    with pytest.raises(DeployFailed, match="canary aborted at step 10%"):
        d.deploy(release(CANDIDATE))
    (rev,) = [r for r in d.store.list() if r.version == "v2.0.0"]
    assert rev.status == "failed" and len(rev.steps) == 1
    assert "deploy checks against the canary failed" in rev.steps[0].reason
    assert answers(url, 20) == {STABLE: 20}
    assert World(cluster, "abort", gateway=True).target._release_objects("digits-prod-canary") == []


def test_a_canary_deploy_by_replicas_records_the_shares_the_pods_gave(cluster: Cluster) -> None:
    d, url = deployer(cluster, "e2erep", REPLICAS, replicas=4)
    d.deploy(release(STABLE))
    rev = d.deploy(release(CANDIDATE)).revision
    assert rev.status == "deployed"
    assert [(s.weight, s.effective) for s in rev.steps] == [(10, 20), (50, 50), (100, 100)]
    assert {s.checks_ok for s in rev.steps} == {None}  # no address of the candidate alone
    assert answers(url, 20) == {CANDIDATE: 20}
    w = World(cluster, "e2erep", gateway=False)
    assert w.deployment("digits-prod").spec.replicas == 4


def write_config(root: Path, environments: dict[str, Any]) -> None:
    deploy = {"target": "kubernetes", "environments": environments}
    model = {"evaluate": "true", "metrics": ["m.json"], "deploy": deploy}
    (root / "lepton.yaml").write_text(yaml.safe_dump({"models": {"digits": model}}))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("envs", "clash"),
    [
        # prod's candidate is named like the environment prod-canary
        ({"prod": GATEWAY, "prod-canary": {}}, "digits-prod-canary"),
        # names cut at 63 characters: two environments, one name
        ({"p" * 60 + "-a": {}, "p" * 60 + "-b": {}}, "digits-" + "p" * 56),
    ],
)
def test_environments_whose_objects_share_a_name_are_refused_before_anything_is_applied(
    tmp_path: Path, envs: dict[str, Any], clash: str
) -> None:
    from lepton_ci.core.context import Context
    from lepton_ci.deploy.operations import deployer

    environments = {
        name: {"url": "https://digits.example.com", **({"rollout": r} if r else {})}
        for name, r in envs.items()
    }
    write_config(tmp_path, environments)
    ctx = Context.load(cwd=tmp_path)
    first = next(iter(envs))
    with pytest.raises(ConfigError) as e:
        deployer(ctx, "digits", first, api_client=object())
    assert f"`{clash}`" in e.value.message and "namespace default" in e.value.message
    assert "own `namespace`" in (e.value.hint or "")
    # in namespaces of their own, they do not meet
    environments[first]["namespace"] = "other"
    write_config(tmp_path, environments)
    deployer(Context.load(cwd=tmp_path), "digits", first, api_client=object())


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "hostnames"),
    [
        ("https://Digits.Example.com:8443/api", ["digits.example.com"]),
        ("https://digits.example.com./", ["digits.example.com"]),  # a fully qualified name
        ("http://[::1]:8080", None),
        ("http://localhost:8080", None),
    ],
)
def test_the_route_s_hostname_is_the_url_s_host(url: str, hostnames: list[str] | None) -> None:
    route = manifests.objects(render(url=url, rollout=GATEWAY))[-1]
    assert route["kind"] == "HTTPRoute" and route["spec"].get("hostnames") == hostnames


@pytest.mark.unit
@pytest.mark.parametrize("host", ["my_model.example.com", "x" * 64 + ".example.com"])
def test_a_host_no_route_can_match_is_refused_not_dropped(host: str) -> None:
    # Without `hostnames` the route would take every host's requests on its Gateway.
    with pytest.raises(ConfigError) as e:
        render(url=f"https://{host}", rollout=GATEWAY)
    assert "deploy.environments.prod.url" in e.value.message and host in e.value.message
