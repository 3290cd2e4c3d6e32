"""The container engine of the `dockerfile` builder (Docker Engine API), and its failures.

The client is made here, in the one command that needs it (the docker SDK is a heavy import),
and any failure to reach the engine becomes one error that says what to start or set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from lepton_ci.core import extras
from lepton_ci.core.errors import EngineUnavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"
TIMEOUT = 300  # seconds per API call: a build step or a push can be slow, never endless


def host_of(env: Mapping[str, str]) -> str:
    return env.get("DOCKER_HOST") or DEFAULT_HOST


def connect(env: Mapping[str, str]) -> Any:
    """A docker.DockerClient for DOCKER_HOST (else the default socket), its API version
    asked of the engine now, so that an engine that is not there is said at once."""
    extras.require("image")
    import docker

    host = host_of(env)
    with reachable(host):
        return docker.DockerClient(base_url=host, timeout=TIMEOUT)


@contextmanager
def reachable(host: str) -> Iterator[None]:
    """Turn "no engine there" (no socket, connection refused, a timeout, an engine that is
    not a Docker API) into EngineUnavailable; the engine's own answers pass through."""
    import docker.errors
    import requests

    try:
        yield
    except (docker.errors.APIError, docker.errors.BuildError):
        raise
    except (docker.errors.DockerException, requests.RequestException, OSError) as e:
        raise unavailable(host, e) from None


def unavailable(host: str, cause: BaseException) -> EngineUnavailable:
    how = "DOCKER_HOST" if host != DEFAULT_HOST else "the default socket (DOCKER_HOST unset)"
    return EngineUnavailable(
        f"no container engine answers at {host}, {how}: {_first_line(cause)}",
        hint="start Docker, or podman's Docker-compatible service (`podman system service "
        "--time=0 unix:///tmp/podman.sock` and `export DOCKER_HOST=unix:///tmp/podman.sock`); "
        "or build without an engine: the `layers` builder (`image.base` in lepton.yaml)",
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
