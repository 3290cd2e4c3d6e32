"""The `podman` deploy target: the same manifests as real pods with `podman kube play`.

Kinds podman runs (Deployment, Pod, ConfigMap, Secret, PersistentVolumeClaim) are applied;
cluster-only kinds (Service, HPA, ServiceMonitor) are skipped and said so. The podman
configuration comes from the environment (CONTAINERS_CONF, ...), as for any podman command.

An environment with a `host_port` is served through a splitter (a real nginx, see
lepton_ci.rollout.splitter) that holds 127.0.0.1:host_port; the pods publish on other loopback
ports lepton-ci picks (the hostPort in what is played is rewritten). A new revision is played
into the idle one of two slots beside the serving one, waited for and checked on its own port,
and only then given every request by a graceful reload; the previous slot is retired after.
So no request fails while revisions change. A canary runs as a third pod on its own port,
given a share of the requests (or a mirror of them) by the same splitter.

Prometheus finds the pods through a file_sd target file in the state dir
(`NAME.targets.json`), each port labelled with its `revision` and `track`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core import atomic
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.oci_client import Ref, is_loopback
from lepton_ci.deploy import manifests
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.rollout.splitter import Splitter, SplitterError

SUPPORTED = {"Deployment", "Pod", "ConfigMap", "Secret", "PersistentVolumeClaim"}
SLOTS = ("blue", "green")
REVISION_LABEL = f"{manifests.PREFIX}/revision"


class PodmanCLI:
    """Runs podman; a test can hand in one with another environment or a failing runner."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 300) -> None:
        self.env = dict(env) if env is not None else None
        self.timeout = timeout

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ["podman", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                # Not in the terminal's group: a Ctrl-C stops lepton-ci, which decides what to
                # do with podman (the repair after an interruption must not be cut by a second).
                start_new_session=True,
            )
        except FileNotFoundError:
            raise LeptonError(
                "podman is not installed",
                hint="apt-get install podman, or use the kubernetes target",
            ) from None
        except subprocess.TimeoutExpired:
            raise LeptonError(f"`podman {' '.join(args[:2])}` timed out") from None
        if check and proc.returncode != 0:
            raise LeptonError(f"`podman {' '.join(args[:3])}` failed: {proc.stderr.strip()[-800:]}")
        return proc


class PodmanTarget:
    def __init__(
        self,
        state_dir: Path,
        podman: PodmanCLI | None = None,
        http_get: Callable[[str], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        splitter: Callable[[Path, str, int], Splitter] = Splitter,
    ) -> None:
        self.state_dir = state_dir
        self.podman = podman or PodmanCLI()
        self.http_get = http_get or _status
        self.sleep = sleep
        self._splitter = splitter

    # -- files and state -----------------------------------------------------------------

    def _file(self, name: str, slot: str | None = None) -> Path:
        return self.state_dir / (f"{name}.{slot}.kube.yaml" if slot else f"{name}.kube.yaml")

    def _state_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.slots.json"

    def _state(self, name: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file(name).read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, name: str, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self._state_file(name), json.dumps(state, indent=1))
        self._write_targets(name, state)

    def splitter(self, name: str, listen: int) -> Splitter:
        return self._splitter(self.state_dir, name, listen)

    def _supported(self, text: str) -> tuple[str, list[str]]:
        kept: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for obj in manifests.objects(text):
            (kept if obj.get("kind") in SUPPORTED else skipped).append(obj)
        return (
            yaml.safe_dump_all(kept, sort_keys=False),
            [f"{o['kind']}/{o.get('metadata', {}).get('name', '?')}" for o in skipped],
        )

    # -- Target --------------------------------------------------------------------------

    def apply(self, name: str, text: str) -> list[str]:
        """Play these manifests. With a host_port, into the idle slot beside the serving one
        (it gets requests only at `promote`); without, in place of the running pods."""
        body, skipped = self._supported(text)
        skipped += _replica_notes(body)
        listen = _host_port(body)
        if listen is None:
            self._play(self._file(name), body)
            return skipped
        state = self._state(name)
        live = state.get("live") or {}
        digest = _digest(body)
        if live.get("digest") == digest and self._problem(live.get("pods", [])) is None:
            # The same manifests already serve (a revert to what never stopped serving). A
            # revision played into the other slot and never promoted (an interrupted deploy)
            # goes: nothing would record it once `pending` names what serves.
            half = state.get("pending")
            if half and half.get("slot") != live.get("slot"):
                self._down(self._file(name, half["slot"]))
            state["pending"] = dict(live)
            self._save(name, state)
            return skipped
        slot = next(s for s in SLOTS if s != live.get("slot"))
        self._down(self._file(name, slot))

        def record(port: int, played: str) -> None:
            state["pending"] = {
                "slot": slot,
                "port": port,
                "listen": listen,
                "digest": digest,
                "pods": self.pods(played),
                "revision": _revision(played),
            }
            self._save(name, state)

        self._play_beside(self._file(name, slot), body, listen, f"-{slot}", record)
        return skipped

    def staged_url(self, name: str) -> str | None:
        """Where the revision `apply` just played answers on its own, before it serves."""
        pending = self._state(name).get("pending")
        return f"http://127.0.0.1:{pending['port']}" if pending else None

    def promote(self, name: str) -> None:
        """Give the played revision every request (a graceful reload: none dropped), then
        retire the slot that served before."""
        state = self._state(name)
        pending, live = state.get("pending"), state.get("live") or {}
        if not pending:
            return
        canary = state.get("canary")
        split = self.splitter(name, pending["listen"])
        try:
            split.configure(
                f"127.0.0.1:{pending['port']}",
                f"127.0.0.1:{canary['port']}" if canary else None,
                int(canary.get("weight", 0)) if canary else 0,
            )
        except SplitterError as e:
            raise RolloutFailed(e.message) from None
        state["live"], state["pending"] = pending, None
        self._save(name, state)
        if live and live.get("slot") != pending["slot"]:
            self._down(self._file(name, live["slot"]))

    def discard(self, name: str) -> None:
        """Drop the played revision that failed; what served goes on serving."""
        state = self._state(name)
        pending, live = state.get("pending"), state.get("live") or {}
        if not pending:
            return
        state["pending"] = None
        self._save(name, state)
        if pending.get("slot") != live.get("slot"):
            self._down(self._file(name, pending["slot"]))

    def pods(self, text: str) -> list[str]:
        out = []
        for obj in manifests.objects(text):
            n = obj.get("metadata", {}).get("name", "")
            if obj.get("kind") == "Deployment":
                out.append(f"{n}-pod-0")
            elif obj.get("kind") == "Pod":
                out.append(n)
        return out

    def _pods_of(self, text: str) -> list[str]:
        """The pods these manifests run as played: in a slot, or as the canary."""
        body, _ = self._supported(text)
        digest = _digest(body)
        for name in self._names():
            state = self._state(name)
            for key in ("pending", "canary"):
                played = state.get(key)
                if played and played.get("digest") == digest:
                    return list(played["pods"])
        return self.pods(body)

    def _names(self) -> list[str]:
        return [p.name.removesuffix(".slots.json") for p in self.state_dir.glob("*.slots.json")]

    def wait(self, text: str, budget: float, ready_url: str | None) -> float:
        """Containers running, then the readiness URL answering 200, within the budget."""
        t0 = time.monotonic()
        pods = self._pods_of(text)
        while True:
            problem = self._problem(pods)
            if problem is None and ready_url is not None and self.http_get(ready_url) != 200:
                problem = f"{ready_url} not ready yet"
            if problem is None:
                return time.monotonic() - t0
            if problem.startswith("exited:"):
                raise RolloutFailed(f"container {problem}")
            if time.monotonic() - t0 > budget:
                raise RolloutFailed(f"not ready after {budget:.0f}s: {problem}")
            self.sleep(0.2)

    def _problem(self, pods: Sequence[str]) -> str | None:
        for pod in pods:
            proc = self.podman("pod", "inspect", pod, check=False)
            if proc.returncode != 0:
                return f"pod {pod} not found"
            info: Any = json.loads(proc.stdout)
            info = info[0] if isinstance(info, list) else info
            for c in info.get("Containers", []):
                if c.get("Name", "").endswith("-infra"):
                    continue
                state = c.get("State", "")
                if state in ("exited", "stopped", "dead"):
                    logs = self.podman("logs", "--tail", "5", c["Id"], check=False)
                    tail = (logs.stdout + logs.stderr).strip().replace("\n", " | ")[-400:]
                    return f"exited: {c.get('Name')} ({state}): {tail}"
                if state != "running":
                    return f"{c.get('Name')} is {state}"
        return None

    def remove(self, name: str) -> None:
        state = self._state(name)
        listen = (state.get("live") or state.get("pending") or {}).get("listen")
        if listen is not None:
            # the pods go anyway; nothing answers on the address then
            with contextlib.suppress(SplitterError):
                self.splitter(name, int(listen)).stop()
        for slot in (None, "canary", *SLOTS):
            self._down(self._file(name, slot))
        if state:
            self._save(name, {})

    def scale_to_zero(self, name: str) -> None:
        self.remove(name)  # one host has no replica count to lower: stopping is zero

    # -- Tracks --------------------------------------------------------------------------

    def apply_canary(self, name: str, text: str) -> list[str]:
        state = self._state(name)
        live = state.get("live")
        if not live:
            raise RolloutFailed(
                "a canary needs a revision serving through the splitter (an environment with "
                "`host_port`, deployed at least once)"
            )
        body, skipped = self._supported(text)
        skipped += _replica_notes(body)
        self._down(self._file(name, "canary"))

        def record(port: int, played: str) -> None:
            state["canary"] = {
                "port": port,
                "weight": 0,
                "mirror": False,
                "digest": _digest(body),
                "pods": self.pods(played),
                "revision": _revision(played),
            }
            self._save(name, state)

        self._play_beside(self._file(name, "canary"), body, int(live["listen"]), "", record)
        self.splitter(name, int(live["listen"])).reset_counts()
        return skipped

    def set_weight(self, name: str, percent: int, *, mirror: bool = False) -> int:
        state = self._state(name)
        live, canary = state.get("live"), state.get("canary")
        if not live or not canary:
            raise RolloutFailed("no canary to give requests to: apply it first")
        percent = 0 if mirror else max(0, min(100, percent))
        addr = f"127.0.0.1:{canary['port']}"
        try:
            self.splitter(name, int(live["listen"])).configure(
                f"127.0.0.1:{live['port']}", addr, percent, mirror=addr if mirror else None
            )
        except SplitterError as e:
            raise RolloutFailed(e.message) from None
        canary.update(weight=percent, mirror=mirror)
        self._save(name, state)
        return percent

    def canary_url(self, name: str) -> str | None:
        canary = self._state(name).get("canary")
        return f"http://127.0.0.1:{canary['port']}" if canary else None

    def served(self, name: str) -> dict[str, int] | None:
        live = self._state(name).get("live")
        if not live:
            return None
        return self.splitter(name, int(live["listen"])).counts()

    def remove_canary(self, name: str) -> None:
        state = self._state(name)
        live, canary = state.get("live"), state.get("canary")
        if live and (canary is None or canary.get("weight") or canary.get("mirror")):
            try:
                self.splitter(name, int(live["listen"])).configure(f"127.0.0.1:{live['port']}")
            except SplitterError as e:
                raise RolloutFailed(e.message) from None
        state["canary"] = None
        self._save(name, state)
        self._down(self._file(name, "canary"))

    # -- Mirrors (a shadow rollout: rollout/shadow.py) -------------------------------------

    def stable_url(self, name: str) -> str | None:
        """Where the serving pod answers on its own, not through the splitter."""
        live = self._state(name).get("live")
        return f"http://127.0.0.1:{live['port']}" if live else None

    def mirror_to(self, name: str, address: str | None) -> None:
        """Copy every request to `address` (the shadow's comparator), answers thrown away;
        None stops. The serving pod answers every client throughout."""
        state = self._state(name)
        live, canary = state.get("live"), state.get("canary")
        if not live:
            raise RolloutFailed("a shadow needs a revision serving through the splitter")
        try:
            self.splitter(name, int(live["listen"])).configure(
                f"127.0.0.1:{live['port']}", mirror=address
            )
        except SplitterError as e:
            raise RolloutFailed(e.message) from None
        if canary:
            canary.update(weight=0, mirror=address is not None)
            self._save(name, state)

    # -- podman ----------------------------------------------------------------------------

    def _play(self, path: Path, body: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        args = ["kube", "play", "--replace"]
        # TLS is skipped only where every image comes from a registry on this machine, as the
        # registry client does; anything else is verified.
        images = [c.get("image", "") for o in manifests.objects(body) for c in _containers(o)]
        if images and all(is_loopback(Ref.parse(i).registry) for i in images):
            args.append("--tls-verify=false")
        proc = self.podman(*args, str(path), check=False)
        if proc.returncode != 0:
            raise RolloutFailed(f"podman kube play failed: {proc.stderr.strip()[-800:]}")

    def _play_beside(
        self,
        path: Path,
        body: str,
        listen: int,
        suffix: str,
        record: Callable[[int, str], None],
    ) -> None:
        """Play on a free loopback port, recorded before it is played (a job killed in
        between leaves the pods findable); another port if one was taken meanwhile."""
        for attempt in range(3):
            port = _free_port()
            played = _rewrite(body, port, listen, suffix)
            record(port, played)
            try:
                self._play(path, played)
                return
            except RolloutFailed as e:
                if "address already in use" not in e.message.lower() or attempt == 2:
                    raise
                self._down(path)

    def _down(self, path: Path) -> None:
        if path.is_file():
            self.podman("kube", "down", str(path), check=False)
            path.unlink()

    def _write_targets(self, name: str, state: dict[str, Any]) -> None:
        """Prometheus file_sd targets: every pod port serving or checked, by revision."""
        groups = []
        for key, track in (("live", "stable"), ("pending", "stable"), ("canary", "canary")):
            played = state.get(key)
            if not played or (key == "pending" and played == state.get("live")):
                continue
            groups.append(
                {
                    "targets": [f"127.0.0.1:{played['port']}"],
                    "labels": {"revision": str(played.get("revision", "")), "track": track},
                }
            )
        atomic.write_text(self.state_dir / f"{name}.targets.json", json.dumps(groups, indent=1))


def _replica_notes(body: str) -> list[str]:
    notes = []
    for obj in manifests.objects(body):  # podman kube play runs one pod per Deployment
        want = (obj.get("spec") or {}).get("replicas")
        if obj.get("kind") == "Deployment" and isinstance(want, int) and want > 1:
            notes.append(
                f"Deployment/{obj['metadata']['name']} replicas {want} "
                "(podman runs one pod; the health checks probe that one)"
            )
    return notes


def _host_port(body: str) -> int | None:
    """The environment's address in the manifests: the first hostPort."""
    for obj in manifests.objects(body):
        for c in _containers(obj):
            for p in c.get("ports") or []:
                if isinstance(p, dict) and isinstance(p.get("hostPort"), int):
                    return int(p["hostPort"])
    return None


def _rewrite(body: str, port: int, listen: int, suffix: str) -> str:
    """The manifests as played: the environment's hostPort becomes `port` (any other hostPort
    a free port of its own, so two revisions can run side by side), and Deployments and Pods
    get `suffix` on their names."""
    objs = manifests.objects(body)
    for obj in objs:
        if suffix and obj.get("kind") in ("Deployment", "Pod"):
            meta = obj.setdefault("metadata", {})
            meta["name"] = f"{meta.get('name', '')[: 63 - len(suffix)]}{suffix}"
        for c in _containers(obj):
            for p in c.get("ports") or []:
                if isinstance(p, dict) and isinstance(p.get("hostPort"), int):
                    p["hostPort"] = port if p["hostPort"] == listen else _free_port()
                    p["hostIP"] = "127.0.0.1"
    return yaml.safe_dump_all(objs, sort_keys=False)


def _revision(body: str) -> str:
    for obj in manifests.objects(body):
        spec = obj.get("spec") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        labels = labels or (obj.get("metadata") or {}).get("labels") or {}
        if REVISION_LABEL in labels:
            return str(labels[REVISION_LABEL])
    return ""


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Deployment":
        spec = (spec.get("template") or {}).get("spec") or {}
    return list(spec.get("containers") or [])


def _status(url: str) -> int:
    import requests

    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0
