"""The `podman` deploy target: the same manifests as real pods with `podman kube play`.

Kinds podman runs (Deployment, Pod, ConfigMap, Secret, PersistentVolumeClaim) are applied;
cluster-only kinds (Service, HPA, ServiceMonitor) are skipped and said so. The podman
configuration comes from the environment (CONTAINERS_CONF, ...), as for any podman command.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core.errors import LeptonError
from lepton_ci.core.oci_client import Ref, is_loopback
from lepton_ci.deploy import manifests
from lepton_ci.deploy.contract import RolloutFailed

SUPPORTED = {"Deployment", "Pod", "ConfigMap", "Secret", "PersistentVolumeClaim"}


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
    ) -> None:
        self.state_dir = state_dir
        self.podman = podman or PodmanCLI()
        self.http_get = http_get or _status
        self.sleep = sleep

    def _file(self, name: str) -> Path:
        return self.state_dir / f"{name}.kube.yaml"

    def _supported(self, text: str) -> tuple[str, list[str]]:
        kept: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for obj in manifests.objects(text):
            (kept if obj.get("kind") in SUPPORTED else skipped).append(obj)
        return (
            yaml.safe_dump_all(kept, sort_keys=False),
            [f"{o['kind']}/{o.get('metadata', {}).get('name', '?')}" for o in skipped],
        )

    def apply(self, name: str, text: str) -> list[str]:
        """Replace the running pods with these manifests; returns kinds skipped."""
        body, skipped = self._supported(text)
        path = self._file(name)
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
        for obj in manifests.objects(body):  # podman kube play runs one pod per Deployment
            want = (obj.get("spec") or {}).get("replicas")
            if obj.get("kind") == "Deployment" and isinstance(want, int) and want > 1:
                skipped.append(
                    f"Deployment/{obj['metadata']['name']} replicas {want} "
                    "(podman runs one pod; the health checks probe that one)"
                )
        return skipped

    def pods(self, text: str) -> list[str]:
        out = []
        for obj in manifests.objects(text):
            n = obj.get("metadata", {}).get("name", "")
            if obj.get("kind") == "Deployment":
                out.append(f"{n}-pod-0")
            elif obj.get("kind") == "Pod":
                out.append(n)
        return out

    def wait(self, text: str, budget: float, ready_url: str | None) -> float:
        """Containers running, then the readiness URL answering 200, within the budget."""
        t0 = time.monotonic()
        pods = self.pods(text)
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
        path = self._file(name)
        if path.is_file():
            self.podman("kube", "down", str(path), check=False)

    def scale_to_zero(self, name: str) -> None:
        self.remove(name)  # one host has no replica count to lower: stopping is zero


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
