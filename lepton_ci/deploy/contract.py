"""What the deployer asks of a target and of a revision store, and how a target says no.

Targets (podman pods, a Kubernetes cluster) and stores (files, ConfigMaps) implement these;
the deployer only ever sees this contract, so neither target imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from lepton_ci.core.errors import LeptonError
from lepton_ci.deploy.releases import Revision


class RolloutFailed(LeptonError):
    """The new pods did not come up within the rollout budget."""


class Target(Protocol):
    """Where releases run: podman pods on one host, or a Kubernetes cluster."""

    def apply(self, name: str, text: str) -> list[str]: ...
    def wait(self, text: str, budget: float, ready_url: str | None) -> float: ...
    def remove(self, name: str) -> None: ...
    def scale_to_zero(self, name: str) -> None: ...


class Store(Protocol):
    """Where revisions are kept, and the one-deploy-at-a-time lock."""

    def list(self) -> list[Revision]: ...
    def save(self, rev: Revision) -> None: ...
    # `on_wait(holder)` is called once if another deploy holds the lock, before waiting for it.
    def lock(
        self, timeout: float, on_wait: Callable[[str], None] | None = None
    ) -> AbstractContextManager[None]: ...
