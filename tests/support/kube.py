"""A Kubernetes API for tests: kmock's emulator in a thread, plus a Deployment controller.

The emulator stores objects but runs no controllers and sets no generation. Stand-ins make it
behave like a cluster where it matters to lepton-ci:
- metadata.generation is bumped on every spec write (the API server does this);
- a controller thread rolls Deployments out the way the Deployment controller does, one step
  per tick: it observes the new generation at once, surges new pods (maxSurge 25%, rounded
  up), keeps old pods available until new ones are ready (maxUnavailable 25%, rounded down),
  and scales the old ones down. Images in `broken` crash-loop and end in
  ProgressDeadlineExceeded; images in `stuck` stay Pending with no verdict; images in `sick`
  become ready but answer 500 on every path;
- a service front (`service_url`) answers for whichever pod of a Deployment is available,
  old or new, like a Service in front of a rolling update.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kmock
from kmock._internal import enums
from kmock._internal.k8s import KubernetesError


class GenerationEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """Adds what the API server does on every write and kmock leaves out: metadata.generation
    bumped on spec changes, resourceVersion on every write with optimistic concurrency (a
    write naming a stale resourceVersion is refused with 409), the patch options checked as
    the API server checks them (`force` only on apply patches, an apply patch needs a field
    manager: 422 otherwise), every patch recorded in `patches`, and `faults`: answers that
    the API server really gives, returned for chosen writes."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.versions = itertools.count(1)
        self.faults: list[Fault] = []
        self.patches: list[Patch] = []

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.method == enums.method.PATCH:
            self._check_patch(request)
        data = request.data if isinstance(getattr(request, "data", None), dict) else None
        writes = request.action in (enums.action.CREATE, enums.action.UPDATE)
        if request.resource is not None and data is not None and writes:
            for f in self.faults:
                if f.times > 0 and f.plural == request.resource.plural and f.name == request.name:
                    f.times -= 1
                    raise KubernetesError(  # the shape of a real Status answer
                        status=409, reason="Conflict", message=f.message, details=f.details()
                    )
            meta = data.setdefault("metadata", {})
            key = (request.resource, request.namespace, request.name)
            # kmock's ObjectsArray has no dict-style .get for these keys
            cur = self._objects[key] if key in self._objects else None  # noqa: SIM401
            cur_meta = cur.get("metadata", {}) if cur is not None else {}
            stale = meta.get("resourceVersion")
            if (
                request.action == enums.action.UPDATE
                and stale
                and stale != cur_meta.get("resourceVersion")
            ):
                raise KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f"Operation cannot be fulfilled on {request.resource.plural} "
                    f'"{request.name}": the object has been modified; please apply your '
                    "changes to the latest version and try again",
                )
            meta["resourceVersion"] = str(next(self.versions))
            if "spec" in data and not request.subresource:
                if request.action == enums.action.CREATE:
                    meta["generation"] = 1
                else:
                    meta["generation"] = (cur_meta.get("generation") or 0) + 1
        return await super()._handle(request)

    def _check_patch(self, request: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        params = dict(request.params or {})
        patch = Patch(
            request.resource.plural,
            request.name or "",
            request.subresource or "",
            headers.get("content-type", "").split(";")[0].strip(),
            params.get("fieldManager", ""),
            params.get("force"),
        )
        self.patches.append(patch)
        problem = ""
        if patch.content_type != APPLY and patch.force is not None:
            problem = "force: Forbidden: may not be specified for non-apply patch"
        elif patch.content_type == APPLY and not patch.field_manager:
            problem = "fieldManager: Required value: is required for apply patch"
        if problem:  # the API server's ValidatePatchOptions, answered as an Invalid Status
            raise KubernetesError(
                status=422,
                reason="Invalid",
                message=f'PatchOptions.meta.k8s.io "" is invalid: {problem}',
            )


APPLY = "application/apply-patch+yaml"


@dataclass
class Patch:
    """One PATCH as the API server received it: which kind of patch, from which manager."""

    plural: str
    name: str
    subresource: str
    content_type: str
    field_manager: str
    force: str | None


@dataclass
class Fault:
    """A 409 the API server gives for writes to one object, `times` times: the object changed
    under the writer, or (with `field_path`) another field manager owns a field."""

    plural: str
    name: str
    times: int = 1
    field_path: str = ""
    manager: str = "kubectl-edit"

    @property
    def message(self) -> str:
        if self.field_path:
            return (
                f'Apply failed with 1 conflict: conflict with "{self.manager}" using apps/v1: '
                f"{self.field_path}"
            )
        return (
            f'Operation cannot be fulfilled on {self.plural} "{self.name}": the object has '
            "been modified; please apply your changes to the latest version and try again"
        )

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.plural}
        if self.field_path:
            out["causes"] = [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{self.manager}" using apps/v1',
                    "field": self.field_path,
                }
            ]
        return out


@dataclass
class Pod:
    image: str
    ready: bool = False
    age: int = 0  # controller ticks since it was created
    restarts: int = 0


@dataclass
class Rollout:
    """What the controller knows of one Deployment: its pods and when it last progressed."""

    image: str = ""
    pods: list[Pod] = field(default_factory=list)
    progressed_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # every status it reported


class Cluster:
    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.emulator: GenerationEmulator | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("kmock did not start")
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        self.api = client.ApiClient(cfg)
        self.broken: set[str] = set()
        self.stuck: set[str] = set()
        self.sick: set[str] = set()
        self.progress_deadline = 1.5  # seconds without progress before ProgressDeadlineExceeded
        self.tick = 0.1
        self.rollouts: dict[tuple[str, str], Rollout] = {}
        self._lock = threading.Lock()
        self._front = self._serve_front()
        self._controller_stop = threading.Event()
        self._controller = threading.Thread(target=self._control, daemon=True)
        self._controller.start()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            handler = GenerationEmulator()
            self.emulator = handler
            handler.resources.load_bundled()  # discovery and lists of kinds with no objects yet
            async with handler, kmock.Server(handler) as srv:
                self.url = str(srv.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    # -- the service in front of the pods -------------------------------------------------

    def service_url(self, namespace: str, name: str) -> str:
        return f"http://127.0.0.1:{self._front.server_address[1]}/{namespace}/{name}"

    def _serve_front(self) -> ThreadingHTTPServer:
        cluster = self
        turn = itertools.count()

        class Front(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                with cluster._lock:
                    r = cluster.rollouts.get((parts[0], parts[1])) if len(parts) > 1 else None
                    up = [p for p in r.pods if p.ready] if r else []
                    pod = up[next(turn) % len(up)] if up else None
                if pod is None:
                    code, body = 503, b"no endpoints available"
                elif pod.image in cluster.sick:
                    code, body = 500, pod.image.encode()
                else:
                    code, body = 200, pod.image.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    # -- the Deployment controller -------------------------------------------------------

    def _control(self) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        while not self._controller_stop.wait(self.tick):
            try:  # raw JSON: the typed models cost more CPU than the whole controller
                raw = apps.list_deployment_for_all_namespaces(_preload_content=False)
                deps = json.loads(raw.data)["items"]
            except client.ApiException:  # a controller keeps polling
                continue
            seen = set()
            for d in deps:
                meta = d["metadata"]
                seen.add((meta["namespace"], meta["name"]))
                status = self._step(d)
                if status is not None:
                    try:
                        apps.patch_namespaced_deployment_status(
                            meta["name"],
                            meta["namespace"],
                            {"status": status},
                            _preload_content=False,
                        )
                    except client.ApiException:
                        continue  # deleted meanwhile
            with self._lock:
                for key in [k for k in self.rollouts if k not in seen]:
                    del self.rollouts[key]  # the Deployment was deleted: so are its pods

    def _step(self, d: Any) -> dict[str, Any] | None:
        """One reconcile: at most one pod created and one removed. Returns a changed status."""
        meta, spec = d["metadata"], d["spec"]
        key = (meta["namespace"], meta["name"])
        want = spec["replicas"] if spec.get("replicas") is not None else 1
        image = spec["template"]["spec"]["containers"][0]["image"]
        surge = math.ceil(want * 0.25)
        unavailable = math.floor(want * 0.25)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # the API server refuses both zero; the controller treats it so
        with self._lock:
            r = self.rollouts.setdefault(key, Rollout())
            if r.image != image:
                r.image, r.progressed_at = image, time.monotonic()
            for p in r.pods:
                p.age += 1
                if p.image == image and not p.ready and p.age >= 2:
                    if p.image in self.broken:
                        p.restarts += 1  # CrashLoopBackOff: it never becomes ready
                    elif p.image not in self.stuck:
                        p.ready = True
                        r.progressed_at = time.monotonic()
            new = [p for p in r.pods if p.image == image]
            old = [p for p in r.pods if p.image != image]
            if len(new) > want:  # scaled down
                r.pods.remove(new[-1])
            elif len(new) < want and len(r.pods) < want + surge:
                r.pods.append(Pod(image))
            new = [p for p in r.pods if p.image == image]
            old = [p for p in r.pods if p.image != image]
            ready = sum(p.ready for p in r.pods)
            if old:
                idle = [p for p in old if not p.ready]
                if idle:
                    r.pods.remove(idle[0])  # unready old pods go first
                elif ready - 1 >= want - unavailable:
                    r.pods.remove(old[0])
                    r.progressed_at = time.monotonic()
            new = [p for p in r.pods if p.image == image]
            ready = sum(p.ready for p in r.pods)
            done = len(new) == want and len(r.pods) == want and ready == want
            if done:
                progressing = {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                }
            elif (
                image not in self.stuck
                and time.monotonic() - r.progressed_at > self.progress_deadline
            ):
                progressing = {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{meta["name"]}" has timed out progressing.',
                }
            else:
                progressing = {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "ReplicaSetUpdated",
                }
            status = {
                "observedGeneration": meta.get("generation") or 0,
                "replicas": len(r.pods),
                "updatedReplicas": len(new),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(0, want - ready),
                "conditions": [
                    progressing,
                    {
                        "type": "Available",
                        "status": "True" if ready >= want - unavailable else "False",
                    },
                ],
            }
            if r.history and r.history[-1] == status:
                return None
            r.history.append(status)
            return status

    def close(self) -> None:
        self._controller_stop.set()
        self._controller.join(5)
        self._front.shutdown()
        self._front.server_close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
