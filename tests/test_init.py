import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lepton_ci.core import config
from lepton_ci.init import detect
from lepton_ci.init.scaffold import Answers, ask, init

pytestmark = pytest.mark.unit

TRAIN_WRITES_METRICS = """\
import json, pickle
pickle.dump({"w": 1}, open("model.pkl", "wb"))
json.dump({"rmse": 0.42, "mae": 0.3, "train_ms": 5.0}, open("metrics.json", "w"))
"""
TRAIN_ONLY_MODEL = """\
import pickle
pickle.dump({"w": 1}, open("model.pkl", "wb"))
"""
EVALUATE = """\
import json, pickle
pickle.load(open("model.pkl", "rb"))
json.dump({"accuracy": 0.9, "f1": 0.85, "latency_ms": 2.0}, open("metrics.json", "w"))
"""
TRAIN_NESTED = """\
import json, os
open("weights.pt", "w").write("w")
os.makedirs("checkpoints", exist_ok=True)
for i in range(3):
    open(f"checkpoints/epoch{i}.pt", "w").write("w")
json.dump({"eval": {"auc": 0.8, "loss": 0.3}, "custom": 4}, open("metrics.json", "w"))
"""


def lepton(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: no terminal, not in CI; `python3` is this interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=300,
        check=False,
    )


def repo_with(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text("*.pkl\n*.pt\nmetrics.json\n.lepton/\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "feat: model"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


SHAPES = {
    "train only": ({"train.py": TRAIN_WRITES_METRICS}, ["rmse", "mae", "train_ms"]),
    "train + evaluate": (
        {"train.py": TRAIN_ONLY_MODEL, "evaluate.py": EVALUATE},
        ["accuracy", "f1", "latency_ms"],
    ),
    "monorepo": (
        {
            "models/churn/train.py": TRAIN_ONLY_MODEL,
            "models/churn/evaluate.py": EVALUATE,
            "models/fraud/train.py": TRAIN_NESTED,
            "README.md": "two models\n",
        },
        ["accuracy", "f1", "latency_ms", "eval.auc", "eval.loss", "custom"],
    ),
}


OUTPUTS = {
    "train only": {"repo": ["model.pkl"]},
    "train + evaluate": {"repo": ["model.pkl"]},
    "monorepo": {"churn": ["model.pkl"], "fraud": ["checkpoints", "weights.pt"]},
}


@pytest.mark.e2e
@pytest.mark.parametrize("shape", list(SHAPES))
def test_init_yes_then_run_passes(tmp_path, shape):
    files, metrics = SHAPES[shape]
    repo = repo_with(tmp_path, files)
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "init: lepton-ci run" in proc.stdout and "verdict: PASS" in proc.stdout
    cfg = config.load(repo / "lepton.yaml").config
    gates = {name: g for m in cfg.models.values() for name, g in m.gates.items()}
    assert list(gates) == metrics
    outputs = {name: m.outputs for name, m in cfg.models.items()}
    assert outputs == OUTPUTS[shape]
    for m in cfg.models.values():
        assert isinstance(m.train, str) and m.train.startswith("python3 ")
        assert [g for g in m.gates.values() if g.key]  # every model has its key metric
    proc = lepton(repo, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.e2e
def test_the_proposal_follows_what_the_repository_has(tmp_path):
    repo = repo_with(tmp_path, SHAPES["monorepo"][0])
    proc = lepton(repo, "init", "--yes", "--no-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "running" not in proc.stdout and "verdict" not in proc.stdout
    models = yaml.safe_load((repo / "lepton.yaml").read_text())["models"]
    assert models["churn"]["path"] == "models/churn"
    assert models["churn"]["evaluate"] == "python3 evaluate.py"
    assert "evaluate" not in models["fraud"]  # training writes the metrics itself
    assert "models.churn.metrics" in proc.stdout and "models.fraud.metrics" in proc.stdout
    # the metrics a training left behind are read without running anything
    (repo / "models/fraud/metrics.json").write_text('{"auc": 0.8, "loss": 0.2}')
    (repo / "models/fraud/weights.pt").write_text("w")
    (repo / "lepton.yaml").unlink()
    for p in (repo / ".github" / "workflows").iterdir():
        p.unlink()
    proc = lepton(repo, "init", "--no-run")
    fraud = yaml.safe_load((repo / "lepton.yaml").read_text())["models"]["fraud"]
    assert fraud["gates"] == {
        "auc": {"direction": "higher", "max_regression_pct": 2, "key": True},
        "loss": {"direction": "lower", "max_regression_pct": 5},
    }
    assert fraud["outputs"] == ["weights.pt"]


@pytest.mark.e2e
def test_a_failing_training_leaves_a_to_do_not_a_broken_config(tmp_path):
    repo = repo_with(tmp_path, {"train.py": "raise SystemExit('no data')\n"})
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "`python3 train.py` exited 1; metrics and outputs left to you" in proc.stdout
    assert "lepton.yaml: models.repo.metrics: the file your training" in proc.stdout
    assert "init: lepton-ci run" not in proc.stdout
    config.load(repo / "lepton.yaml")


def test_a_bad_name_or_an_existing_file_is_refused_before_anything_runs(tmp_path):
    repo = repo_with(tmp_path, {"train.py": "open('ran', 'w').write('x')\n"})
    proc = lepton(repo, "init", "--model", "../Bad Name", "--yes")
    assert proc.returncode == 1
    assert "model name `../Bad Name` is not valid" in proc.stderr
    assert not (repo / "ran").exists() and not (repo / "lepton.yaml").exists()
    (repo / "lepton.yaml").write_text("mine\n")
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 1
    assert "writes nothing over existing files: lepton.yaml" in proc.stderr
    assert not (repo / "ran").exists() and (repo / "lepton.yaml").read_text() == "mine\n"


def test_init_in_ci_asks_nothing_and_writes_a_valid_config(tmp_path, monkeypatch):
    repo = tmp_path / "Fraud_Model"
    repo.mkdir()
    monkeypatch.setenv("CI", "true")

    def init_ci(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lepton_ci", "-C", str(repo), "init", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    # nothing to train with: no placeholder, exit 1, the key and the flag named, nothing written
    proc = init_ci()
    assert proc.returncode == 1, proc.stdout
    assert "no train script found" in proc.stderr
    assert "--train" in proc.stderr and "`models.fraud-model.train`" in proc.stderr
    assert list(repo.iterdir()) == []
    proc = init_ci("--train", "python3 fit.py")
    assert proc.returncode == 0, proc.stderr
    assert "wrote lepton.yaml" in proc.stdout
    cfg = config.load(repo / "lepton.yaml")
    assert list(cfg.config.models) == ["fraud-model"]
    assert cfg.config.models["fraud-model"].train == "python3 fit.py"
    wf = (repo / ".github" / "workflows" / "model-main.yml").read_text()
    assert "model: fraud-model" in wf and "digits" not in wf
    assert len(list((repo / ".github" / "workflows").glob("*.yml"))) == 7  # model-site too


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "model-pr.yml").write_text("mine\n")
    with pytest.raises(Exception, match="writes nothing over existing files"):
        init(tmp_path, Answers(model="m1"))
    assert not (tmp_path / "lepton.yaml").exists()
    assert (tmp_path / ".github" / "workflows" / "model-pr.yml").read_text() == "mine\n"


def test_prompts_keep_defaults_on_enter():
    replies = iter(["churn", "", "make eval", "", "auc", ""])
    a = ask(Answers(model="x", train="python3 train.py"), lambda prompt: next(replies))
    assert (a.model, a.train, a.evaluate, a.key_metric) == (
        "churn",
        "python3 train.py",
        "make eval",
        "auc",
    )


def test_invalid_model_name(tmp_path):
    with pytest.raises(Exception, match="is not valid"):
        init(tmp_path, Answers(model="Bad Name"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rmse", "lower"),
        ("val_loss", "lower"),
        ("eval.loss", "lower"),
        ("latency_ms", "lower"),
        ("p95_ms", "lower"),
        ("accuracy", "higher"),
        ("f1_macro", "higher"),
        ("roc_auc", "higher"),
        ("test.auc", "higher"),
        ("r2", "higher"),
        ("custom", None),
        ("lossless_ratio", None),
    ],
)
def test_directions_from_metric_names(name, expected):
    assert detect.direction(name) == expected


def test_the_key_metric_is_a_quality_metric_not_a_timing():
    assert detect.key_metric(["latency_ms", "f1", "accuracy"]) == "accuracy"
    assert detect.key_metric(["train_ms", "mae", "rmse"]) == "rmse"
    assert detect.key_metric(["latency_ms", "custom"]) is None


def test_hostile_metric_names_stay_data(tmp_path):
    from lepton_ci.init.scaffold import config_text

    names = ["a: b", "x\n  evil: 1", "#c", "{d}", "yes", "1.5", "- e"]
    text = config_text(
        [Answers(model="m1", train="python3 train.py", metric_names=names, key_metric="a: b")]
    )
    (tmp_path / "lepton.yaml").write_text(text)
    gates = config.load(tmp_path / "lepton.yaml").config.models["m1"].gates
    assert list(gates) == names
    assert gates["a: b"].key


def test_the_interpreter_that_exists(tmp_path, monkeypatch):
    only_python = tmp_path / "bin"
    only_python.mkdir()
    (only_python / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(only_python))
    assert detect.interpreter() == "python"
    (only_python / "python3").symlink_to(sys.executable)
    assert detect.interpreter() == "python3"


@pytest.mark.parametrize(
    ("names", "gated"),
    [
        (["accuracy", "class_share.0", "class_share.1"], ["accuracy"]),
        (["label_share.cat", "loss"], ["loss"]),
        (["class_share.0"], []),
        (["market_share", "accuracy"], ["market_share", "accuracy"]),  # a metric, not a class
    ],
)
def test_class_shares_are_recorded_not_gated(tmp_path, names, gated):
    """A class distribution (the drift SLO's reference) has no better direction: init gates
    the metrics around it and says why it left the shares out."""
    from lepton_ci.init import scaffold

    answers = Answers(
        model="m", path=".", train="python3 train.py", evaluate=None, params=None,
        outputs=["model.pkl"], metrics="metrics.json", metric_names=names,
        key_metric=next((n for n in names if n in ("accuracy", "loss")), None),
    )  # fmt: skip
    text = "models:\n" + scaffold.model_text(answers, tmp_path)
    model = yaml.safe_load(text)["models"]["m"]
    assert list(model["gates"] or {}) == gated
    if any("share." in n for n in names):
        assert "not gated: " in text and "drift SLO" in text
