"""A Kubernetes API for tests: kmock's emulator in a thread, plus a tiny controller.

The emulator stores objects but runs no controllers and sets no generation. Two stand-ins
make it behave like a cluster where it matters to lepton-ci:
- metadata.generation is bumped on every spec write (the API server does this);
- a controller thread moves Deployment status: available for good images,
  ProgressDeadlineExceeded for images in `broken`, nothing at all for images in `stuck`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import kmock
from kmock._internal import enums


class GenerationEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    async def _handle(self, request: Any) -> Any:
        data = request.data if isinstance(getattr(request, "data", None), dict) else None
        if (
            request.resource is not None
            and data is not None
            and "spec" in data
            and not request.subresource
        ):
            meta = data.setdefault("metadata", {})
            if request.action == enums.action.CREATE:
                meta["generation"] = 1
            elif request.action == enums.action.UPDATE:
                key = (request.resource, request.namespace, request.name)
                # kmock's ObjectsArray has no dict-style .get for these keys
                cur = self._objects[key] if key in self._objects else None  # noqa: SIM401
                gen = (cur.get("metadata", {}).get("generation") if cur is not None else 0) or 0
                meta["generation"] = gen + 1
        return await super()._handle(request)


class Cluster:
    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
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
        self._controller_stop = threading.Event()
        self._controller = threading.Thread(target=self._control, daemon=True)
        self._controller.start()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            handler = GenerationEmulator()
            handler.resources.load_bundled()  # discovery and lists of kinds with no objects yet
            async with handler, kmock.Server(handler) as srv:
                self.url = str(srv.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def _control(self) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        while not self._controller_stop.wait(0.1):
            for ns in ("default", "staging", "prod"):
                try:
                    deps = apps.list_namespaced_deployment(ns).items
                except client.ApiException:  # a controller keeps polling
                    continue
                for d in deps:
                    self._reconcile(apps, d)

    def _reconcile(self, apps: Any, d: Any) -> None:
        gen = d.metadata.generation or 0
        st = d.status
        if st is not None and (st.observed_generation or 0) >= gen:
            return
        image = d.spec.template.spec.containers[0].image
        if image in self.stuck:
            return
        replicas = d.spec.replicas if d.spec.replicas is not None else 1
        if image in self.broken:
            status = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": 0,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing.",
                    }
                ],
            }
        else:
            status = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                ],
            }
        time.sleep(0.05)  # a rollout takes a moment
        apps.patch_namespaced_deployment_status(
            d.metadata.name, d.metadata.namespace, {"status": status}
        )

    def close(self) -> None:
        self._controller_stop.set()
        self._controller.join(5)
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
