"""The run-cache key: the same inputs give the same key, and every input the run depends on
changes it (a missed one would restore a stale model for a changed run)."""

import pytest

from lepton_ci.core.config import ModelConfig
from lepton_ci.core.record import Environment, Lineage
from lepton_ci.run.cache import inputs_key, key

pytestmark = pytest.mark.unit

CFG = {"train": "python train.py", "evaluate": "python eval.py", "metrics": ["m.json"]}
LINEAGE = {"code_digest": "c" * 64, "data_digest": "d" * 64}
ENV = {"python": "3.11.7", "platform": "linux-x86_64", "packages_digest": "p" * 64}


def make(model="digits", cfg=None, lineage=None, params=None, env=None):
    inputs = inputs_key(
        model,
        ModelConfig.model_validate({**CFG, **(cfg or {})}),
        Lineage.model_validate({**LINEAGE, **(lineage or {})}),
        {"lr": 0.1} if params is None else params,
    )
    return key(
        inputs, Environment.model_validate({**ENV, "packages_source": "uv.lock", **(env or {})})
    )


def test_the_same_inputs_give_the_same_key():
    assert make() == make()
    assert make().startswith("blake3:")
    # what the run does not depend on leaves it alone
    assert make(cfg={"timeout_minutes": 5}) == make()
    assert make(env={"packages_source": "installed"}) == make()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"cfg": {"train": "python train.py --fast"}},
        {"cfg": {"evaluate": "python eval.py --all"}},
        {"cfg": {"env": {"SEED": "1"}}},
        {"cfg": {"outputs": ["model.pkl"]}},
        {"cfg": {"metrics": ["other.json"]}},
        {"lineage": {"code_digest": "e" * 64}},
        {"lineage": {"data_digest": "e" * 64}},
        {"params": {"lr": 0.2}},
        {"params": {}},
        {"env": {"python": "3.12.1"}},
        {"env": {"platform": "linux-aarch64"}},
        {"env": {"packages_digest": "q" * 64}},
    ],
)
def test_every_input_changes_the_key(change):
    assert make(**change) != make()


def test_the_key_is_the_same_across_releases_of_lepton_ci():
    """Keys are stored in records and cache entries: a changed formula (a renamed field, an
    unsorted dump) would silently miss every entry made before. Change it on purpose only."""
    assert make() == "blake3:f5dd34e87d7f2cbf36474e85c9bb31aa3be89adc5e55d5dc85d8f06908a1f237"
    assert make(params={"b": 1, "a": 2}) == make(params={"a": 2, "b": 1})
