"""`lepton-ci diff A B`: any two versions or revisions, from records or committed files."""

import json

import pytest

from tests.conftest import commit_all, git, set_params

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_revisions(toy_repo, cli):
    """v0.1.0 registered (record); HEAD: a worse model, committed with its metrics.json."""
    (toy_repo / ".gitignore").write_text(".lepton/\nmodel.bin\ntrain_count.txt\n")
    assert cli("run")[0] == 0
    commit_all(toy_repo, "track metrics")
    assert cli("run")[0] == 0  # a run-cache hit on the commit that holds the metrics
    assert cli("register")[0] == 0
    set_params(toy_repo, accuracy=0.8, lr=0.2, dropout=None, augment=True)
    assert cli("run", "--no-fail")[0] == 0
    commit_all(toy_repo, "fix: worse")
    return toy_repo


def test_diff_two_revisions_like_dvc_metrics_diff(two_revisions, cli):
    code, out, err = cli("diff", "v0.1.0", "HEAD")
    assert code == 0, err
    lines = out.splitlines()
    assert "toy: v0.1.0 (the record in tag toy@v0.1.0)  ->  HEAD (the files at" in lines[0]
    metrics_at, params_at = lines.index("metrics:"), lines.index("params:")
    metric = {line.split()[0]: line.split()[1:] for line in lines[metrics_at + 1 : params_at]}
    param = {line.split()[0]: line.split()[1:] for line in lines[params_at + 1 :]}
    assert metric["accuracy"] == ["0.9", "0.8", "-0.1", "(worse)"]
    assert metric["loss"] == ["0.1", "0.2", "+0.1", "(worse)"]  # lower is better for loss
    assert "speed.p95_ms" not in metric  # unchanged rows hidden, as dvc does
    assert param["accuracy"] == ["0.9", "0.8", "-0.1"]  # a param: no better or worse
    assert param["lr"] == ["0.1", "0.2", "+0.1"]
    assert param["dropout"] == ["-", "null", "new"]  # YAML-style, and absent is not null
    assert param["augment"] == ["-", "true", "new"]
    _, out, _ = cli("diff", "v0.1.0", "HEAD", "--all", "--precision", "0")
    rows = [line.split() for line in out.splitlines()]
    assert ["speed.p95_ms", "12.0", "12.0", "unchanged"] in rows  # 12.5 rounded half to even
    assert ["accuracy", "1.0", "1.0", "-0.0", "(worse)"] in rows


def test_diff_json_and_markdown(two_revisions, cli):
    _, out, _ = cli("diff", "toy@v0.1.0", "HEAD", "--json")
    data = json.loads(out)
    assert data["a"]["source"] == "the record in tag toy@v0.1.0"
    assert data["b"]["sha"] == git(two_revisions, "rev-parse", "HEAD")
    metrics = {m["name"]: m for m in data["metrics"]}
    assert metrics["accuracy"]["status"] == "regressed" and metrics["accuracy"]["a"] == 0.9
    params = {p["name"]: p for p in data["params"]}
    assert params["dropout"] == {
        "name": "dropout",
        "a": None,
        "b": None,
        "change": None,
        "status": "new",
    }
    _, out, _ = cli("diff", "v0.1.0", "HEAD", "--format", "markdown")
    assert "| accuracy | 0.9 | 0.8 | -0.1 (worse) |" in out


def test_a_registered_commit_is_read_from_its_record_and_the_work_tree_from_files(
    two_revisions, cli
):
    set_params(two_revisions, accuracy=0.7)  # not run: metrics.json still says 0.8
    code, out, _ = cli("diff", "HEAD~1")  # B defaults to the work tree
    assert code == 0
    assert "HEAD~1 (the record in tag toy@v0.1.0)  ->  workspace (the work tree" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  accuracy")]
    assert rows == [
        ["accuracy", "0.9", "0.8", "-0.1", "(worse)"],
        ["accuracy", "0.9", "0.7", "-0.2"],
    ]


def test_diff_refuses_what_it_cannot_read(two_revisions, cli):
    code, _, err = cli("diff", "nope", "HEAD")
    assert code == 1 and "`nope` is neither a version of toy nor a git revision" in err
    code, _, err = cli("diff", "v9.0.0", "HEAD")
    assert code == 1 and "toy@v9.0.0 is not registered" in err
    code, _, err = cli("diff", "v0.1.0", "HEAD", "--precision", "-2")
    assert code == 1 and "--precision -2: give 0 to 20 decimals" in err
    code, _, err = cli("diff", "a", "b", "c")
    assert code == 1 and "diff takes one or two revisions, got 3" in err
    (two_revisions / "metrics.json").write_text('{"accuracy": "high"}')
    commit_all(two_revisions, "broken metrics")
    code, _, err = cli("diff", "v0.1.0", "HEAD")
    assert code == 1 and "metrics.json: metric `accuracy` is 'high', not a number" in err
    assert "(in the files at" in err and "/tmp" not in err.split("fix:")[0]


def test_hostile_names_stay_inert_in_the_diff(two_revisions, cli):
    evil = {"x\n::add-mask::secret": 1.0, "rtl\u202egnp.exe": 2.0, "accuracy": 0.8, "loss": 0.2}
    (two_revisions / "metrics.json").write_text(json.dumps(evil))
    commit_all(two_revisions, "hostile metric names")
    for fmt in ("table", "markdown"):
        code, out, err = cli("diff", "v0.1.0", "HEAD", "--format", fmt)
        assert code == 0, err
        assert not any(line.startswith("::") for line in out.splitlines())
        assert "\u202e" not in out and "\\u202e" in out  # shown as an escape, not acted on
    code, _, err = cli("diff", "v0.1.0", "HEAD\n::error::x")
    assert code == 1 and not any(line.startswith("::error::x") for line in err.splitlines())
