"""Model card: golden file, Hugging Face front matter, determinism, user templates."""

import os
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from lepton_ci.core import record as record_mod
from tests.conftest import commit_all, git, set_params

pytestmark = pytest.mark.e2e
GOLDEN = Path(__file__).parent / "golden" / "model_card.md"
DATES = {"GIT_AUTHOR_DATE": "2026-03-01T12:00:00Z", "GIT_COMMITTER_DATE": "2026-03-01T12:00:00Z"}


def normalise(path: Path) -> None:
    """Fix what legitimately varies between machines and runs: clock, timings, interpreter."""
    rec = record_mod.load(path)

    def env(e):
        return e.model_copy(
            update={
                "python": "3.11.0",
                "platform": "linux-x86_64",
                "interpreter": "/usr/bin/python3",
                "os": "Linux 6.1.0 (Debian GNU/Linux 12 (bookworm))",
                "packages": ["numpy==2.2.6", "pyyaml==6.0.3", "scikit-learn==1.6.1"],
                "packages_digest": "blake3:" + "5" * 64,
                "accelerator": None,
            }
        )

    rec = rec.model_copy(
        update={
            "created_at": "2026-03-01T12:00:00+00:00",
            "environment": env(rec.environment),
            "steps": [
                s.model_copy(update={"started_at": "2026-03-01T12:00:00+00:00", "duration_s": 1.0})
                for s in rec.steps
            ],
            # the key (and the reason, which names it) holds this machine's packages
            "cache": rec.cache.model_copy(
                update={"key": "blake3:" + "0" * 64, "reason": "no earlier run (key 000000000000)"}
            ),
            "baseline": rec.baseline.model_copy(
                update={"environment": env(rec.baseline.environment)}
            )
            if rec.baseline
            else None,
        }
    )
    record_mod.save(rec, path)


@pytest.fixture
def carded(toy_repo, cli, monkeypatch):
    for k, v in DATES.items():
        monkeypatch.setenv(k, v)
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "stages:",
            """\
    card:
      description: A toy classifier used by lepton-ci's tests.
      intended_use: Tests only.
      limitations: Its accuracy is a parameter.
      license: mit
      datasets: [toy-data]
      tags: [tabular-classification]
      task: tabular-classification
      library_name: scikit-learn
environment:
  lock: [requirements.lock]
stages:""",
        )
    )
    (toy_repo / "requirements.lock").write_text("pyyaml==6.0.3\n")
    git(toy_repo, "commit", "-q", "--amend", "-a", "--no-edit", "--reset-author")
    git(toy_repo, "add", "requirements.lock")
    commit_all(toy_repo, "chore: lock file")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    set_params(toy_repo, accuracy=0.95, lr=0.05)
    (toy_repo / "data.csv").write_text("x,y\n1,2\n3,4\n")
    commit_all(toy_repo, "feat: more data")
    (toy_repo / "train.py").write_text((toy_repo / "train.py").read_text() + "\n")
    commit_all(toy_repo, "fix: trailing newline in train.py")
    assert cli("run")[0] == 0
    normalise(toy_repo / ".lepton" / "runs" / "toy.json")
    return toy_repo


def test_card_matches_golden_file(carded, cli):
    code, out, err = cli("card")
    assert code == 0, err
    path = carded / "model_cards" / "toy" / "v0.2.0.md"
    assert out.strip() == f"wrote {path}"
    text = path.read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "card changed; if intended, rerun with UPDATE_GOLDEN=1"


def test_card_is_deterministic(carded, cli):
    cli("card", "--out", "a.md")
    cli("card", "--out", "b.md")
    assert (carded / "a.md").read_bytes() == (carded / "b.md").read_bytes()


def hub_card(text):
    """The card as huggingface_hub reads it, and the metadata it would write back."""
    card = ModelCard(text)
    return card.data, card.data.to_dict()


def test_front_matter_is_hugging_face_metadata(carded, cli):
    cli("card")
    text = (carded / "model_cards" / "toy" / "v0.2.0.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    data, written = hub_card(text)
    assert written == meta  # exactly what the Hub library writes for the same data
    assert (data.license, data.datasets) == ("mit", ["toy-data"])
    assert (data.pipeline_tag, data.library_name) == ("tabular-classification", "scikit-learn")
    assert data.tags == ["tabular-classification", "lepton-ci"]
    assert data.metrics == ["accuracy", "loss"]  # the informational speed.p95_ms is no claim
    assert data.model_name == "toy"
    results = {(r.metric_type, r.metric_name): r for r in data.eval_results}
    assert set(results) == {("accuracy", "accuracy"), ("loss", "loss")}
    acc = results["accuracy", "accuracy"]
    assert (acc.metric_value, acc.task_type, acc.dataset_name) == (
        0.95,
        "tabular-classification",
        "toy-data",
    )
    assert meta["lepton-ci"]["version"] == "v0.2.0"


def test_no_dataset_is_invented_and_metric_ids_are_ids(carded, cli):
    cfg = carded / "lepton.yaml"
    text = cfg.read_text().replace("      datasets: [toy-data]\n", "")
    text = text.replace("      library_name: scikit-learn\n", "")
    cfg.write_text(
        text.replace(
            "speed.p95_ms: {direction: lower, informational: true}",
            "speed.p95_ms: {direction: lower}",
        )
    )
    assert cli("run")[0] == 0
    code, out, err = cli("card", "--print")
    assert code == 0, err
    data, written = hub_card(out)
    assert data.eval_results is None or data.eval_results == []
    assert written["model-index"] == [{"name": "toy", "results": []}]
    assert "datasets" not in written and "library_name" not in written
    assert data.metrics == ["accuracy", "loss", "speed_p95_ms"]


def test_card_sections(carded, cli):
    code, out, _ = cli("card", "--print")
    assert code == 0
    assert "- feat: more data" in out and "- fix: trailing newline in train.py" in out
    assert "- chore: lock file" not in out  # that commit is in v0.1.0
    assert "- data: data.csv (modified)" in out
    assert "- code: train.py (modified)" in out
    assert "| accuracy | 0.95 | 0.9 | +0.05 | pass |" in out
    assert "| Previous version | `toy@v0.1.0` |" in out


def test_card_for_a_registered_version_from_its_tag(carded, cli):
    code, out, err = cli("card", "--version", "v0.1.0", "--print")
    assert code == 0, err
    assert "# toy v0.1.0" in out and "No commits (first version)." in out


def test_user_template_and_missing_template(carded, cli):
    (carded / "card.j2").write_text(
        "{{ record.model }} {{ record.candidate_version }} {{ card.license }}\n"
    )
    cfg = carded / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("license: mit", "license: mit\n      template: card.j2"))
    code, out, _ = cli("card", "--print")
    assert out.startswith("toy v0.2.0 mit")
    (carded / "card.j2").write_text("{{ record.nope }}\n")
    code, _, err = cli("card")
    assert code == 1 and "card.j2" in err and "template error" in err
    (carded / "card.j2").unlink()
    code, _, err = cli("card")
    assert code == 1 and "template" in err and "not found" in err


def test_compiled_templates_are_kept_between_runs_and_follow_edits(carded, isolated_env):
    import subprocess
    import sys

    (carded / "card.j2").write_text("first {{ record.model }}\n")
    cfg = carded / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("license: mit", "license: mit\n      template: card.j2"))

    def card() -> str:
        cmd = [sys.executable, "-m", "lepton_ci", "card", "--print"]
        return subprocess.run(cmd, cwd=carded, capture_output=True, text=True, check=True).stdout

    assert card().startswith("first toy")
    kept = list((isolated_env / ".cache" / "lepton-ci" / "jinja").iterdir())
    assert kept, "no compiled template was kept"
    (carded / "card.j2").write_text("second {{ record.model }}\n")  # same path, same size
    assert card().startswith("second toy")


def test_changelog_keeps_a_subject_with_a_line_separator_whole(carded, cli):
    (carded / "notes.txt").write_text("n\n")
    commit_all(carded, "docs: first part\u2028second part \x1c third")
    assert cli("run")[0] == 0
    code, out, err = cli("card", "--print")
    assert code == 0, err
    (line,) = [ln for ln in out.split("\n") if "first part" in ln]  # not splitlines()
    assert "second part" in line and "third" in line, out


def test_sandbox_blocks_template_escapes(carded, cli):
    (carded / "card.j2").write_text("{{ record.__class__.__mro__ }}\n")
    cfg = carded / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("license: mit", "license: mit\n      template: card.j2"))
    code, _, err = cli("card")
    assert code == 1 and "unsafe" in err.lower()


@pytest.fixture
def ran(toy_repo, cli):
    assert cli("run")[0] == 0
    return toy_repo


def test_card_out_never_replaces_what_is_not_a_file(ran, cli, tmp_path, gh_files):
    # once renamed over: --out /dev/full became a regular file, a link was replaced
    null = tmp_path / "null"
    null.symlink_to("/dev/null")
    code, out, err = cli("card", "--out", str(null))
    assert code == 0, err
    assert null.is_symlink() and os.readlink(null) == "/dev/null"
    assert out == "" and f"wrote {null}" in err  # stdout stays the card's alone
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert cli("card", "--out", str(fifo))[0] == 0
        assert os.read(reader, 1 << 16).startswith(b"---\n")
    finally:
        os.close(reader)
    code, _, err = cli("card", "--out", str(fifo))  # no reader now: an error, not a hang
    assert code == 1 and "a FIFO nobody reads" in err
    # a directory (`--out .`: once exit 70; `--out ~`: once the hint to rm -rf it)
    for where in (".", str(tmp_path)):
        code, _, err = cli("card", "--out", where)
        assert code == 1, err
        assert "is a directory, not a file; nothing was written" in err
        assert "rm -rf" not in err and "unexpected error" not in err
    assert ran.is_dir() and (ran / "lepton.yaml").is_file()


def test_card_out_needs_its_folder_and_writes_through_links(ran, cli, tmp_path):
    code, _, err = cli("card", "--out", str(tmp_path / "no" / "dir" / "x.md"))
    assert code == 1 and f"the folder {tmp_path / 'no' / 'dir'} does not exist" in err
    assert not (tmp_path / "no").exists()
    real = tmp_path / "real.md"
    real.write_text("old")
    (tmp_path / "link.md").symlink_to(real)
    assert cli("card", "--out", str(tmp_path / "link.md"))[0] == 0
    assert (tmp_path / "link.md").is_symlink() and real.read_text().startswith("---\n")
    code, out, _ = cli("card", "--out", "-")
    assert code == 0 and out.startswith("---\n") and "wrote" not in out
    assert cli("card")[0] == 0  # card.path in lepton.yaml: its folders are made
    assert any((ran / "model_cards" / "toy").iterdir())


def test_card_in_actions_without_or_with_a_broken_github_output(ran, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    code, out, err = cli("card", "--print")  # once exit 70 after the card was written
    assert code == 0, err
    assert out.startswith("---\n") and "GITHUB_OUTPUT is not set" in err
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path))  # a directory
    code, _, err = cli("card", "--out", "card.md")
    assert code == 1 and f"GITHUB_OUTPUT {tmp_path}" in err and "work is done and stands" in err
    assert (ran / "card.md").read_text().startswith("---\n")  # the work stands
