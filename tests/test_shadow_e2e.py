"""A shadow rollout end to end, through the Deployer, on the real nginx splitter: model servers
on loopback as the two tracks, a client sending live requests all along. The candidate's
answers never reach the client, the verdict comes from what each track answered, the history
and git keep it, and the gate allows or refuses the deploy that follows."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from lepton_ci.core import shadows
from lepton_ci.core.config import DeployConfig
from lepton_ci.core.context import Context
from lepton_ci.core.shadows import ShadowError
from lepton_ci.deploy import shadowing
from lepton_ci.deploy.deployer import Deployer
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import FileStore
from lepton_ci.rollout.splitter import SplitterError
from tests.support.answers import ModelServer, label
from tests.support.loopback_target import LoopbackTarget
from tests.support.services import PortTaken, on_free_port

pytestmark = pytest.mark.e2e

V1 = "r/digits@sha256:" + "1" * 64
V2 = "r/digits@sha256:" + "2" * 64


def release(version: str, image: str, digest: str) -> Release:
    return Release("digits", version, image, "sha256:" + digest * 64, 0, who="tester")


@dataclass
class Client:
    """Live traffic through the splitter: every answer kept with the input it answered."""

    url: str
    answers: list[tuple[list[float], int, bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        http = requests.Session()
        rng = random.Random(24)  # noqa: S311 - not periodic, so the pace cannot alias with it
        while not self.stop.is_set():
            x = [float(rng.randrange(50)), 1.0, 2.0]
            r = http.post(self.url, json={"instances": [x]}, timeout=10)
            self.answers.append((x, r.status_code, r.content))


@dataclass
class World:
    deployer: Deployer
    target: LoopbackTarget
    client: Client
    ctx: Context


@pytest.fixture
def world(tmp_path: Path, toy_repo: Path) -> Iterator[Callable[..., World]]:
    made: list[tuple[LoopbackTarget, Client, threading.Thread]] = []

    def make(candidate: Callable[[], ModelServer], **rollout: object) -> World:
        def start(port: int) -> tuple[Deployer, LoopbackTarget]:
            deploy = DeployConfig(
                environments={  # type: ignore[dict-item]
                    "staging": {
                        "host_port": port,
                        "checks": {"count": 1, "interval": 0},
                        "rollout": {"strategy": "shadow", "requests": 40, **rollout},
                    }
                }
            )
            target = LoopbackTarget(tmp_path / "state", port, {V1: ModelServer, V2: candidate})
            d = Deployer(
                "digits",
                "staging",
                deploy,
                tmp_path,
                target=target,
                store=FileStore(tmp_path / "s"),
            )
            try:
                d.deploy(release("1.0.0", V1, "a"))
            except SplitterError as e:
                if "Address already in use" in e.message:
                    raise PortTaken(e.message) from e
                raise
            return d, target

        d, target = on_free_port(start)
        client = Client(f"http://127.0.0.1:{d.env.host_port}/predict")
        t = threading.Thread(target=client.run, daemon=True)
        t.start()
        made.append((target, client, t))
        return World(d, target, client, Context.load(cwd=toy_repo))

    yield make
    for target, client, t in made:
        client.stop.set()
        t.join(10)
        target.remove("digits-staging")


def only_stable_answered(client: Client) -> None:
    """Every answer the client got is the serving model's, for its own input."""
    client.stop.set()
    assert len(client.answers) > 40
    for x, status, body in client.answers:
        assert status == 200, body
        assert json.loads(body) == {"predictions": [label(x)]}


def test_an_agreeing_candidate_passes_and_the_deploy_is_then_allowed(world) -> None:
    w = world(ModelServer, timeout=60)
    rel = release("1.1.0", V2, "b")
    with pytest.raises(ShadowError, match="no shadow result of it is recorded"):
        shadowing.require(w.ctx, w.deployer, rel)
    kept = shadowing.run_and_keep(w.ctx, w.deployer, rel)
    r = kept.result
    assert (r.verdict, r.compared, r.agreement, r.candidate_errors) == ("pass", 40, 1.0, 0)
    assert r.seen >= 40 and r.serving_version == "1.0.0"
    assert w.target.calls[-4:] == ["apply_canary", "mirror_to on", "mirror_to off", "remove_canary"]
    assert w.target.canary is None  # the candidate is gone
    revs = w.deployer.history()
    assert [(x.status, x.description) for x in revs] == [
        ("deployed", "deploy 1.0.0"),
        ("shadowed", "shadow 1.1.0 beside 1.0.0"),
    ]
    assert shadows.read(w.ctx.git, rel.record_digest)["staging"] == r
    shadowing.require(w.ctx, w.deployer, rel)  # the deploy may go on now
    only_stable_answered(w.client)


def test_a_candidate_answering_garbage_fails_and_never_reaches_a_client(world) -> None:
    w = world(
        lambda: ModelServer(raw=lambda body: (200, b'{"predictions": ["GARBAGE"]}')), timeout=60
    )
    rel = release("1.1.0", V2, "c")
    with pytest.raises(ShadowError, match=r"shadow of 1\.1\.0 failed: agreement 0\.0000 below"):
        shadowing.run_and_keep(w.ctx, w.deployer, rel)
    found = shadows.read(w.ctx.git, rel.record_digest)["staging"]
    assert (found.verdict, found.compared, found.agreed) == ("fail", 40, 0)
    assert found.examples and "1 of 1 differ" in found.examples[0]
    assert w.deployer.history()[-1].status == "failed"
    with pytest.raises(ShadowError, match="its last shadow failed"):
        shadowing.require(w.ctx, w.deployer, rel)
    only_stable_answered(w.client)


def test_a_candidate_that_disagrees_on_some_inputs_is_held_to_min_agreement(world) -> None:
    def candidate() -> ModelServer:  # wrong where the first value is even: half the inputs
        return ModelServer(lambda xs: [label(x) + (1 if int(x[0]) % 2 == 0 else 0) for x in xs])

    w = world(candidate, min_agreement=0.95, timeout=60)
    with pytest.raises(ShadowError, match=r"below min_agreement 0\.95"):
        shadowing.run_and_keep(w.ctx, w.deployer, release("1.1.0", V2, "d"))
    found = shadows.read(w.ctx.git, "sha256:" + "d" * 64)["staging"]
    assert found.agreement is not None and 0.2 <= found.agreement <= 0.8  # about 20 of 40
    only_stable_answered(w.client)


def test_regression_measures_the_error_between_the_tracks(world) -> None:
    def stable() -> ModelServer:
        return ModelServer(lambda xs: [float(sum(x)) for x in xs])

    def candidate() -> ModelServer:
        return ModelServer(lambda xs: [float(sum(x)) + 0.25 for x in xs])

    w = world(candidate, max_error=0.3, timeout=60)
    w.target.models[V1] = stable
    w.deployer.deploy(release("1.0.0", V1, "a"))  # the stable answers numbers now
    kept = shadowing.run_and_keep(w.ctx, w.deployer, release("1.1.0", V2, "e"))
    r = kept.result
    assert r.kind == "regression" and r.verdict == "pass"
    assert r.mean_abs_error == pytest.approx(0.25) and r.max_abs_error == pytest.approx(0.25)


def test_too_little_traffic_within_the_timeout_fails_and_says_how_much_was_seen(world) -> None:
    w = world(ModelServer, requests=100000, timeout=2)
    with pytest.raises(ShadowError, match=r"only \d+ of 100000 requests compared within 2 s"):
        shadowing.run_and_keep(w.ctx, w.deployer, release("1.1.0", V2, "f"))
    assert w.target.canary is None and w.target.calls[-1] == "remove_canary"
