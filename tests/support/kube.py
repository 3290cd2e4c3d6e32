"""A Kubernetes API for tests: kmock's emulator in a thread, made to disagree with a client
where a real API server and its controllers do, on a clock the test moves.

kmock stores objects; it runs no controllers, sets no generation and merges every write.
The stand-in adds what lepton-ci meets on a real cluster:
- every write is owned by a field manager, as metadata.managedFields says: an apply patch
  owns exactly what it sends, conflicts (409) with another manager's different value
  unless forced, and removes what it sent before and no longer sends, unless another
  manager owns it too (tests/support/ssa.py); `force` is refused on any other patch;
- the API server's defaults (a Deployment without `replicas` has 1), metadata.generation
  bumped when the spec changes, resourceVersion with optimistic concurrency;
- a Deployment controller that rolls out every change of the pod template (not only of the
  image), as the manifest's strategy says (RollingUpdate's maxSurge/maxUnavailable, or
  Recreate), and reports ProgressDeadlineExceeded once the manifest's
  progressDeadlineSeconds pass without progress. Pods of images in `broken` crash-loop,
  in `stuck` stay Pending, in `sick` become ready but answer 500; `slow` sets how long an
  image's pods take to become ready;
- an HPA controller that owns `replicas`: it scales its Deployment to what `load` asks
  (within its min and max) through the scale subresource, as kube-controller-manager;
- time is virtual: nothing happens until the test (or the code under test, through the
  sleep it is handed) calls `advance`, which runs the controllers once per `tick`. No test
  waits for a wall clock, and every budget is counted in virtual seconds.
- a Deployment's `spec.selector` is immutable (422 "field is immutable", as the API server
  answers), so a render that changed it fails here as it would on a cluster;
- HTTPRoute (Gateway API, gateway.networking.k8s.io/v1) is served as a custom resource with
  server-side apply like every object; `gateway_api=False` is a cluster without its CRDs
  (404 on its path).
A service front (`service_url`) answers for whichever ready pod a Service selects (any
Deployment's, by the pods' labels, as kube-proxy does), or a Deployment's of that name where
no Service exists; `gateway_url` answers as a Gateway would for one HTTPRoute: its matches
(headers, path prefix), URLRewrite, backend weights (smooth weighted round robin: at 90/10
exactly one request in ten goes to the second) and RequestMirror (a copy sent to the mirror's
pods, its answer thrown away; counted in `mirrored`). Every answer's body is the image of
the pod that gave it; `served` counts answers per (namespace, Service).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kmock
from kmock._internal import enums
from kmock._internal.dicts import patch_dict
from kmock._internal.k8s import KubernetesError

from tests.support import ssa

APPLY = "application/apply-patch+yaml"
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)  # virtual time 0
CONTROLLER = "kube-controller-manager"


class GenerationEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with what the API server does on every write: field managers and
    server-side apply, defaults, metadata.generation bumped on spec changes, resourceVersion
    with optimistic concurrency (a write naming a stale one is refused with 409), the patch
    options checked as the API server checks them (`force` only on apply patches, an apply
    patch needs a field manager: 422 otherwise), every patch recorded in `patches`, and
    `faults`: answers that the API server really gives, returned for chosen writes."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.versions = itertools.count(1)
        self.faults: list[Fault] = []
        self.patches: list[Patch] = []
        self.owners: dict[tuple[str, str | None, str], ssa.Owners] = {}
        self.clock = lambda: 0.0  # the cluster's virtual seconds, for managedFields' time
        self.gateway_api = True  # the Gateway API CRDs are installed

    async def _handle(self, request: Any) -> Any:
        if request.resource is None:
            return await super()._handle(request)
        patch = request.method == enums.method.PATCH
        if patch:
            self._check_patch(request)
        data = request.data if isinstance(getattr(request, "data", None), (dict, list)) else None
        writes = request.action in (enums.action.CREATE, enums.action.UPDATE)
        if writes and data is not None and request.subresource in (None, "scale"):
            self._fault(request)
            self._write(request, data)
        elif writes and isinstance(data, dict):
            self._fault(request)
            data.setdefault("metadata", {})["resourceVersion"] = str(next(self.versions))
        if request.resource.plural == "httproutes" and not self.gateway_api:
            raise KubernetesError(  # the API server's answer for a kind nobody installed
                status=404,
                reason="NotFound",
                message="the server could not find the requested resource",
            )
        if request.action == enums.action.DELETE and request.name:
            self.owners.pop((request.resource.plural, request.namespace, request.name), None)
        return await super()._handle(request)

    def _fault(self, request: Any) -> None:
        for f in self.faults:
            if f.times > 0 and f.plural == request.resource.plural and f.name == request.name:
                f.times -= 1
                raise KubernetesError(  # the shape of a real Status answer
                    status=409, reason="Conflict", message=f.message, details=f.details()
                )

    def _write(self, request: Any, data: Any) -> None:
        """Work out the object this write leaves, as the API server would, and hand kmock a
        merge patch that turns the stored object into exactly that."""
        body = data if isinstance(data, dict) else {}
        name = request.name or (body.get("metadata") or {}).get("name")
        namespace = request.namespace or (body.get("metadata") or {}).get("namespace")
        key = (request.resource.plural, namespace, name)
        stored = (request.resource, namespace, name)
        exists = stored in self._objects and not self._objects[stored].deleted
        if exists and request.action == enums.action.CREATE:
            return  # kmock answers 409 AlreadyExists; the object and its owners stay as they are
        old = copy.deepcopy(self._objects[stored].raw) if exists else None
        params = dict(request.params or {})
        headers = {k.lower(): v for k, v in request.headers.items()}
        manager = params.get("fieldManager") or headers.get("user-agent", "").split("/")[0]
        owners = self.owners.setdefault(key, ssa.Owners())
        meta_in = body.get("metadata") or {}
        if (
            request.action == enums.action.UPDATE
            and meta_in.get("resourceVersion")
            and old is not None
            and meta_in["resourceVersion"] != old["metadata"].get("resourceVersion")
        ):
            raise KubernetesError(
                status=409,
                reason="Conflict",
                message=f"Operation cannot be fulfilled on {request.resource.plural} "
                f'"{name}": the object has been modified; please apply your changes to the '
                "latest version and try again",
            )
        apply = request.method == enums.method.PATCH and _content_type(request) == APPLY
        if apply:
            try:
                new = owners.apply(old, body, manager, force=params.get("force") == "true")
            except ssa.Conflict as c:
                raise KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=str(c),
                    details={"name": name, "kind": request.resource.plural, "causes": c.causes()},
                ) from None
        elif old is None and request.action != enums.action.CREATE:
            raise KubernetesError(  # only an apply patch creates what does not exist
                status=404,
                reason="NotFound",
                message=f'{request.resource.plural} "{name}" not found',
            )
        elif request.action == enums.action.CREATE:
            new = copy.deepcopy(body)
            owners.update(None, new, manager)
        else:
            new = copy.deepcopy(dict(patch_dict(old, data)))  # kmock's merge shares subtrees
            owners.update(old, new, manager)
        _default(request.resource.plural, new)
        _immutable(request.resource.plural, name, old, new)
        meta = new.setdefault("metadata", {})
        meta.pop("managedFields", None)
        meta["resourceVersion"] = str(next(self.versions))
        old_meta = (old or {}).get("metadata") or {}
        if old is None:
            meta["generation"] = 1
            meta.setdefault("uid", hashlib.sha256(repr(key).encode()).hexdigest())
        elif new.get("spec") != old.get("spec"):
            meta["generation"] = (old_meta.get("generation") or 0) + 1
        else:
            meta["generation"] = old_meta.get("generation") or 1
        api_version = str(new.get("apiVersion") or "v1")
        stamp = (EPOCH + timedelta(seconds=self.clock())).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["managedFields"] = owners.managed_fields(api_version, stamp)
        if old is None and request.action != enums.action.CREATE:
            # an apply patch creates what does not exist: kmock only patches what does
            self._objects[stored] = new
            replaced: Any = {}
        elif request.action == enums.action.CREATE:
            replaced = new
        else:
            replaced = _merge_patch(old, new)
        object.__setattr__(request, "data", replaced)  # kmock's Request is frozen

    def _check_patch(self, request: Any) -> None:
        params = dict(request.params or {})
        patch = Patch(
            request.resource.plural,
            request.name or "",
            request.subresource or "",
            _content_type(request),
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


def _content_type(request: Any) -> str:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return str(headers.get("content-type", "")).split(";")[0].strip()


def _default(plural: str, obj: dict[str, Any]) -> None:
    """The API server's defaults for the fields lepton-ci's Deployments may leave out."""
    if plural != "deployments" or not isinstance(obj.get("spec"), dict):
        return
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxSurge", "25%")
        ru.setdefault("maxUnavailable", "25%")


def _immutable(plural: str, name: str, old: Any, new: dict[str, Any]) -> None:
    """The API server's ValidateDeploymentUpdate: a Deployment's selector never changes."""
    if plural != "deployments" or old is None:
        return
    before = (old.get("spec") or {}).get("selector")
    after = (new.get("spec") or {}).get("selector")
    if before is not None and after != before:
        raise KubernetesError(
            status=422,
            reason="Invalid",
            message=f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: '
            f"{json.dumps(after, sort_keys=True)}: field is immutable",
        )


def _merge_patch(old: Any, new: Any) -> dict[str, Any]:
    """The merge patch (kmock's: None removes a key, lists replace) from `old` to `new`."""
    out: dict[str, Any] = {}
    for k in old:
        if k not in new:
            out[k] = None
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            sub = _merge_patch(old[k], v)
            if sub:
                out[k] = sub
        elif old.get(k, ssa.MISSING) != v:
            out[k] = v
    return out


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
    template: str  # the pod-template hash of its ReplicaSet
    image: str
    created: float  # virtual seconds
    env: frozenset[tuple[str, str]] = frozenset()  # its container's environment
    labels: tuple[tuple[str, str], ...] = ()  # its template's labels: what Services select
    ready: bool = False
    restarts: int = 0


@dataclass
class Rollout:
    """What the controller knows of one Deployment: its pods and when it last progressed."""

    template: str = ""
    templates: list[str] = field(default_factory=list)  # every pod template rolled out
    pods: list[Pod] = field(default_factory=list)
    progressed_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # every status it reported


def _scaled(value: Any, replicas: int, *, up: bool) -> int:
    """maxSurge (rounded up) or maxUnavailable (rounded down): an int or a percentage."""
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if up else math.floor(exact)
    return int(value)


class Cluster:
    def __init__(
        self, tick: float = 1.0, pod_start: float = 2.0, *, gateway_api: bool = True
    ) -> None:
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
        self.slow: dict[str, float] = {}  # image -> seconds its pods take to become ready
        self.broken_env: set[tuple[str, str]] = set()  # (name, value): pods with it crash
        self.load: dict[tuple[str, str], int] = {}  # (namespace, deployment) -> replicas asked
        self.tick, self.pod_start = tick, pod_start
        self._now = 0.0
        self._next_tick = tick
        self.rollouts: dict[tuple[str, str], Rollout] = {}
        self._lock = threading.RLock()
        assert self.emulator is not None
        self.emulator.clock = self.now
        self.emulator.gateway_api = gateway_api
        self.served: dict[tuple[str, str], int] = {}  # (namespace, Service) -> answers
        self.mirrored: dict[tuple[str, str], int] = {}  # (namespace, Service) -> copies
        self._front = self._serve_front()

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

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """Virtual seconds since the cluster started."""
        return self._now

    def utcnow(self) -> datetime:
        return EPOCH + timedelta(seconds=self._now)

    def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass: the controllers run once per tick crossed.
        Handed to the code under test as its `sleep`, so its waiting is what moves time."""
        with self._lock:
            until = self._now + max(seconds, 0.0)
            while self._next_tick <= until:
                self._now = self._next_tick
                self._next_tick += self.tick
                self._reconcile()
            self._now = until

    # -- the service in front of the pods -------------------------------------------------

    def service_url(self, namespace: str, name: str) -> str:
        return f"http://127.0.0.1:{self._front.server_address[1]}/{namespace}/{name}"

    def gateway_url(self, namespace: str, route: str) -> str:
        """The address a Gateway gives the HTTPRoute `route`. Its `-gateway/NS/ROUTE` part
        stands for a host: a path put before it (`/lepton-canary/-gateway/...`) is part of the
        request's path, as it would be after a real Gateway's host."""
        return f"http://127.0.0.1:{self._front.server_address[1]}/-gateway/{namespace}/{route}"

    def _read(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A stored Service or HTTPRoute (None if absent), from the emulator's own store: each
        request through the front reads it, and an API call per request costs more than the
        rest of the test."""
        assert self.emulator is not None
        for _ in range(3):  # the emulator's thread may add an object while we look
            try:
                for key, obj in list(self.emulator._objects.items()):
                    if (key[0].plural, key[1], key[2]) == (plural, namespace, name):
                        return None if obj.deleted else copy.deepcopy(dict(obj.raw))
                return None
            except RuntimeError:
                continue
        return None

    def _endpoints(self, namespace: str, service: str) -> list[Pod]:
        """The ready pods a Service selects (every Deployment's in its namespace, by the pods'
        labels), or, where no such Service exists, a Deployment's of that name."""
        svc = self._read("services", namespace, service)
        with self._lock:
            if svc is None:
                r = self.rollouts.get((namespace, service))
                return [p for p in r.pods if p.ready] if r else []
            want = set(((svc.get("spec") or {}).get("selector") or {}).items())
            return [
                p
                for (ns, _), r in self.rollouts.items()
                if ns == namespace
                for p in r.pods
                if p.ready and want and want <= set(p.labels)
            ]

    def _answer(self, namespace: str, service: str, turn: Any) -> tuple[int, bytes]:
        up = self._endpoints(namespace, service)
        if not up:
            return 503, b"no endpoints available"
        pod = up[next(turn) % len(up)]
        with self._lock:
            key = (namespace, service)
            self.served[key] = self.served.get(key, 0) + 1
        return (500 if pod.image in self.sick else 200), pod.image.encode()

    def _route(
        self, namespace: str, name: str, path: str, headers: Any, turns: dict[Any, Any]
    ) -> tuple[int, bytes, str]:
        """One request through the HTTPRoute `name`: (status, body, the path the backend saw)."""
        route = self._read("httproutes", namespace, name)
        if route is None:
            return 404, b"no route", path
        best: tuple[tuple[int, int], dict[str, Any], str] | None = None
        for rule in (route.get("spec") or {}).get("rules") or []:
            for m in rule.get("matches") or [{}]:
                prefix = (m.get("path") or {}).get("value", "/")
                heads = m.get("headers") or []
                if not (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                    continue
                if any(headers.get(h["name"]) != h["value"] for h in heads):
                    continue
                rank = (len(prefix), len(heads))  # Gateway API precedence: path, then headers
                if best is None or rank > best[0]:
                    best = (rank, rule, prefix)
        if best is None:
            return 404, b"no rule matches", path
        _, rule, prefix = best
        for f in rule.get("filters") or []:
            if f["type"] == "URLRewrite":
                to = f["urlRewrite"]["path"]["replacePrefixMatch"]
                path = to.rstrip("/") + "/" + path[len(prefix) :].lstrip("/")
            elif f["type"] == "RequestMirror":
                mirror = f["requestMirror"]["backendRef"]["name"]
                if self._endpoints(namespace, mirror):  # its answer is thrown away
                    with self._lock:
                        key = (namespace, mirror)
                        self.mirrored[key] = self.mirrored.get(key, 0) + 1
        refs = [r for r in rule.get("backendRefs") or [] if r.get("weight", 1) > 0]
        if not refs:
            return 500, b"no backend with weight", path
        # smooth weighted round robin (nginx's): exact shares over every `total` requests,
        # interleaved (50/50 alternates; 90/10 sends one request in ten to the second)
        weights = [r.get("weight", 1) for r in refs]
        with self._lock:
            current = turns.setdefault((namespace, name, json.dumps(refs)), [0] * len(refs))
            for i, wt in enumerate(weights):
                current[i] += wt
            pick = max(range(len(refs)), key=lambda i: current[i])
            current[pick] -= sum(weights)
        r = refs[pick]
        code, body = self._answer(namespace, r["name"], turns.setdefault("pods", itertools.count()))
        return code, body, path

    def _serve_front(self) -> ThreadingHTTPServer:
        cluster = self
        turn = itertools.count()
        turns: dict[Any, Any] = {}

        class Front(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                seen = "/" + "/".join(parts[2:])
                at = parts.index("-gateway") if "-gateway" in parts else -1
                if at >= 0 and len(parts) > at + 2:
                    # `-gateway/NS/ROUTE` stands for the Gateway's host: the request's path is
                    # what is around it (a client may put a prefix before it, as before a path)
                    rest = "/" + "/".join(parts[:at] + parts[at + 3 :])
                    ns, route = parts[at + 1], parts[at + 2]
                    code, body, seen = cluster._route(ns, route, rest, self.headers, turns)
                elif len(parts) > 1:
                    code, body = cluster._answer(parts[0], parts[1], turn)
                else:
                    code, body = 404, b"no such service"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Path", seen)  # the path the pod was asked for
                self.end_headers()
                self.wfile.write(body)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    # -- the controllers -------------------------------------------------------------------

    def _reconcile(self) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        scaling = client.AutoscalingV2Api(self.api)
        try:  # raw JSON: the typed models cost more CPU than the controllers
            hpas = json.loads(
                scaling.list_horizontal_pod_autoscaler_for_all_namespaces(
                    _preload_content=False
                ).data
            )["items"]
            deps = self._deployments(apps)
        except client.ApiException:
            return  # a controller tries again at its next tick
        for h in hpas:
            target = h["spec"]["scaleTargetRef"]
            ns = h["metadata"]["namespace"]
            d = deps.get((ns, target["name"])) if target.get("kind") == "Deployment" else None
            if d is None:
                continue
            have = d["spec"].get("replicas", 1)
            asked = self.load.get((ns, target["name"]), have)
            low, high = h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"]
            want = min(max(asked, low), high)
            if want != have:
                apps.patch_namespaced_deployment_scale(
                    target["name"],
                    ns,
                    {"spec": {"replicas": want}},
                    field_manager=CONTROLLER,
                    _preload_content=False,
                )
        if hpas:
            deps = self._deployments(apps)
        for (ns, name), d in deps.items():
            status = self._step(d)
            if status is not None:
                try:
                    apps.patch_namespaced_deployment_status(
                        name, ns, {"status": status}, field_manager=CONTROLLER,
                        _preload_content=False,
                    )  # fmt: skip
                except client.ApiException:
                    continue  # deleted meanwhile
        for key in [k for k in self.rollouts if k not in deps]:
            del self.rollouts[key]  # the Deployment was deleted: so are its pods

    @staticmethod
    def _deployments(apps: Any) -> dict[tuple[str, str], Any]:
        raw = apps.list_deployment_for_all_namespaces(_preload_content=False)
        return {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d
            for d in json.loads(raw.data)["items"]
        }

    def _step(self, d: Any) -> dict[str, Any] | None:
        """One reconcile of a Deployment. Returns its status if it changed."""
        now = self._now
        meta, spec = d["metadata"], d["spec"]
        key = (meta["namespace"], meta["name"])
        want = spec.get("replicas", 1)
        template = spec["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        container = template["spec"]["containers"][0]
        image = container["image"]
        labels = tuple(sorted(((template.get("metadata") or {}).get("labels") or {}).items()))
        env = frozenset((e["name"], str(e.get("value"))) for e in container.get("env") or [])
        strategy = spec.get("strategy") or {}
        recreate = strategy.get("type") == "Recreate"
        ru = strategy.get("rollingUpdate") or {}
        surge = _scaled(ru.get("maxSurge", "25%"), want, up=True)
        unavailable = _scaled(ru.get("maxUnavailable", "25%"), want, up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # the API server refuses both zero; the controller treats it so
        deadline = spec.get("progressDeadlineSeconds", 600)
        r = self.rollouts.setdefault(key, Rollout())
        if r.template != digest:  # a new pod template: a new ReplicaSet, a new rollout
            r.template, r.progressed_at = digest, now
            r.templates.append(digest)
        for p in r.pods:
            start = self.slow.get(p.image, self.pod_start)
            if p.template == digest and not p.ready and now - p.created >= start:
                if p.image in self.broken or p.env & self.broken_env:
                    p.restarts += 1  # CrashLoopBackOff: it never becomes ready
                elif p.image not in self.stuck:
                    p.ready = True
                    r.progressed_at = now
        new = [p for p in r.pods if p.template == digest]
        old = [p for p in r.pods if p.template != digest]
        if recreate and old:
            r.pods = new  # every old pod goes before any new one starts
            r.progressed_at = now
        elif len(new) > want:
            for p in sorted(new, key=lambda p: p.ready)[: len(new) - want]:
                r.pods.remove(p)  # scaled down: unready pods go first
            r.progressed_at = now
        elif len(new) < want:
            room = want - len(new) if recreate else want + surge - len(r.pods)
            for _ in range(max(0, min(room, want - len(new)))):
                r.pods.append(Pod(digest, image, now, env, labels))
                r.progressed_at = now
        old = [p for p in r.pods if p.template != digest]
        ready = sum(p.ready for p in r.pods)
        for p in sorted(old, key=lambda p: p.ready):
            if not p.ready:
                r.pods.remove(p)  # unready old pods go first: no availability lost
                r.progressed_at = now
            elif ready - 1 >= want - unavailable:
                r.pods.remove(p)
                ready -= 1
                r.progressed_at = now
        new = [p for p in r.pods if p.template == digest]
        ready = sum(p.ready for p in r.pods)
        done = len(new) == want and len(r.pods) == want and all(p.ready for p in new)
        if done:
            progressing = {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{meta["name"]}-{digest}" has successfully progressed.',
            }
        elif now - r.progressed_at > deadline:
            progressing = {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{meta["name"]}-{digest}" has timed out progressing.',
            }
        else:
            progressing = {
                "type": "Progressing",
                "status": "True",
                "reason": "ReplicaSetUpdated",
                "message": f'ReplicaSet "{meta["name"]}-{digest}" is progressing.',
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

    def history(self, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every version the API server stored of an object, oldest first."""
        assert self.emulator is not None
        for key in list(self.emulator._objects):
            if (key[0].plural, key[1], key[2]) == (plural, namespace, name):
                versions = self.emulator._objects[key].history
                return [copy.deepcopy(v.raw) for v in versions if v is not None]
        return []

    def close(self) -> None:
        self._front.shutdown()
        self._front.server_close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
