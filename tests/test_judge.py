"""SLO queries split by revision: the matcher lands in every selector and nowhere else."""

import sys

import pytest

from lepton_ci.rollout.judge import PromQLError, with_label

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            '(sum(rate(digits_requests_total{path="/predict",code=~"5.."}[1m])) or vector(0))'
            ' / sum(rate(digits_requests_total{path="/predict"}[1m]))',
            '(sum(rate(digits_requests_total{path="/predict",code=~"5..",revision="7"}[1m])) or'
            ' vector(0)) / sum(rate(digits_requests_total{path="/predict",revision="7"}[1m]))',
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(digits_predict_seconds_bucket[1m])))",
            'histogram_quantile(0.95, sum by (le) (rate(digits_predict_seconds_bucket{revision="7"}'
            "[1m])))",
        ),
        (
            '{__name__=~"a.*"} > bool 1 and on(job) up',
            '{__name__=~"a.*",revision="7"} > bool 1 and on(job) up{revision="7"}',
        ),
        (  # strings and comments are not selectors; `$1` and `{x}` stay as written
            'label_replace(up, "a", "$1", "b", "(.*)") # c {x}',
            'label_replace(up{revision="7"}, "a", "$1", "b", "(.*)") # c {x}',
        ),
        (  # a `}` inside a label value, a trailing comma, a subquery
            'sum(rate(x{a="}",}[5m:1m]))',
            'sum(rate(x{a="}",revision="7"}[5m:1m]))',
        ),
        ("rate(x[5m] offset 1m) * 1e-3", 'rate(x{revision="7"}[5m] offset 1m) * 1e-3'),
        (
            "sum(x) by (job) / count without (a) (y)",
            'sum(x{revision="7"}) by (job) / count without (a) (y{revision="7"})',
        ),
        ("x @ start()", 'x{revision="7"} @ start()'),
    ],
)
def test_every_selector_gets_the_revision(query: str, expected: str) -> None:
    assert with_label(query, "7") == expected


def test_a_query_that_selects_by_revision_already_is_refused() -> None:
    with pytest.raises(PromQLError, match="already selects by `revision`"):
        with_label('up{revision="3"}', "7")


@pytest.mark.parametrize("query", ["vector(1)", 'up{a="b', "sum(x"])
def test_no_selector_or_broken_promql_is_an_error(query: str) -> None:
    with pytest.raises(PromQLError):
        with_label(query, "7")


def test_the_value_is_a_revision_number() -> None:
    with pytest.raises(PromQLError, match="not a number"):
        with_label("up", '1"} or vector(1) #')


@pytest.fixture(params=["with the parser", "without the parser"])
def parser(request, monkeypatch):
    """promql-parser is a test extra only: a user's install splits queries without it."""
    if request.param == "without the parser":
        monkeypatch.setitem(sys.modules, "promql_parser", None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [  # PromQL keywords ignore case: `BY (le)` is a label list, not a function call on `le`
        (
            "sum BY (le) (rate(x[5m])) / ignoring(a) GROUP_LEFT(b) y",
            'sum BY (le) (rate(x{revision="7"}[5m])) / ignoring(a) GROUP_LEFT(b) y{revision="7"}',
        ),
        ("x and ON(job) y", 'x{revision="7"} and ON(job) y{revision="7"}'),
        ('x{revision_old="1",a="revision=2"}', 'x{revision_old="1",a="revision=2",revision="7"}'),
    ],
)
def test_keywords_in_capitals_and_lookalike_labels(parser, query: str, expected: str) -> None:
    assert with_label(query, "7") == expected


@pytest.mark.parametrize(
    "query", ['x{revision="3"}', 'x{a="}", revision=~"3|4"}', 'y or {"x", "revision"!="1"}']
)
def test_a_revision_matcher_is_refused_even_without_the_parser(parser, query: str) -> None:
    with pytest.raises(PromQLError, match="already selects by `revision`"):
        with_label(query, "7")
