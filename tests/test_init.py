import subprocess
import sys

import pytest

from lepton_ci.core import config
from lepton_ci.init.scaffold import Answers, ask, init

pytestmark = pytest.mark.unit


def test_init_in_ci_asks_nothing_and_writes_a_valid_config(tmp_path, monkeypatch):
    repo = tmp_path / "Fraud_Model"
    repo.mkdir()
    monkeypatch.setenv("CI", "true")
    proc = subprocess.run(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), "init"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote lepton.yaml" in proc.stdout
    cfg = config.load(repo / "lepton.yaml")
    assert list(cfg.config.models) == ["fraud-model"]
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
    a = ask(Answers(model="x"), lambda prompt: next(replies))
    assert (a.model, a.train, a.evaluate, a.key_metric) == (
        "churn",
        "python train.py",
        "make eval",
        "auc",
    )


def test_invalid_model_name(tmp_path):
    with pytest.raises(Exception, match="is not valid"):
        init(tmp_path, Answers(model="Bad Name"))
