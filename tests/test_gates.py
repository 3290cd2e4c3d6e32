import pytest

from lepton_ci.core.config import Gate
from lepton_ci.run.gates import diff_params, evaluate, evaluate_metric, verdict

pytestmark = pytest.mark.unit


def one(cand, base, **gate):
    return evaluate_metric("m", cand, base, Gate(**gate))


def test_first_version_has_no_baseline_and_passes_bounds():
    r = one(0.95, None, min=0.9)
    assert (r.status, r.verdict, r.delta) == ("new", "pass", None)


def test_absolute_bounds():
    assert one(0.8, None, min=0.9).verdict == "fail"
    assert one(120.0, None, direction="lower", max=100).verdict == "fail"
    assert "below the minimum" in one(0.8, None, min=0.9).reasons[0]


def test_higher_is_better_regression_absolute():
    r = one(0.90, 0.95, max_regression=0.01)
    assert (r.status, r.verdict) == ("regressed", "fail")
    assert r.delta == pytest.approx(-0.05)
    assert one(0.945, 0.95, max_regression=0.01).verdict == "pass"


def test_lower_is_better_regression_relative():
    r = one(12.0, 10.0, direction="lower", max_regression_pct=10)
    assert (r.status, r.verdict) == ("regressed", "fail")
    assert "20%" in r.reasons[0]
    better = one(8.0, 10.0, direction="lower", max_regression_pct=10)
    assert (better.status, better.verdict) == ("improved", "pass")


def test_noise_floor_counts_as_unchanged_and_never_fails():
    r = one(0.9495, 0.95, max_regression=0.0001, noise=0.001)
    assert (r.status, r.verdict) == ("unchanged", "pass")


def test_relative_regression_from_zero_baseline_fails():
    assert one(-1.0, 0.0, max_regression_pct=5).verdict == "fail"


def test_informational_never_fails_but_keeps_reasons():
    r = one(0.1, 0.9, min=0.5, max_regression=0.01, informational=True)
    assert r.verdict == "info"
    assert all(x.startswith("(informational)") for x in r.reasons)


def test_missing_gated_metric_fails_and_ungated_is_info():
    results = evaluate({"b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": Gate(min=0)})
    by = {r.metric: r for r in results}
    assert (by["a"].status, by["a"].verdict) == ("missing", "fail")
    assert by["b"].verdict == "info"
    assert verdict(results) == "fail"
    removed = evaluate({}, {"c": 1.0}, {})
    assert removed[0].status == "removed"


def test_order_is_gates_first_then_other_metrics():
    results = evaluate({"z": 1.0, "a": 1.0, "g": 1.0}, None, {"g": Gate()})
    assert [r.metric for r in results] == ["g", "a", "z"]


def test_params_diff():
    changes = diff_params({"lr": 0.1, "new": 1, "same": 2}, {"lr": 0.2, "old": 3, "same": 2})
    assert [(c.name, c.status) for c in changes] == [
        ("lr", "changed"),
        ("new", "added"),
        ("old", "removed"),
    ]
    assert diff_params({"a": 1}, None) == []
