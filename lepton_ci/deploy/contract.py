"""What the deployer asks of a target and of a revision store, and how a target says no.

Targets (podman pods, a Kubernetes cluster) and stores (files, ConfigMaps) implement these;
the deployer only ever sees this contract, so neither target imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Staging(Protocol):
    """A target that plays a new revision beside the serving one and moves requests to it
    only once it is checked (podman behind its splitter). Without it, `apply` replaces what
    serves and the checks run against the environment's address."""

    def staged_url(self, name: str) -> str | None:
        """Where the revision just applied answers on its own, before it serves."""
        ...

    def promote(self, name: str) -> None:
        """Give it every request without dropping one; retire what served before."""
        ...

    def discard(self, name: str) -> None:
        """Drop it: it failed, and what served goes on serving."""
        ...


@runtime_checkable
class Tracks(Protocol):
    """A target that runs a candidate revision beside the serving one and splits requests
    between them (canary, shadow). Object names of the candidate's track end in `-canary`.

    The address clients use (`host_port`, `url`) never changes: on podman a splitter holds it;
    on Kubernetes a Service or a Gateway API HTTPRoute does."""

    def apply_canary(self, name: str, text: str) -> list[str]:
        """Run the candidate's manifests (rendered with track `canary`) beside the serving
        ones, receiving no requests yet; returns what was skipped, as `apply` does."""
        ...

    def set_weight(self, name: str, percent: int, *, mirror: bool = False) -> int:
        """Give the candidate `percent` of the requests (0-100), or with `mirror` a copy of
        every request whose answer is thrown away (percent 0). Returns the share actually in
        effect (replica-proportional splitting is coarser than the step asked for)."""
        ...

    def canary_url(self, name: str) -> str | None:
        """Where the deploy checks reach the candidate alone, or None if they cannot."""
        ...

    def served(self, name: str) -> dict[str, int] | None:
        """Requests answered by each track (`stable`, `canary`) since the candidate was
        applied, from the splitter's own counters; None where the target cannot count."""
        ...

    def remove_canary(self, name: str) -> None:
        """Send every request to the serving track, then remove the candidate's objects."""
        ...


class Store(Protocol):
    """Where revisions are kept, and the one-deploy-at-a-time lock."""

    def list(self) -> list[Revision]: ...
    def save(self, rev: Revision) -> None: ...
    # `on_wait(holder)` is called once if another deploy holds the lock, before waiting for it.
    def lock(
        self, timeout: float, on_wait: Callable[[str], None] | None = None
    ) -> AbstractContextManager[None]: ...
