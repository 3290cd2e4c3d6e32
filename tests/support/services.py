"""Real local services for e2e tests: a CNCF registry, podman (and its Docker API socket).

The configuration is the project's own (see .ci/setup): runc and cgroupfs, ulimits below the
machine's hard limits, an overlay store under a temp dir, the local registry marked insecure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests

BASE_ROOTFS = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci")) / (
    "pybase-bookworm.tar"
)


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    """A server could not bind the port picked for it: another process took it in between."""


def check_port(output: str) -> None:
    """Raise PortTaken if a server's (or podman's) error output says its port was in use."""
    if "address already in use" in output.lower():
        raise PortTaken(output.strip()[-500:])


def on_free_port(start: Callable[[int], T], attempts: int = 5) -> T:
    """`start(port)` on a free port; if the port was taken before `start` bound it, again on
    another one (at most `attempts` times).

    For servers that cannot bind port 0 and report the port they got (docker-registry,
    Prometheus, podman's `-p` and `hostPort`): between free_port() and their bind any process
    can take the port. `start` raises PortTaken then, and writes whatever names the port
    (a config file, lepton.yaml's host_port) afresh on each call. Servers of our own bind port 0.
    """
    for _ in range(attempts - 1):
        try:
            return start(free_port())
        except PortTaken:
            pass
    return start(free_port())


def wait_http(
    url: str,
    timeout: float = 20.0,
    auth: tuple[str, str] | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited ({proc.returncode})")
        try:
            if requests.get(url, timeout=2, auth=auth).status_code in (200, 401):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Registry:
    """docker-registry (Debian's CNCF distribution) on a free loopback port."""

    def __init__(self, root: Path, htpasswd: Path | None = None, auth: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        if htpasswd:
            auth = f"auth:\n  htpasswd: {{realm: lepton-test, path: {htpasswd}}}\n"
        self.auth = auth
        self.port = on_free_port(lambda port: self._start(root, auth, port))

    def _start(self, root: Path, auth: str, port: int) -> int:
        self.host = f"127.0.0.1:{port}"
        (root / "registry.yml").write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
            "  delete: {enabled: true}\n"
            f"http: {{addr: {self.host}}}\n"
            "health: {storagedriver: {enabled: false}}\n"
            "log: {level: error}\n" + auth
        )
        self.log = (root / "registry.log").open("w")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "registry.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://{self.host}/v2/", proc=self.proc)
        except RuntimeError:
            self.log.close()
            check_port((root / "registry.log").read_text())
            raise
        return port

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()

    def restart_empty(self) -> None:
        """Start again on the same address with nothing stored: a bench round that must push
        every byte again (image names in a committed lepton.yaml keep working)."""
        self.stop()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self._start(self.root, self.auth, self.port)


class Podman:
    def __init__(self, root: Path, registries: list[str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
        )
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{root}/run"\ngraphroot = "{root}/graph"\n'
        )
        (root / "registries.conf").write_text(
            "unqualified-search-registries = []\n"
            + "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in registries)
        )
        # what a podman run elsewhere (lepton-ci, act) needs to use this engine's config
        self.config_env = {
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        }
        self.env = {**os.environ, **self.config_env}
        self.socket = root / "podman.sock"
        self.service: subprocess.Popen[bytes] | None = None

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            input=input.decode() if input else None,
        )
        if check and proc.returncode != 0:
            check_port(proc.stderr)  # `run -p`, `kube play` with a hostPort
            raise RuntimeError(f"podman {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
        return proc

    def start_service(self) -> str:
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "service.log").open("w"),
        )
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("podman system service did not create its socket")
            time.sleep(0.1)
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(10)
        self("rm", "-af", "-t", "0", check=False)
        self("pod", "rm", "-af", "-t", "0", check=False)


def base_rootfs() -> Path:
    """A Debian rootfs with python3, made with mmdebstrap once per machine and cached."""
    if not BASE_ROOTFS.is_file():
        BASE_ROOTFS.parent.mkdir(parents=True, exist_ok=True)
        tmp = BASE_ROOTFS.with_suffix(".tmp.tar")
        subprocess.run(
            ["mmdebstrap", "--variant=apt", "--include=python3", "bookworm", str(tmp)],
            check=True,
            capture_output=True,
            timeout=900,
        )
        tmp.replace(BASE_ROOTFS)
    return BASE_ROOTFS


def push_base_images(podman: Podman, registry: str) -> dict[str, str]:
    """Push a Python base and a tiny busybox base into the registry; returns their refs."""
    py = f"{registry}/pybase:bookworm"
    podman("import", "-q", str(base_rootfs()), "localhost/pybase:bookworm")
    podman("push", "-q", "--tls-verify=false", "localhost/pybase:bookworm", py)
    tiny = f"{registry}/tiny:1"
    ctx = podman.root / "tiny"
    ctx.mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "Containerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n'
    )
    podman("build", "-q", "-t", "localhost/tiny:1", str(ctx))
    podman("push", "-q", "--tls-verify=false", "localhost/tiny:1", tiny)
    return {"python": py, "tiny": tiny}


@contextmanager
def local_services(root: Path) -> Iterator[tuple[Registry, Podman, dict[str, str]]]:
    """A registry, podman configured for it, and the base images pushed: for tests and benches."""
    registry = Registry(root / "registry")
    podman = Podman(root / "podman", [registry.host])
    try:
        yield registry, podman, push_base_images(podman, registry.host)
    finally:
        podman.stop()
        registry.stop()
