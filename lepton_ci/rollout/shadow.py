"""A shadow rollout's run on the target: the candidate beside the serving revision, a copy of
every live request, its answers compared with the serving revision's, and the verdict.

The steps, on a target that can mirror (`Mirrors`, the podman splitter):
1. the candidate runs as the `canary` track, receiving no requests, and must be ready;
2. a comparator (rollout/comparator.py) starts on loopback and the splitter mirrors every
   request to it; clients are answered by the serving revision alone, as before;
3. after `rollout.requests` compared requests, or `rollout.timeout` seconds, the mirror stops
   and the candidate is removed, whatever happened (an error, Ctrl-C) on the way.
Nothing the candidate answers reaches a client: its answers go to the comparator only.
What is kept (the history's revision, the result in git) is deploy/shadowing.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lepton_ci.core.config import DeployEnvironment
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.shadows import ShadowError, ShadowResult
from lepton_ci.rollout.comparator import Comparator, Tally


@runtime_checkable
class Mirrors(Protocol):
    """A target that runs a candidate track and can copy every request of an environment to
    an address of lepton-ci's (the comparator), answers thrown away."""

    def apply_canary(self, name: str, text: str) -> list[str]: ...
    def wait(self, text: str, budget: float, ready_url: str | None) -> float: ...
    def canary_url(self, name: str) -> str | None: ...
    def remove_canary(self, name: str) -> None: ...
    def mirror_to(self, name: str, address: str | None) -> None:
        """Mirror every request to `address` ("127.0.0.1:PORT"); None stops mirroring."""
        ...

    def stable_url(self, name: str) -> str | None:
        """Where the serving track answers alone (not through the splitter)."""
        ...


def not_comparable(tally: Tally) -> str:
    """`1158 not comparable (serving: HTTP 404)`: how many, and the commonest why, which is
    what a person has to fix (requests the serving revision itself refuses compare nothing)."""
    n = sum(tally.incomparable.values())
    why = max(tally.incomparable.items(), key=lambda kv: kv[1])[0] if n else ""
    return f"{n} not comparable" + (f" ({why[:80]})" if why else "")


def judge(tally: Tally, env: DeployEnvironment, *, finished: bool) -> tuple[bool, str]:
    """The verdict on what was compared, and why. Pure: tested on known tallies."""
    r = env.rollout
    if tally.compared < r.requests:
        why = (
            f"only {tally.compared} of {r.requests} requests compared within "
            f"{r.timeout:g} s ({tally.seen} mirrored"
            + (f", {not_comparable(tally)}" if tally.incomparable else "")
            + (f", {tally.dropped} not taken (the pace, or a full queue)" if tally.dropped else "")
            + ")"
        )
        return False, why if not finished else f"{why}; not enough to judge"
    if r.max_error is not None:
        mae = tally.mean_abs_error
        if tally.candidate_errors:
            return False, (
                f"the candidate failed {tally.candidate_errors} of {tally.compared} requests "
                "the serving revision answered"
            )
        if mae is None or mae > r.max_error:
            return False, f"mean absolute error {mae} above max_error {r.max_error:g}"
        return True, f"mean absolute error {mae:.6g} within max_error {r.max_error:g}"
    bound = r.agreement if r.agreement is not None else 0.98
    agreement = tally.agreement or 0.0
    if agreement < bound:
        return False, f"agreement {agreement:.4f} below min_agreement {bound:g}"
    return True, f"agreement {agreement:.4f} at or above min_agreement {bound:g}"


def result_of(
    tally: Tally,
    env: DeployEnvironment,
    *,
    model: str,
    env_name: str,
    version: str,
    record_digest: str,
    image: str,
    serving_version: str,
    verdict: tuple[bool, str],
    seconds: float,
    started_at: str,
    finished_at: str,
    revision: int | None,
    who: str = "",
    run_url: str = "",
) -> ShadowResult:
    r = env.rollout
    regression = r.max_error is not None
    return ShadowResult(
        model=model,
        env=env_name,
        version=version,
        record_digest=record_digest,
        image=image,
        serving_version=serving_version,
        kind="regression" if regression else "classification",
        verdict="pass" if verdict[0] else "fail",
        reason=verdict[1],
        wanted=r.requests,
        seen=tally.seen,
        compared=tally.compared,
        predictions=tally.predictions,
        agreed=tally.agreed,
        agreement=None if regression else tally.agreement,
        min_agreement=None if regression else r.agreement,
        mean_abs_error=tally.mean_abs_error if regression else None,
        max_abs_error=tally.max_abs_error if regression and tally.predictions else None,
        max_error=r.max_error,
        candidate_errors=tally.candidate_errors,
        incomparable=tally.incomparable,
        dropped=tally.dropped,
        examples=tally.examples,
        seconds=round(seconds, 3),
        started_at=started_at,
        finished_at=finished_at,
        revision=revision,
        who=who,
        run_url=run_url,
    )


@dataclass
class Observed:
    tally: Tally
    finished: bool  # `requests` were compared before the timeout


def observe(
    target: Mirrors,
    name: str,
    text: str,
    env: DeployEnvironment,
    *,
    log: Callable[[str], None] = print,
    comparator: Callable[..., Comparator] = Comparator,
    progress_every: float = 10.0,
) -> Observed:
    """Run the candidate (`text`, rendered for the `canary` track) beside the serving track
    of `name`, mirror live requests to a comparator until `rollout.requests` are compared or
    `rollout.timeout` passes; then stop the mirror and remove the candidate, always."""
    r = env.rollout
    comp: Comparator | None = None
    try:
        try:
            skipped = target.apply_canary(name, text)
            if skipped:
                log(f"shadow: the target skips {', '.join(skipped)}")
            url, stable = target.canary_url(name), target.stable_url(name)
            if url is None or stable is None:
                raise ShadowError("the target cannot reach the candidate and the serving track")
            target.wait(text, env.rollout_timeout, url + env.readiness_path)
        except LeptonError as e:
            raise ShadowError(
                f"the candidate did not come up beside the serving revision: {e.message}",
                hint="fix the release; nothing changed for clients",
            ) from None
        comp = comparator(url, stable, wanted=r.requests, regression=r.max_error is not None)
        address = comp.start()
        target.mirror_to(name, address)
        log(f"shadow: comparing {r.requests} mirrored requests within {r.timeout:g} s")
        last = [time.monotonic()]
        running = comp

        def progress() -> None:
            if time.monotonic() - last[0] >= progress_every:
                last[0] = time.monotonic()
                t = running.snapshot()
                extra = f", {not_comparable(t)}" if t.incomparable else ""
                log(f"shadow: {t.compared}/{r.requests} compared ({t.seen} mirrored{extra})")

        finished = comp.wait(r.timeout, progress)
        return Observed(comp.snapshot(), finished)
    finally:
        try:
            target.mirror_to(name, None)
        finally:
            if comp is not None:
                comp.stop()
            target.remove_canary(name)
