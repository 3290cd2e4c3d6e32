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


# Boundaries, with numbers that are exact in binary: a bound is inclusive, a regression of
# exactly the allowed amount passes, a change of exactly the noise is unchanged.
@pytest.mark.parametrize(
    ("cand", "gate", "verdict_", "reason"),
    [
        (0.5, {"min": 0.5}, "pass", None),
        (0.25, {"min": 0.5}, "fail", "0.25 is below the minimum 0.5"),
        (0.5, {"max": 0.5}, "pass", None),
        (0.75, {"max": 0.5}, "fail", "0.75 is above the maximum 0.5"),
    ],
)
def test_absolute_bounds_are_inclusive(cand, gate, verdict_, reason):
    r = one(cand, None, **gate)
    assert (r.status, r.verdict, r.reasons) == ("new", verdict_, [reason] if reason else [])


@pytest.mark.parametrize(
    ("cand", "base", "gate", "status", "verdict_"),
    [
        (1.5, 1.0, {"noise": 0.5}, "unchanged", "pass"),
        (1.5, 1.0, {"noise": 0.25}, "improved", "pass"),
        (0.5, 1.0, {"noise": 0.5, "max_regression": 0.0}, "unchanged", "pass"),
        (1.0, 1.0, {}, "unchanged", "pass"),
        (0.5, 1.0, {"max_regression": 0.5}, "regressed", "pass"),
        (0.25, 1.0, {"max_regression": 0.5}, "regressed", "fail"),
        (1.0, 2.0, {"max_regression_pct": 50}, "regressed", "pass"),
        (1.0, 2.0, {"max_regression_pct": 49}, "regressed", "fail"),
        (-3.0, -2.0, {"max_regression_pct": 50}, "regressed", "pass"),
        (-3.0, -2.0, {"max_regression_pct": 49}, "regressed", "fail"),
        (1.5, 1.0, {"direction": "lower", "max_regression": 0.5}, "regressed", "pass"),
        (1.75, 1.0, {"direction": "lower", "max_regression": 0.5}, "regressed", "fail"),
        (0.5, 1.0, {"direction": "lower", "max_regression": 0.0}, "improved", "pass"),
    ],
)
def test_regression_bounds_and_noise(cand, base, gate, status, verdict_):
    r = one(cand, base, **gate)
    assert (r.status, r.verdict) == (status, verdict_), r.reasons


def test_regression_reasons_say_by_how_much():
    assert one(0.25, 1.0, max_regression=0.5).reasons == [
        "regressed by 0.75, more than the allowed 0.5"
    ]
    assert one(1.0, 2.0, max_regression_pct=25).reasons == [
        "regressed by 50%, more than the allowed 25%"
    ]


def test_deltas_are_signed_and_relative_to_the_baseline_size():
    r = one(-1.0, -2.0, noise=0.0)
    assert (r.delta, r.delta_pct, r.status) == (1.0, 50.0, "improved")
    r = one(3.0, 4.0, direction="lower")
    assert (r.delta, r.delta_pct, r.status, r.direction) == (-1.0, -25.0, "improved", "lower")
    assert one(1.0, 0.0).delta_pct is None


@pytest.mark.parametrize(
    ("base", "gate", "status", "verdict_", "reasons"),
    [
        (1.0, None, "removed", "info", []),
        (None, None, "missing", "info", []),
        (1.0, Gate(min=0), "missing", "fail", ["metric is missing from the metrics files"]),
        (None, Gate(min=0), "missing", "fail", ["metric is missing from the metrics files"]),
        (1.0, Gate(min=0, informational=True), "missing", "info", []),
    ],
)
def test_a_missing_metric(base, gate, status, verdict_, reasons):
    r = evaluate_metric("m", None, base, gate)
    assert (r.status, r.verdict, r.reasons, r.candidate, r.baseline) == (
        status,
        verdict_,
        reasons,
        None,
        base,
    )


def test_a_key_gate_is_marked_and_an_ungated_metric_never_fails():
    assert one(0.5, 1.0, key=True).key is True
    r = evaluate_metric("m", 0.0, 1.0, None)
    assert (r.verdict, r.status, r.key, r.direction) == ("info", "regressed", False, "higher")


def test_verdict_fails_on_any_failure_only():
    results = evaluate({"a": 0.1, "b": 0.9}, None, {"a": Gate(min=0.5, informational=True)})
    assert verdict(results) == "pass"
    results = evaluate({"a": 0.1, "b": 0.9}, None, {"b": Gate(min=0.95)})
    assert verdict(results) == "fail"
    assert verdict([]) == "pass"


def test_params_diff_in_every_direction():
    changes = diff_params({"a": 1, "b": 2, "d": 4}, {"b": 3, "c": 3, "d": 4})
    assert [(c.name, c.baseline, c.candidate, c.status) for c in changes] == [
        ("a", None, 1, "added"),
        ("b", 3, 2, "changed"),
        ("c", 3, None, "removed"),
    ]
    assert diff_params({"a": 1}, None) == []
