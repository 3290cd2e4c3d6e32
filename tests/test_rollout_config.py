"""`deploy.environments.<env>.rollout`: the strategies' settings and the errors a wrong one gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lepton_ci.core.config import RolloutConfig
from lepton_ci.deploy import manifests


def test_defaults_are_all_at_once_with_the_issue_s_steps() -> None:
    r = RolloutConfig()
    assert (r.strategy, r.steps, r.interval) == ("all-at-once", [10, 50, 100], 60.0)
    assert RolloutConfig(strategy="shadow").agreement == 0.98
    assert RolloutConfig(strategy="shadow", max_error=0.5).agreement is None
    assert RolloutConfig(strategy="shadow", min_agreement=0.9).agreement == 0.9


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"steps": [50, 10, 100]}, "must rise strictly and end at 100"),
        ({"steps": [10, 10, 100]}, "must rise strictly"),
        ({"steps": [10, 50]}, "end at 100"),
        ({"steps": [0, 100]}, "greater than or equal to 1"),
        ({"min_agreement": 0.9, "max_error": 0.1}, "not both"),
        ({"min_agreement": 1.5}, "less than or equal to 1"),
        ({"strategy": "blue-green"}, "all-at-once"),
        ({"interval": 0}, "greater than 0"),
    ],
)
def test_a_wrong_rollout_is_refused_with_the_fix(bad: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        RolloutConfig(**bad)  # type: ignore[arg-type]


def test_a_canary_track_renders_apart_from_the_stable_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lepton_ci.core.config import DeployConfig

    deploy = DeployConfig(environments={"staging": {"host_port": 18080}})  # type: ignore[arg-type]
    env = deploy.environments["staging"]
    base = {
        "model": "digits",
        "version": "1.0.0",
        "image": "r/d@sha256:" + "a" * 64,
        "record_digest": "sha256:" + "b" * 64,
        "revision": 3,
    }
    stable = manifests.objects(
        manifests.render("staging", env, deploy, manifests.Release(**base), tmp_path)  # type: ignore[arg-type]
    )
    canary = manifests.objects(
        manifests.render(
            "staging",
            env,
            deploy,
            manifests.Release(**base, track="canary"),
            tmp_path,  # type: ignore[arg-type]
        )
    )
    names = {o["metadata"]["name"] for o in stable}
    assert names == {"digits-staging"}
    assert {o["metadata"]["name"] for o in canary} == {"digits-staging-canary"}
    label = f"{manifests.PREFIX}/track"
    dep = next(o for o in canary if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["metadata"]["labels"][label] == "canary"


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_a_host_port_outside_1_65535_is_refused(port: int) -> None:
    """The splitter's nginx listens on it: 0 used to read as "no host_port" (a confusing
    "needs `url`"), and 70000 reached nginx and podman before anything said no."""
    from lepton_ci.core.config import DeployConfig

    with pytest.raises(ValidationError, match="host_port"):
        DeployConfig.model_validate(
            {"target": "podman", "environments": {"prod": {"host_port": port}}}
        )


@pytest.mark.parametrize("strategy", ["canary", "shadow"])
def test_a_podman_canary_without_host_port_is_refused(strategy: str) -> None:
    """Without host_port there is no splitter: every deploy failed at the canary with
    'a canary needs a revision serving through the splitter', at deploy time, not load."""
    from lepton_ci.core.config import DeployConfig

    with pytest.raises(ValidationError, match="needs `host_port`"):
        DeployConfig.model_validate(
            {
                "target": "podman",
                "environments": {
                    "staging": {"url": "http://127.0.0.1:9", "rollout": {"strategy": strategy}}
                },
            }
        )
