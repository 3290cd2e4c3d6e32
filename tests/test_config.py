import subprocess
import sys
from pathlib import Path

import pytest

from lepton_ci.core import config
from lepton_ci.core.errors import ConfigError

pytestmark = pytest.mark.unit

GOOD = """\
models:
  digits:
    train: python train.py
    evaluate: [python, evaluate.py]
    metrics: [metrics.json]
    gates:
      accuracy: {direction: higher, min: 0.9}
stages: [staging, prod]
"""


def load_text(tmp_path: Path, text: str) -> config.LoadedConfig:
    p = tmp_path / "lepton.yaml"
    p.write_text(text)
    return config.load(p)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    return str(e.value)


def test_good_config_loads_with_defaults(tmp_path):
    cfg = load_text(tmp_path, GOOD)
    name, m = cfg.model(None)
    assert name == "digits"
    assert m.evaluate == ["python", "evaluate.py"]
    assert m.code == ["**/*.py"]
    assert m.gates["accuracy"].min == 0.9
    assert list(cfg.config.stages) == ["staging", "prod"]
    assert cfg.cache_dir() == (tmp_path / ".lepton/cache").resolve()


def test_misspelt_key_names_file_line_path_and_fix(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("metrics: [metrics.json]", "metircs: [m.json]"))
    assert f"{tmp_path / 'lepton.yaml'}:5" in msg
    assert "`models.digits.metircs`: unknown key" in msg
    assert "did you mean `metrics`?" in msg
    # the now-missing real key is reported too, not collapsed into "invalid config"
    assert "`models.digits.metrics`: required key is missing" in msg


def test_misspelt_gate_key(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("direction: higher", "directon: higher"))
    assert "`models.digits.gates.accuracy.directon`: unknown key; did you mean `direction`?" in msg


def test_unknown_top_level_key_lists_known_keys(tmp_path):
    msg = error_of(tmp_path, GOOD + "zzz: 1\n")
    assert "`zzz`: unknown key; known keys: version, models, stages" in msg


def test_wrong_type_names_value(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("min: 0.9", "min: lots"))
    assert "`models.digits.gates.accuracy.min`" in msg
    assert "'lots'" in msg


def test_wrong_enum(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("direction: higher", "direction: up"))
    assert "'higher' or 'lower'" in msg and "(got 'up')" in msg


def test_malformed_yaml_points_at_line(tmp_path):
    msg = error_of(tmp_path, "models:\n  digits:\n    train: [unclosed\n    x: 1\n")
    assert "not valid YAML" in msg
    assert str(tmp_path / "lepton.yaml") + ":" in msg


def test_a_config_that_is_not_utf8_names_its_line(tmp_path):
    p = tmp_path / "lepton.yaml"
    p.write_bytes(b'models:\n  digits:\n    train: "\xff"\n')
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert str(e.value).startswith(f"{p}:3: not UTF-8 text (byte 0xff") and e.value.line == 3


def test_top_level_must_be_mapping(tmp_path):
    assert "expected a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_model_needs_a_command(tmp_path):
    msg = error_of(tmp_path, "models:\n  m1:\n    metrics: [m.json]\n")
    assert "needs `train`, `evaluate` or both" in msg


def test_empty_command_rejected(tmp_path):
    msg = error_of(tmp_path, "models:\n  m1:\n    train: '  '\n    metrics: [m.json]\n")
    assert "command is empty" in msg


def test_invalid_model_name(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("digits:", "digits_:"))
    assert 'model name "digits_" is not valid' in msg
    assert "GTO's name grammar" in msg


def test_stage_requires_undeclared(tmp_path):
    text = GOOD.replace("stages: [staging, prod]", "stages:\n  prod: {requires: staging}")
    assert "requires `staging`, which is not a declared stage" in error_of(tmp_path, text)


def test_gate_min_above_max(tmp_path):
    assert "is above `max`" in error_of(tmp_path, GOOD.replace("min: 0.9", "min: 0.9, max: 0.1"))


def test_negative_regression_allowance(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("min: 0.9", "max_regression: -1"))
    assert "max_regression" in msg and "greater than or equal to 0" in msg


def test_model_selection(tmp_path):
    two = GOOD.replace("stages:", "  other:\n    train: x\n    metrics: [m.json]\nstages:")
    cfg = load_text(tmp_path, two)
    with pytest.raises(ConfigError, match="choose one with --model"):
        cfg.model(None)
    with pytest.raises(ConfigError, match="did you mean `digits`"):
        cfg.model("digit")


def test_find_config_walks_up_to_repo_root(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "lepton.yaml").write_text(GOOD)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert config.find_config(None, sub) == tmp_path / "lepton.yaml"
    with pytest.raises(ConfigError, match=r"no lepton\.yaml"):
        config.find_config(None, Path("/"))


def test_example_config_is_valid():
    root = Path(__file__).parent.parent
    cfg = config.load(root / "examples" / "digits" / "lepton.yaml")
    assert "digits" in cfg.config.models


def test_config_errors_are_annotated_on_their_file_and_line(tmp_path, monkeypatch, capsys):
    from lepton_ci.cli import main

    (tmp_path / ".git").mkdir()
    (tmp_path / "lepton.yaml").write_text(GOOD.replace("min: 0.9", "minimum: 0.9"))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["-C", str(tmp_path), "run"]) == 1
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("::error file=lepton.yaml,line=7,title=lepton-ci run::"), line
    assert "unknown key" in line
    (tmp_path / "lepton.yaml").write_text("models:\n  a: [\n")
    assert main(["-C", str(tmp_path), "run"]) == 1
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("::error file=lepton.yaml,line=3,col=1,title=lepton-ci run::"), line


def test_names_environment_at_a_glance_and_confirmed_by_the_validated_config(tmp_path):
    from lepton_ci.core.config_glance import names_environment

    deploy = GOOD.replace(
        "stages: [staging, prod]",
        "    deploy:\n      environments:\n        staging: {host_port: 8081}\n"
        "stages: [staging, prod]",
    )
    (tmp_path / ".git").mkdir()
    path = tmp_path / "lepton.yaml"
    path.write_text(deploy)
    load_text(tmp_path, deploy)  # the file is valid as written
    assert names_environment(str(path), "staging")
    assert not names_environment(str(path), "digits")  # a model, not an environment
    assert not names_environment(str(path), "nowhere")
    # the glance says "environment", the validated config says the file is broken: no
    path.write_text(deploy.replace("train: python train.py", "train: 3"))
    assert not names_environment(str(path), "staging")
    # no config, or not YAML at all: no
    assert not names_environment(str(tmp_path / "missing.yaml"), "staging")
    path.write_text("models: [")
    assert not names_environment(str(path), "staging")
    # a file that never says `environments` is answered without parsing it
    code = (
        "import sys\nfrom lepton_ci.core.config_glance import names_environment\n"
        f"assert not names_environment({str(path)!r}, 'staging')\nprint('yaml' in sys.modules)"
    )
    path.write_text(GOOD)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("old", "new", "where", "named"),
    [
        ("digits:", '"digits\\n":', "`models`", '"digits\\n"'),  # was exit 70, and runs/digits\n
        ("stages: [staging, prod]", "stages: [staging, a//b]", "`stages`", '"a//b"'),  # git: no
        ("stages: [staging, prod]", "stages: [staging, .x]", "`stages`", '".x"'),
        ("digits:", "models..x:digits:", "`models`", '"models..x:digits"'),
    ],
)
def test_names_git_cannot_tag_are_config_errors_at_their_key(tmp_path, old, new, where, named):
    """A model key ending in a newline passed (`$` matches before it) and a stage `a//b` passed
    GTO's grammar but not git's; the stage errors pointed at "(top level)"."""
    msg = error_of(tmp_path, GOOD.replace(old, new))
    assert f"{where}: " in msg and f"name {named} is not valid" in msg, msg
    assert "(top level)" not in msg


def test_a_missing_required_stage_points_at_the_stages(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("stages: [staging, prod]", "stages: {x: {requires: y}}"))
    assert "`stages`: stage `x` requires `y`" in msg


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("code", "/srv/app/*.py", "is an absolute path: these patterns are relative to"),
        ("outputs", "/tmp/model.bin", "only `data:` may name files by absolute path"),
        ("code", "../shared/*.py", "leaves the model's folder (`..`)"),
        ("data", "../data/train.csv", "data outside it may be named by absolute path"),
        ("data", "/", "the whole file system"),
        ("data", "", "an empty pattern"),
    ],
)
def test_globs_stay_in_the_model_folder_but_data_may_be_absolute(tmp_path, key, value, needle):
    text = GOOD.replace("    metrics:", f"    {key}: ['{value}']\n    metrics:")
    err = error_of(tmp_path, text)
    assert f"models.digits.{key}" in err and needle in err


def test_absolute_data_loads_and_image_files_do_not(tmp_path):
    good = GOOD.replace("    metrics:", "    data: [/mnt/datasets/x]\n    metrics:")
    assert load_text(tmp_path, good).model(None)[1].data == ["/mnt/datasets/x"]
    image = "    image: {name: r/x, files: [/opt/app/*.py]}\n    metrics:"
    err = error_of(tmp_path, GOOD.replace("    metrics:", image))
    assert "models.digits.image.files" in err and "absolute path" in err
