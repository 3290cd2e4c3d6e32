"""The `kubernetes` deploy target, through the official client handed in as an ApiClient.

Server-side apply with lepton-ci's field manager (objects are created when absent), conflicts
retried, objects of the release that a new render no longer has pruned. Rollout: done as
`kubectl rollout status` decides (see `rollout_pending`); ProgressDeadlineExceeded is a
failure. Revisions are ConfigMaps (one per revision, like Helm's release Secrets); the lock is
a Lease, renewed while a deploy runs and taken over once expired (a killed job's lock).

Rollouts (`Tracks`): the candidate runs as a second Deployment (`-canary`) beside the serving
one; requests are split by Gateway API HTTPRoute weights (`traffic: gateway`) or by the two
Deployments' replica counts behind one Service (`traffic: replicas`). The step's writes go
under their own field manager (`<manager>-rollout`); the serving release's apply (with
`force`) takes the replica counts back, and the route's rules once the candidate is gone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from lepton_ci.deploy import manifests
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.deploy.releases import DeployError, Revision

SSA = "application/apply-patch+yaml"
INSTANCE = "app.kubernetes.io/instance"
# kind -> (API class, method suffix); the typed APIs keep objects in their native shape.
KINDS = {
    "Deployment": ("AppsV1Api", "deployment"),
    "Service": ("CoreV1Api", "service"),
    "ConfigMap": ("CoreV1Api", "config_map"),
    "Secret": ("CoreV1Api", "secret"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler"),
}
CUSTOM = {  # prometheus-operator's kinds, and the Gateway API's route (rollouts)
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules"),  # from `watch:`
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),  # `traffic: gateway`
}
ROUTE = CUSTOM["HTTPRoute"]
BASE_REPLICAS = "dev.lepton-ci/stable-replicas"  # `traffic: replicas`: the count to restore


def _api(api_client: Any, name: str) -> Any:
    from kubernetes import client

    return getattr(client, name)(api_client)


REQUEST_TIMEOUT = 30.0


def call(
    fn: Callable[..., Any],
    *args: Any,
    sleep: Callable[[float], None],
    retries: int = 3,
    **kw: Any,
) -> Any:
    """One API call with a timeout, retried a bounded number of times when the object changed
    under us (409 "the object has been modified"), on 5xx and on a broken connection. An
    unreachable API server becomes a DeployError naming it."""
    import urllib3
    from kubernetes.client import ApiException

    kw.setdefault("_request_timeout", REQUEST_TIMEOUT)
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kw)
        except ApiException as e:
            retry = e.status in (500, 502, 503, 504) or (
                e.status == 409 and "has been modified" in str(e.body)
            )
            if retry and attempt < retries:
                sleep(0.5 * 2**attempt)
                continue
            raise
        except urllib3.exceptions.HTTPError as e:
            if attempt < retries:
                sleep(0.5 * 2**attempt)
                continue
            host = getattr(getattr(fn, "__self__", None), "api_client", None)
            where = host.configuration.host if host is not None else "the API server"
            raise DeployError(
                f"Kubernetes API server {where} unreachable after {retries + 1} tries "
                f"({type(e).__name__})",
                hint="check the cluster is up and KUBECONFIG's server address and credentials",
            ) from None
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def status_message(e: Any) -> str:
    """What the API server said in its Status answer (message and conflicting fields)."""
    import json

    try:
        body = json.loads(e.body or "{}")
    except (TypeError, ValueError):
        body = {}
    msg = body.get("message") if isinstance(body, dict) else None
    return f"{e.status} {e.reason}" + (f": {msg}" if msg else "")


def _labels(obj: Any) -> dict[str, str]:
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else obj.metadata
    labels = meta.get("labels") if isinstance(meta, dict) else meta.labels
    return dict(labels or {})


class KubernetesTarget:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        field_manager: str = "lepton-ci",
        sleep: Callable[[float], None] | None = None,
        retries: int = 3,
        clock: Callable[[], float] | None = None,
        url: str | None = None,
        step_budget: float = 600.0,
    ) -> None:
        self.api = api_client
        self.namespace = namespace
        self.field_manager = field_manager
        self.url = url.rstrip("/") if url else None  # the environment's: canary_url builds on it
        self.step_budget = step_budget  # seconds a `traffic: replicas` step may take to scale
        # Waiting and the rollout budget are on these; a test hands in a cluster's own clock.
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.retries = retries

    # -- one object ----------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return call(fn, *args, sleep=self.sleep, retries=self.retries, **kw)

    def _apply_one(self, obj: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or self.namespace
        if kind in CUSTOM:
            api = _api(self.api, "CustomObjectsApi")
            where = (*CUSTOM[kind][:2], ns, CUSTOM[kind][2])  # group, version, ns, plural
            self._server_side_apply(
                lambda **kw: api.patch_namespaced_custom_object(
                    *where,
                    name,
                    obj,
                    field_manager=self.field_manager,
                    force=True,
                    _content_type=SSA,
                    **kw,
                ),
                lambda **kw: api.create_namespaced_custom_object(*where, obj, **kw),
            )
            return
        if kind not in KINDS:
            raise DeployError(
                f"the kubernetes target cannot apply kind {kind} ({name})",
                hint="remove it from the templates, or apply it yourself",
            )
        cls, suffix = KINDS[kind]
        api = _api(self.api, cls)
        if kind == "Deployment" and "replicas" not in (obj.get("spec") or {}):
            self._hand_over_replicas(api, name, ns)
        self._server_side_apply(
            lambda **kw: getattr(api, f"patch_namespaced_{suffix}")(
                name, ns, obj, field_manager=self.field_manager, force=True, _content_type=SSA, **kw
            ),
            lambda **kw: getattr(api, f"create_namespaced_{suffix}")(ns, obj, **kw),
        )

    def _hand_over_replicas(self, apps: Any, name: str, ns: str) -> None:
        """The manifest leaves `replicas` to an HPA. Server-side apply removes a field its
        manager stops sending unless another manager owns it too, and the API server
        defaults a missing count to 1: the first such apply would drop the pods that serve
        to one until the HPA scaled them up again. So, as Kubernetes documents for this
        handover, a manager of its own first co-owns the current count; the HPA takes it
        over from there."""
        from kubernetes.client import ApiException

        try:
            live = self._call(apps.read_namespaced_deployment, name, ns)
        except ApiException as e:
            if e.status == 404:
                return  # a new Deployment: nothing serves yet
            raise
        ours = any(
            m.manager == self.field_manager
            and m.operation == "Apply"
            and "f:replicas" in ((m.fields_v1 or {}).get("f:spec") or {})
            for m in live.metadata.managed_fields or []
        )
        if not ours:
            return
        keep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": live.spec.replicas},
        }
        self._call(
            apps.patch_namespaced_deployment,
            name,
            ns,
            keep,
            field_manager=f"{self.field_manager}-handover",
            _content_type=SSA,
        )

    def _server_side_apply(self, patch: Callable[..., Any], create: Callable[..., Any]) -> None:
        """Apply server-side; create when the object is absent (a server that does not create
        on apply answers 404)."""
        from kubernetes.client import ApiException

        try:
            self._call(patch)
        except ApiException as e:
            if e.status != 404:
                raise
            self._call(create)

    def _release_objects(self, name: str) -> list[tuple[str, str]]:
        from kubernetes.client import ApiException

        found = []
        for kind, (cls, suffix) in KINDS.items():
            items = self._call(
                getattr(_api(self.api, cls), f"list_namespaced_{suffix}"),
                self.namespace,
                label_selector=f"{INSTANCE}={name}",
            ).items
            for item in items:
                labels = _labels(item)  # filtered here too: not every server honours selectors
                if (
                    labels.get(INSTANCE) == name
                    and labels.get("app.kubernetes.io/managed-by") == "lepton-ci"
                ):
                    found.append((kind, item.metadata.name))
        custom = _api(self.api, "CustomObjectsApi")
        for kind, (group, version, plural) in CUSTOM.items():
            try:
                listed = self._call(
                    custom.list_namespaced_custom_object,
                    group,
                    version,
                    self.namespace,
                    plural,
                    label_selector=f"{INSTANCE}={name}",
                )
            except ApiException as e:
                if e.status == 404:
                    continue  # the CRD is not installed: nothing of that kind to find
                raise
            for item in listed.get("items") or []:
                labels = _labels(item)
                if (
                    labels.get(INSTANCE) == name
                    and labels.get("app.kubernetes.io/managed-by") == "lepton-ci"
                ):
                    found.append((kind, item["metadata"]["name"]))
        return found

    def _delete(self, kind: str, obj_name: str) -> None:
        from kubernetes.client import ApiException

        try:
            if kind in CUSTOM:
                group, version, plural = CUSTOM[kind]
                self._call(
                    _api(self.api, "CustomObjectsApi").delete_namespaced_custom_object,
                    group,
                    version,
                    self.namespace,
                    plural,
                    obj_name,
                )
                return
            cls, suffix = KINDS[kind]
            self._call(
                getattr(_api(self.api, cls), f"delete_namespaced_{suffix}"),
                obj_name,
                self.namespace,
            )
        except ApiException as e:
            if e.status != 404:
                raise

    # -- the target interface ------------------------------------------------------------

    def apply(self, name: str, text: str) -> list[str]:
        from kubernetes.client import ApiException

        objs = manifests.objects(text)
        try:
            splitting = any(o["kind"] == "HTTPRoute" for o in objs) and self._has_canary(name)
            for obj in objs:
                if splitting and obj["kind"] == "HTTPRoute":
                    # A rollout's promotion: the candidate serves the step's share until the
                    # serving Deployment has rolled out and passed; remove_canary then sends
                    # everything to it. So the route's rules stay the rollout's meanwhile.
                    obj = {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != "rules"}}
                self._apply_one(obj)
            wanted = {(o["kind"], o["metadata"]["name"]) for o in objs}
            for kind, obj_name in self._release_objects(name):
                if (kind, obj_name) not in wanted:
                    self._delete(kind, obj_name)  # pruned: the new render no longer has it
        except ApiException as e:
            raise RolloutFailed(f"apply failed: {status_message(e)}") from None
        return []

    def _has_canary(self, name: str) -> bool:
        from kubernetes.client import ApiException

        apps = _api(self.api, "AppsV1Api")
        try:
            self._call(apps.read_namespaced_deployment, manifests.canary_name(name), self.namespace)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def wait(self, text: str, budget: float, ready_url: str | None) -> float:
        t0 = self.clock()
        apps = _api(self.api, "AppsV1Api")
        names = [
            o["metadata"]["name"] for o in manifests.objects(text) if o["kind"] == "Deployment"
        ]
        while True:
            pending = []
            for n in names:
                waiting = rollout_pending(
                    n, self._call(apps.read_namespaced_deployment, n, self.namespace)
                )
                if waiting:
                    pending.append(waiting)
            if not pending:
                return self.clock() - t0
            if self.clock() - t0 > budget:
                raise RolloutFailed(f"not rolled out after {budget:.0f}s: {'; '.join(pending)}")
            self.sleep(0.2)

    def remove(self, name: str) -> None:
        for kind, obj_name in self._release_objects(name):
            self._delete(kind, obj_name)

    def scale_to_zero(self, name: str) -> None:
        apps = _api(self.api, "AppsV1Api")
        for kind, obj_name in self._release_objects(name):
            if kind == "Deployment":
                self._call(
                    apps.patch_namespaced_deployment,
                    obj_name,
                    self.namespace,
                    {"spec": {"replicas": 0}},
                )

    # -- rollouts: the candidate's track beside the serving one (contract.Tracks) -------------

    @property
    def _rollout_manager(self) -> str:
        return f"{self.field_manager}-rollout"

    def apply_canary(self, name: str, text: str) -> list[str]:
        """Apply the candidate's objects (rendered with track `canary`) beside those of the
        serving release `name`. It receives no requests yet: with `traffic: gateway` the route
        still sends everything to the serving Service (the route in the text is created only
        where none exists: the serving revision predates the rollout setting); with `traffic:
        replicas` its Deployment has no pods until a step scales it, and the serving pods and
        Service are first moved onto the label both tracks share."""
        from kubernetes.client import ApiException

        canary = manifests.canary_name(name)
        objs = manifests.objects(text)
        ours = [o for o in objs if o["kind"] != "HTTPRoute"]
        strays = [
            o["metadata"]["name"] for o in ours if not o["metadata"]["name"].startswith(canary)
        ]
        if strays or not any(o["kind"] == "Deployment" for o in ours):
            raise DeployError(
                f"apply_canary({name}): the text is not the candidate's render (objects "
                f"{', '.join(strays) or 'without a Deployment'}; expected {canary})",
                hint="render it with manifests.Release(track='canary')",
            )
        try:
            for obj in objs:
                if obj["kind"] == "HTTPRoute":
                    self._create_route(obj)
                    # a rollout killed mid-step may have left a split: none until a step
                    self._set_rules(name, manifests.route_rules(name))
            dep = next(o for o in ours if o["kind"] == "Deployment")
            labels = dep["spec"]["template"]["metadata"].get("labels") or {}
            if manifests.SERVICE_LABEL in labels:
                self._share_service(name, labels["app.kubernetes.io/name"])
            for obj in ours:
                self._apply_one(obj)
            wanted = {(o["kind"], o["metadata"]["name"]) for o in ours}
            for kind, obj_name in self._release_objects(canary):
                if (kind, obj_name) not in wanted:
                    self._delete(kind, obj_name)  # a candidate left from an earlier rollout
        except ApiException as e:
            raise RolloutFailed(f"applying the candidate failed: {status_message(e)}") from None
        return []

    def _create_route(self, obj: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        api = _api(self.api, "CustomObjectsApi")
        group, version, plural = ROUTE
        try:
            self._call(
                api.create_namespaced_custom_object, group, version, self.namespace, plural, obj
            )
        except ApiException as e:
            if e.status == 409:
                return  # the serving release has its route: a step changes only its rules
            if e.status == 404:
                raise DeployError(
                    "this cluster has no Gateway API (no HTTPRoute kind): `traffic: gateway` "
                    "cannot split requests here",
                    hint="install the Gateway API CRDs and a Gateway, or set "
                    "`rollout.traffic: replicas`",
                ) from None
            raise

    def _share_service(self, name: str, model_label: str) -> None:
        """`traffic: replicas`: the serving pods carry the label both tracks share, and the
        Service selects on it (instead of the serving Deployment's own instance label). A
        release deployed before the setting lacks both: its pods are relabelled (a rolling
        restart, the old Service selector still matches every pod meanwhile), then the
        Service's selector changes. The Deployment's own selector never changes (immutable)."""
        from kubernetes.client import ApiException

        apps = _api(self.api, "AppsV1Api")
        core = _api(self.api, "CoreV1Api")
        try:
            live = self._call(apps.read_namespaced_deployment, name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            raise DeployError(
                f"no serving Deployment {name} in namespace {self.namespace}: a candidate's "
                "share is taken from a serving release",
                hint="deploy the environment's first release all at once",
            ) from None
        if (live.spec.template.metadata.labels or {}).get(manifests.SERVICE_LABEL) != name:
            body = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"template": {"metadata": {"labels": {manifests.SERVICE_LABEL: name}}}},
            }
            self._call(
                apps.patch_namespaced_deployment,
                name,
                self.namespace,
                body,
                field_manager=self._rollout_manager,
                _content_type=SSA,
            )
            self._settle([name])
        svc = self._call(core.read_namespaced_service, name, self.namespace)
        shared = {"app.kubernetes.io/name": model_label, manifests.SERVICE_LABEL: name}
        if (svc.spec.selector or {}) != shared:
            gone = {k: None for k in svc.spec.selector or {} if k not in shared}
            self._call(
                core.patch_namespaced_service,
                name,
                self.namespace,
                {"spec": {"selector": {**gone, **shared}}},
                field_manager=self._rollout_manager,
                _content_type="application/merge-patch+json",
            )

    def _settle(self, names: list[str]) -> None:
        """Wait until these Deployments are rolled out, within the step budget."""
        apps = _api(self.api, "AppsV1Api")
        t0 = self.clock()
        while True:
            pending = [
                w
                for n in names
                if (
                    w := rollout_pending(
                        n, self._call(apps.read_namespaced_deployment, n, self.namespace)
                    )
                )
            ]
            if not pending:
                return
            if self.clock() - t0 > self.step_budget:
                raise RolloutFailed(
                    f"not scaled after {self.step_budget:.0f}s: {'; '.join(pending)}"
                )
            self.sleep(0.5)

    def _traffic(self, name: str) -> str:
        """How the candidate of `name` takes requests, from what apply_canary applied."""
        from kubernetes.client import ApiException

        apps = _api(self.api, "AppsV1Api")
        canary = manifests.canary_name(name)
        try:
            dep = self._call(apps.read_namespaced_deployment, canary, self.namespace)
        except ApiException as e:
            if e.status == 404:
                raise DeployError(
                    f"no candidate {canary} in namespace {self.namespace}",
                    hint="apply_canary first",
                ) from None
            raise
        labels = dep.spec.template.metadata.labels or {}
        return "replicas" if manifests.SERVICE_LABEL in labels else "gateway"

    def set_weight(self, name: str, percent: int, *, mirror: bool = False) -> int:
        """Give the candidate `percent` of the requests (or, with `mirror`, a copy of each).
        `traffic: gateway`: the HTTPRoute's weights, exact. `traffic: replicas`: the two
        Deployments' replica counts (manifests.replica_split says the rule), scaled up before
        down and waited for, so the share returned is the one in effect."""
        from kubernetes.client import ApiException

        if not 0 <= percent <= 100:
            raise ValueError(f"a weight is a percentage (0-100), not {percent}")
        try:
            if self._traffic(name) == "gateway":
                self._set_rules(
                    name, manifests.route_rules(name, 0 if mirror else percent, mirror=mirror)
                )
                return 0 if mirror else percent
            if mirror:
                raise DeployError(
                    "a Service cannot mirror requests: a shadow rollout needs `traffic: gateway`",
                    hint="set `rollout.traffic: gateway` and `rollout.gateway`",
                )
            return self._scale_split(name, percent)
        except ApiException as e:
            raise RolloutFailed(
                f"setting the candidate's share failed: {status_message(e)}"
            ) from None

    def _set_rules(
        self, name: str, rules: list[dict[str, Any]], *, missing_ok: bool = False
    ) -> None:
        from kubernetes.client import ApiException

        api = _api(self.api, "CustomObjectsApi")
        group, version, plural = ROUTE
        try:  # an apply creates what is absent: never a route without its Gateway
            self._call(
                api.get_namespaced_custom_object, group, version, self.namespace, plural, name
            )
        except ApiException as e:
            if e.status == 404 and missing_ok:
                return  # no route (the release was removed): nothing to send elsewhere
            if e.status == 404:
                raise DeployError(
                    f"no HTTPRoute {name} in namespace {self.namespace}",
                    hint="apply_canary creates it from the candidate's render",
                ) from None
            raise
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"rules": rules},
        }
        self._call(
            api.patch_namespaced_custom_object,
            group,
            version,
            self.namespace,
            plural,
            name,
            body,
            field_manager=self._rollout_manager,
            force=True,
            _content_type=SSA,
        )

    def _base_replicas(self, name: str) -> int:
        """The serving Deployment's count before the rollout, kept as an annotation on the
        candidate so a later process (a repair) can restore it."""
        apps = _api(self.api, "AppsV1Api")
        canary = manifests.canary_name(name)
        dep = self._call(apps.read_namespaced_deployment, canary, self.namespace)
        kept = (dep.metadata.annotations or {}).get(BASE_REPLICAS)
        if kept is not None:
            return int(kept)
        n = self._call(apps.read_namespaced_deployment, name, self.namespace).spec.replicas
        n = 1 if n is None else int(n)
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": canary,
                "namespace": self.namespace,
                "annotations": {BASE_REPLICAS: str(n)},
            },
        }
        self._call(
            apps.patch_namespaced_deployment,
            canary,
            self.namespace,
            body,
            field_manager=f"{self._rollout_manager}-base",
            _content_type=SSA,
        )
        return n

    def _scale_split(self, name: str, percent: int) -> int:
        apps = _api(self.api, "AppsV1Api")
        canary = manifests.canary_name(name)
        stable_n, canary_n, share = manifests.replica_split(self._base_replicas(name), percent)
        want = {name: stable_n, canary: canary_n}
        have = {
            n: self._call(apps.read_namespaced_deployment, n, self.namespace).spec.replicas or 0
            for n in want
        }
        # up before down: capacity never drops below what serves now
        for n in sorted(want, key=lambda n: want[n] < have[n]):
            if want[n] != have[n]:
                self._call(
                    apps.patch_namespaced_deployment_scale,
                    n,
                    self.namespace,
                    {"spec": {"replicas": want[n]}},
                    field_manager=self._rollout_manager,
                )
                self._settle([n])
        return share

    def canary_url(self, name: str) -> str | None:
        """`traffic: gateway`: the environment's url under the route's candidate prefix
        (`/lepton-canary/...`, rewritten to `/...`), so the checks reach the candidate alone
        through the address clients use (as does any request with `x-lepton-track: canary`).
        `traffic: replicas`: None, one Service cannot single the candidate out."""
        if self.url is None or self._traffic(name) != "gateway":
            return None
        return canary_address(self.url)

    def served(self, name: str) -> dict[str, int] | None:
        """None: a cluster's split is counted by Prometheus (per revision), not by lepton-ci."""
        return None

    def remove_canary(self, name: str) -> None:
        """Every request to the serving track first (the route's rules back to its Service
        alone, or its replica count restored and the candidate's pods gone), then the
        candidate's objects deleted. Idempotent: a repair may call it again."""
        from kubernetes.client import ApiException

        canary = manifests.canary_name(name)
        try:
            try:
                mode = self._traffic(name)
            except DeployError:
                mode = ""  # no candidate Deployment left: only strays to delete
            if mode == "gateway":
                self._set_rules(name, manifests.route_rules(name), missing_ok=True)
            elif mode == "replicas":
                apps = _api(self.api, "AppsV1Api")
                try:
                    base: int | None = self._base_replicas(name)
                except ApiException as e:
                    if e.status != 404:
                        raise
                    base = None  # the serving release was removed: nothing to restore
                for n, count in ((name, base), (canary, 0)):
                    if count is None:
                        continue
                    try:
                        self._call(
                            apps.patch_namespaced_deployment_scale,
                            n,
                            self.namespace,
                            {"spec": {"replicas": count}},
                            field_manager=self._rollout_manager,
                        )
                    except ApiException as e:
                        if e.status != 404:
                            raise
                        continue
                    self._settle([n])
            for kind, obj_name in self._release_objects(canary):
                self._delete(kind, obj_name)
        except ApiException as e:
            raise RolloutFailed(f"removing the candidate failed: {status_message(e)}") from None


def canary_address(url: str) -> str:
    """The candidate's address under an environment's url: the route's candidate prefix goes
    first in the path (`https://h/api` -> `https://h/lepton-canary/api`), since the Gateway
    rewrites it away from the front of the path."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url.rstrip("/"))
    return urlunsplit(parts._replace(path=manifests.CANARY_PATH + parts.path))


def rollout_pending(name: str, d: Any) -> str:
    """What a Deployment still waits for ("" when rolled out), as `kubectl rollout status`
    decides: the spec observed, every replica updated, no old replica left, every updated
    replica available. Until then an available pod may be an OLD one, still serving the
    previous version. ProgressDeadlineExceeded raises RolloutFailed."""
    st = d.status
    generation = d.metadata.generation or 0
    observed = (st.observed_generation if st else 0) or 0
    if st is None or observed < generation:
        return f"{name} (waiting for the controller to observe generation {generation})"
    for c in st.conditions or []:
        if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
            raise RolloutFailed(
                f"deployment {name}: ProgressDeadlineExceeded: {c.message or ''}".rstrip(": ")
            )
    want = d.spec.replicas if d.spec.replicas is not None else 1
    replicas, updated = st.replicas or 0, st.updated_replicas or 0
    available = st.available_replicas or 0
    if updated < want:
        return f"{name} ({updated} of {want} new replicas updated)"
    if replicas > updated:
        return f"{name} ({replicas - updated} old replicas pending termination)"
    if available < updated:
        return f"{name} ({available} of {updated} updated replicas available)"
    return ""


class ConfigMapStore:
    """Revisions as ConfigMaps in the cluster; one Lease per environment is the lock."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        release: str,
        sleep: Callable[[float], None] | None = None,
        lease_seconds: int = 60,
        clock: Callable[[], float] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.api = api_client
        self.namespace = namespace
        self.release = release
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic  # the lock's timeout
        self.now = now or (lambda: datetime.now(UTC))  # a Lease's renewTime and expiry
        self.lease_seconds = lease_seconds

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return call(fn, *args, sleep=self.sleep, **kw)

    def _name(self, number: int) -> str:
        return manifests.dns_name("lepton", self.release, f"r{number}")

    def list(self) -> list[Revision]:
        core = _api(self.api, "CoreV1Api")
        items = self._call(
            core.list_namespaced_config_map,
            self.namespace,
            label_selector=f"dev.lepton-ci/release={self.release}",
        ).items
        revs = [
            Revision.model_validate_json(i.data["revision.json"])
            for i in items
            if _labels(i).get("dev.lepton-ci/release") == self.release
            and (i.data or {}).get("revision.json")
        ]
        return sorted(revs, key=lambda r: r.number)

    def save(self, rev: Revision) -> None:
        from kubernetes.client import ApiException

        core = _api(self.api, "CoreV1Api")
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._name(rev.number),
                "namespace": self.namespace,
                "labels": {
                    "dev.lepton-ci/release": self.release,
                    "dev.lepton-ci/revision": str(rev.number),
                    "dev.lepton-ci/status": rev.status,
                    "app.kubernetes.io/managed-by": "lepton-ci",
                },
            },
            "data": {"revision.json": rev.model_dump_json()},
        }
        try:
            self._call(
                core.patch_namespaced_config_map,
                self._name(rev.number),
                self.namespace,
                body,
                field_manager="lepton-ci",
                force=True,
                _content_type=SSA,
            )
        except ApiException as e:
            if e.status != 404:
                raise
            self._call(core.create_namespaced_config_map, self.namespace, body)

    @contextmanager
    def lock(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One deploy per environment: a Lease, renewed while held, taken over once expired.

        A job killed mid-deploy cannot release its Lease; it stops renewing it, so the next
        deploy takes it over after `lease_seconds` (and then repairs the pending revision)."""
        from kubernetes.client import ApiException

        coord = _api(self.api, "CoordinationV1Api")
        name = manifests.dns_name("lepton", self.release, "lock")
        me = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
        deadline = self.clock() + timeout
        told = False
        while not self._acquire(coord, name, me):
            if self.clock() >= deadline or (on_wait is not None and not told):
                held = self._call(coord.read_namespaced_lease, name, self.namespace).spec
                holder = (
                    f"Lease {name} held by {held.holder_identity}, renewed "
                    f"{_micro(held.renew_time)}; it expires {held.lease_duration_seconds}s "
                    "after its last renewal"
                )
                if time.monotonic() >= deadline:
                    raise DeployError(
                        f"another deploy of this environment is running ({holder})",
                        hint="wait for it; a killed job's Lease is taken over once it expires",
                    )
                if on_wait is not None:
                    on_wait(holder)
                    told = True
            self.sleep(0.5)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(coord, name, me, stop), name="lease-renew", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                held = self._call(coord.read_namespaced_lease, name, self.namespace)
                if held.spec.holder_identity == me:  # never delete a Lease taken over from us
                    self._call(coord.delete_namespaced_lease, name, self.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _spec(self, me: str) -> dict[str, Any]:
        stamp = _micro(self.now())
        return {
            "holderIdentity": me,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
        }

    def _acquire(self, coord: Any, name: str, me: str) -> bool:
        from kubernetes.client import ApiException

        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": self._spec(me),
        }
        try:
            self._call(coord.create_namespaced_lease, self.namespace, lease)
            return True
        except ApiException as e:
            if e.status != 409:
                raise
        try:
            held = self._call(coord.read_namespaced_lease, name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return False  # released meanwhile: try to create it again
            raise
        spec = held.spec
        last = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self.lease_seconds
        if last is not None and (self.now() - last).total_seconds() < duration:
            return False
        # Expired: take it over. resourceVersion makes the API server refuse (409) a second
        # taker that read the same expired Lease; reading back covers servers without it.
        take = {
            "metadata": {"resourceVersion": held.metadata.resource_version},
            "spec": {**self._spec(me), "leaseTransitions": (spec.lease_transitions or 0) + 1},
        }
        try:
            self._call(coord.patch_namespaced_lease, name, self.namespace, take, retries=0)
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        held = self._call(coord.read_namespaced_lease, name, self.namespace)
        return bool(held.spec.holder_identity == me)

    def _renew(self, coord: Any, name: str, me: str, stop: threading.Event) -> None:
        import urllib3
        from kubernetes.client import ApiException

        while not stop.wait(self.lease_seconds / 3):
            try:
                held = coord.read_namespaced_lease(
                    name, self.namespace, _request_timeout=REQUEST_TIMEOUT
                )
                if held.spec.holder_identity != me:
                    return  # taken over (we stalled past expiry): never renew another's Lease
                coord.patch_namespaced_lease(
                    name,
                    self.namespace,
                    {
                        "metadata": {"resourceVersion": held.metadata.resource_version},
                        "spec": {"renewTime": _micro(self.now())},
                    },
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except (ApiException, urllib3.exceptions.HTTPError):
                continue  # a missed renewal is retried; the Lease outlives two of them


def _micro(t: datetime | None) -> str:
    """A Kubernetes MicroTime."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else "never"


def api_client_from_env(env: dict[str, str]) -> Any:
    """kubeconfig (KUBECONFIG or ~/.kube/config), or the in-cluster service account."""
    from urllib.parse import urlsplit

    import yaml
    from kubernetes import client, config

    where = env.get("KUBECONFIG") or "~/.kube/config"
    try:
        if env.get("KUBERNETES_SERVICE_HOST") and not env.get("KUBECONFIG"):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=env.get("KUBECONFIG"), client_configuration=cfg
        )
        cfg.retries = 3
        server = urlsplit(cfg.host)
        if server.scheme not in ("http", "https") or not server.hostname or server.port == 0:
            raise ValueError(f"server {cfg.host!r} is not an http(s) URL")
        return client.ApiClient(cfg)
    except (config.ConfigException, FileNotFoundError) as e:
        raise DeployError(
            f"no Kubernetes credentials: {e}",
            hint="set KUBECONFIG, or run in a cluster with a service account",
        ) from None
    except (yaml.YAMLError, ValueError) as e:
        raise DeployError(
            f"kubeconfig {where} is not usable: {str(e).splitlines()[0]}",
            hint="check it with `kubectl config view`, or point KUBECONFIG at another file",
        ) from None
