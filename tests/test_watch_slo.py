"""An SLO's evidence as JSON and text, and a bounded SLO against a real Prometheus."""

import math

import pytest

from lepton_ci.core.config import SLO
from lepton_ci.core.prometheus import Prometheus
from lepton_ci.watch import slo
from tests.support.prometheus import PrometheusServer


@pytest.mark.unit
def test_evidence_of_infinite_and_missing_values_reads_in_json_and_text():
    E = slo.Evaluation
    assert E("s", "breach", -math.inf).as_dict()["value"] == "-Inf"
    assert E("s", "breach", math.inf).as_dict()["value"] == "+Inf"
    assert E("s", "ok", 0.5).as_dict() == {
        "slo": "s",
        "status": "ok",
        "value": 0.5,
        "bound": "",
        "detail": "",
    }
    assert E("s", "no-data").text() == "s: no-data — (bound —)"
    assert E("s", "breach", 0.25, ">= 0.5 <= 1", "a\nb").text() == (
        "s: breach 0.25 (bound >= 0.5 <= 1) (a\\nb)"  # one line, whatever the detail
    )


@pytest.mark.e2e
def test_query_slo_states_with_both_bounds_show_both(tmp_path):
    server = PrometheusServer(tmp_path, targets=[]).start()
    try:
        q = SLO.model_validate({"name": "s", "query": "vector(2)", "min": 1, "max": 3})
        ev = slo.evaluate(Prometheus(server.url), q)
    finally:
        server.stop()
    assert (ev.status, ev.value, ev.bound) == ("ok", 2.0, ">= 1 <= 3")
