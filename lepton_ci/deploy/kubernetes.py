"""The `kubernetes` deploy target, through the official client handed in as an ApiClient.

Server-side apply with lepton-ci's field manager (objects are created when absent), conflicts
retried, objects of the release that a new render no longer has pruned. Rollout: generation
observed, updated and available replicas; ProgressDeadlineExceeded is a failure. Revisions are
ConfigMaps (one per revision, like Helm's release Secrets); the lock is a Lease.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lepton_ci.deploy import manifests
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.deploy.releases import DeployError, Revision, now

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
CUSTOM = {  # prometheus-operator's kinds
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules"),  # from `watch:`
}


def _api(api_client: Any, name: str) -> Any:
    from kubernetes import client

    return getattr(client, name)(api_client)


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
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 3,
    ) -> None:
        self.api = api_client
        self.namespace = namespace
        self.field_manager = field_manager
        self.sleep = sleep
        self.retries = retries

    # -- one object ----------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Retry conflicts (409) and server errors a bounded number of times."""
        from kubernetes.client import ApiException

        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kw)
            except ApiException as e:
                if e.status in (409, 500, 502, 503, 504) and attempt < self.retries:
                    self.sleep(0.5 * 2**attempt)
                    continue
                raise
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _apply_one(self, obj: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or self.namespace
        if kind in CUSTOM:
            api = _api(self.api, "CustomObjectsApi")
            where = (*CUSTOM[kind][:2], ns, CUSTOM[kind][2])  # group, version, ns, plural
            self._server_side_apply(
                lambda: api.patch_namespaced_custom_object(
                    *where,
                    name,
                    obj,
                    field_manager=self.field_manager,
                    force=True,
                    _content_type=SSA,
                ),
                lambda: api.create_namespaced_custom_object(*where, obj),
            )
            return
        if kind not in KINDS:
            raise DeployError(
                f"the kubernetes target cannot apply kind {kind} ({name})",
                hint="remove it from the templates, or apply it yourself",
            )
        cls, suffix = KINDS[kind]
        api = _api(self.api, cls)
        self._server_side_apply(
            lambda: getattr(api, f"patch_namespaced_{suffix}")(
                name, ns, obj, field_manager=self.field_manager, force=True, _content_type=SSA
            ),
            lambda: getattr(api, f"create_namespaced_{suffix}")(ns, obj),
        )

    def _server_side_apply(self, patch: Callable[[], Any], create: Callable[[], Any]) -> None:
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
        return found

    def _delete(self, kind: str, obj_name: str) -> None:
        from kubernetes.client import ApiException

        cls, suffix = KINDS[kind]
        try:
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
            for obj in objs:
                self._apply_one(obj)
            wanted = {(o["kind"], o["metadata"]["name"]) for o in objs}
            for kind, obj_name in self._release_objects(name):
                if (kind, obj_name) not in wanted:
                    self._delete(kind, obj_name)  # pruned: the new render no longer has it
        except ApiException as e:
            raise RolloutFailed(f"apply failed: {e.status} {e.reason}") from None
        return []

    def wait(self, text: str, budget: float, ready_url: str | None) -> float:
        t0 = time.monotonic()
        apps = _api(self.api, "AppsV1Api")
        names = [
            o["metadata"]["name"] for o in manifests.objects(text) if o["kind"] == "Deployment"
        ]
        while True:
            pending = []
            for n in names:
                d = self._call(apps.read_namespaced_deployment, n, self.namespace)
                st = d.status
                generation = d.metadata.generation or 0
                observed = (st.observed_generation if st else 0) or 0
                if observed >= generation:  # conditions describe this spec, not an older one
                    for c in (st.conditions if st else None) or []:
                        if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
                            raise RolloutFailed(
                                f"deployment {n}: ProgressDeadlineExceeded: "
                                f"{c.message or ''}".rstrip(": ")
                            )
                want = d.spec.replicas if d.spec.replicas is not None else 1
                ready = (
                    (
                        observed >= generation
                        and (st.updated_replicas or 0) >= want
                        and (st.available_replicas or 0) >= want
                    )
                    if st
                    else want == 0
                )
                if not ready:
                    pending.append(
                        f"{n} (observed {observed}/{generation}, updated "
                        f"{(st.updated_replicas or 0) if st else 0}/{want}, available "
                        f"{(st.available_replicas or 0) if st else 0}/{want})"
                    )
            if not pending:
                return time.monotonic() - t0
            if time.monotonic() - t0 > budget:
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


class ConfigMapStore:
    """Revisions as ConfigMaps in the cluster; one Lease per environment is the lock."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        release: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api_client
        self.namespace = namespace
        self.release = release
        self.sleep = sleep

    def _name(self, number: int) -> str:
        return manifests.dns_name("lepton", self.release, f"r{number}")

    def list(self) -> list[Revision]:
        core = _api(self.api, "CoreV1Api")
        items = core.list_namespaced_config_map(
            self.namespace, label_selector=f"dev.lepton-ci/release={self.release}"
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
            core.patch_namespaced_config_map(
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
            core.create_namespaced_config_map(self.namespace, body)

    @contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        from kubernetes.client import ApiException

        coord = _api(self.api, "CoordinationV1Api")
        name = manifests.dns_name("lepton", self.release, "lock")
        me = f"{socket.gethostname()}-{os.getpid()}"
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": me,
                "leaseDurationSeconds": 900,
                "acquireTime": now().replace("+00:00", ".000000Z"),
            },
        }
        deadline = time.monotonic() + timeout
        while True:
            try:
                coord.create_namespaced_lease(self.namespace, lease)
                break
            except ApiException as e:
                if e.status != 409:
                    raise
                if time.monotonic() >= deadline:
                    held = coord.read_namespaced_lease(name, self.namespace)
                    raise DeployError(
                        f"another deploy of this environment is running (Lease {name} held by "
                        f"{held.spec.holder_identity})",
                        hint="wait for it, or delete the Lease if that job is gone",
                    ) from None
                self.sleep(0.5)
        try:
            yield
        finally:
            try:
                coord.delete_namespaced_lease(name, self.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise


def api_client_from_env(env: dict[str, str]) -> Any:
    """kubeconfig (KUBECONFIG or ~/.kube/config), or the in-cluster service account."""
    from kubernetes import client, config

    try:
        if env.get("KUBERNETES_SERVICE_HOST") and not env.get("KUBECONFIG"):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=env.get("KUBECONFIG"), client_configuration=cfg
        )
        cfg.retries = 3
        return client.ApiClient(cfg)
    except (config.ConfigException, FileNotFoundError) as e:
        raise DeployError(
            f"no Kubernetes credentials: {e}",
            hint="set KUBECONFIG, or run in a cluster with a service account",
        ) from None
