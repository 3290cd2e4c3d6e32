import json

import pytest

from lepton_ci.core.errors import InputError
from lepton_ci.run.metrics import read_metrics, read_params

pytestmark = pytest.mark.unit


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_nested_metrics_flatten_json_and_yaml(tmp_path):
    a = write(tmp_path, "m.json", json.dumps({"acc": 1, "lat": {"p95": 2.5}}))
    b = write(tmp_path, "m.yaml", "f1: 0.5\n")
    assert read_metrics([a, b]) == {"acc": 1.0, "lat.p95": 2.5, "f1": 0.5}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"acc": NaN}', "NaN and infinity"),
        ('{"acc": Infinity}', "NaN and infinity"),
        ('{"acc": "high"}', "'high', not a number"),
        ('{"acc": true}', "True, not a number"),
        ('{"acc": null}', "None, not a number"),
        ("[1, 2]", "must be a mapping"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_metric_values_name_file_and_key(tmp_path, text, needle):
    p = write(tmp_path, "metrics.json", text)
    with pytest.raises(InputError) as e:
        read_metrics([p])
    assert str(p) in str(e.value)
    assert needle in str(e.value)


def test_a_metrics_file_that_is_not_utf8_is_an_input_error(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_bytes(b'{"acc": "\xff"}')
    with pytest.raises(InputError, match=r"metrics.json:1: not UTF-8 text .* must be UTF-8"):
        read_metrics([p])


def test_missing_metrics_file_says_fix(tmp_path):
    with pytest.raises(InputError) as e:
        read_metrics([tmp_path / "nope.json"])
    assert "metrics file not found" in str(e.value)
    assert "evaluate command" in str(e.value)


def test_params_collision_between_files(tmp_path):
    a = write(tmp_path, "a.yaml", "train: {lr: 1}\n")
    b = write(tmp_path, "b.json", '{"train": {"lr": 2}}')
    with pytest.raises(InputError, match=r"`train\.lr` is also set in"):
        read_params([a, b])
    assert read_params([a]) == {"train.lr": 1}


def test_a_param_holding_a_mapping_with_a_key_that_is_not_text_is_a_clear_error(tmp_path):
    """Found by the CLI fuzz: `[{'': 1, null: 1}]` in params.yaml reached the record's JSON
    (keys sorted) and crashed there with exit 70."""
    p = tmp_path / "params.yaml"
    p.write_text("grid:\n  - {'': 1, null: 1}\n")
    with pytest.raises(InputError, match=r"param `grid` holds a mapping whose key None is not"):
        read_params([p])
    p.write_text("grid:\n  - {'a': 1, '1': 2}\n")
    assert read_params([p]) == {"grid": [{"a": 1, "1": 2}]}
