"""A deploy target whose "pods" are real HTTP model servers on loopback, behind the real nginx
splitter: what a shadow rollout needs of a target (`rollout.shadow.Mirrors`), in a second.

`apply` runs the server of the image the manifests name (from `models`, image -> ModelServer
factory) as the stable track; `apply_canary` runs the candidate's beside it; `mirror_to` has
the splitter copy every request to an address. The podman target does the same with pods.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.rollout.splitter import Splitter
from tests.support.answers import ModelServer

_IMAGE = re.compile(r"image: (\S+@sha256:[0-9a-f]{64})")


class LoopbackTarget:
    def __init__(
        self, state_dir: Path, listen: int, models: dict[str, Callable[[], ModelServer]]
    ) -> None:
        self.splitter = Splitter(state_dir, "digits-staging", listen)
        self.models = models
        self.stable: ModelServer | None = None
        self.canary: ModelServer | None = None
        self.calls: list[str] = []

    def _run(self, text: str) -> ModelServer:
        m = _IMAGE.search(text)
        if m is None or m[1] not in self.models:
            raise RolloutFailed(f"no model server for the image in {text[:80]!r}")
        return self.models[m[1]]().__enter__()

    # -- Target ------------------------------------------------------------------------------

    def apply(self, name: str, text: str) -> list[str]:
        self.calls.append("apply")
        old, self.stable = self.stable, self._run(text)
        self.splitter.configure(self.stable.address)
        if old is not None:
            old.__exit__()
        return []

    def wait(self, text: str, budget: float, ready_url: str | None) -> float:
        t0 = time.monotonic()
        while ready_url is not None:
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > budget:
                raise RolloutFailed(f"{ready_url} not ready within {budget:g} s")
            time.sleep(0.05)
        return time.monotonic() - t0

    def remove(self, name: str) -> None:
        self.splitter.stop()
        for s in (self.stable, self.canary):
            if s is not None:
                s.__exit__()
        self.stable = self.canary = None

    scale_to_zero = remove

    # -- Mirrors -----------------------------------------------------------------------------

    def apply_canary(self, name: str, text: str) -> list[str]:
        self.calls.append("apply_canary")
        self.canary = self._run(text)
        return []

    def canary_url(self, name: str) -> str | None:
        return self.canary.url if self.canary else None

    def stable_url(self, name: str) -> str | None:
        return self.stable.url if self.stable else None

    def mirror_to(self, name: str, address: str | None) -> None:
        self.calls.append(f"mirror_to {'on' if address else 'off'}")
        assert self.stable is not None
        self.splitter.configure(self.stable.address, mirror=address)

    def remove_canary(self, name: str) -> None:
        self.calls.append("remove_canary")
        if self.canary is not None:
            self.canary.__exit__()
            self.canary = None
