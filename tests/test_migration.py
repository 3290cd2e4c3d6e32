"""Coming from GTO / DVC: versions GTO registered (no record) are compared, kept and promotable."""

import pytest
from gto import api as gto

from tests.conftest import commit_all, git, set_params

pytestmark = pytest.mark.e2e


@pytest.fixture
def gto_repo(toy_repo, cli):
    """A DVC-style repository: metrics.json committed; toy@v0.1.0 registered by GTO itself."""
    (toy_repo / ".gitignore").write_text(".lepton/\nmodel.bin\ntrain_count.txt\n")
    assert cli("run")[0] == 0  # writes metrics.json: accuracy 0.9
    commit_all(toy_repo, "track metrics, as DVC users do")
    gto.register(str(toy_repo), "toy", "HEAD", version="v0.1.0")
    assert "{" not in git(toy_repo, "tag", "-l", "--format=%(contents)", "toy@v0.1.0")
    return toy_repo


def allow_unrecorded(repo, stage):
    cfg = repo / "lepton.yaml"
    text = cfg.read_text().replace(f"  {stage}: {{", f"  {stage}: {{allow_unrecorded: true, ", 1)
    cfg.write_text(text)
    commit_all(repo, f"allow unrecorded versions in {stage}")
    if git(repo, "remote"):  # the policy is read from the remote's default branch
        git(repo, "push", "-q", "origin", "main")


def test_first_gated_run_after_gto_compares_with_the_committed_files(gto_repo, cli):
    set_params(gto_repo, accuracy=0.8, lr=0.2)  # a regression of 0.1 > max_regression 0.05
    commit_all(gto_repo, "fix: worse")
    code, out, _ = cli("run")
    assert code == 1, out
    assert "toy@v0.1.0 carries no evidence record; compared with the files at" in out
    assert "vs  toy@v0.1.0" in out
    row = next(line for line in out.splitlines() if line.startswith("accuracy"))
    assert "0.9" in row and "0.8" in row and "fail" in row
    assert "lr: 0.1 -> 0.2 (changed)" in out  # params from the committed params.yaml


def test_a_gto_version_without_metrics_files_warns_and_does_not_compare(toy_repo, cli):
    gto.register(str(toy_repo), "toy", "HEAD", version="v0.1.0")  # metrics.json not committed
    (toy_repo / "x").write_text("x")
    commit_all(toy_repo, "fix: next")
    code, out, _ = cli("run")  # nothing to compare with: no baseline, not an empty one
    assert code == 0
    assert "toy@v0.1.0 has no record and no metrics at" in out and "not the baseline" in out
    code, out, _ = cli("run", "--baseline", "v0.1.0")  # named by hand: compared, and said so
    assert code == 0
    assert "not there: metrics.json" in out
    assert "toy@v0.1.0: no metrics found at" in out


@pytest.fixture
def remote(gto_repo, tmp_path):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(gto_repo, "remote", "add", "origin", str(origin))
    git(gto_repo, "push", "-q", "origin", "main", "--tags")
    return origin


def test_accept_tag_never_deletes_a_gto_stage_tag_it_cannot_judge(gto_repo, remote, cli):
    gto.assign(str(gto_repo), "toy", "staging", version="v0.1.0")
    tag = git(gto_repo, "tag", "-l", "toy#staging*")
    git(gto_repo, "push", "-q", "origin", tag)
    code, _, err = cli("accept-tag", tag)
    assert code == 1
    assert "carries no evidence record" in err and "allow_unrecorded: true" in err
    assert f"the tag {tag} was left in place" in err
    assert git(gto_repo, "tag", "-l", "toy#*") == tag
    assert git(remote, "tag", "-l", "toy#*") == tag
    allow_unrecorded(gto_repo, "staging")
    code, out, err = cli("accept-tag", tag)
    assert code == 0, err
    assert "toy@v0.1.0 accepted in staging" in out


def test_a_stage_on_an_unregistered_commit_is_left_in_place(gto_repo, remote, cli):
    (gto_repo / "x").write_text("x")
    commit_all(gto_repo, "unregistered")
    gto.assign(str(gto_repo), "toy", "staging", ref="HEAD", skip_registration=True)
    tag = git(gto_repo, "tag", "-l", "toy#staging*")
    git(gto_repo, "push", "-q", "origin", tag)
    code, _, err = cli("accept-tag", tag)
    assert code == 1 and "which is no registered version of toy" in err
    assert git(remote, "tag", "-l", "toy#*") == tag


def test_promoting_a_gto_version_needs_an_explicit_policy(gto_repo, cli):
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "set `stages.staging.allow_unrecorded: true`" in err
    assert git(gto_repo, "tag", "-l", "toy#*") == ""
    allow_unrecorded(gto_repo, "staging")
    code, out, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 0, err
    assert "toy@v0.1.0 carries no record; promoted to staging by allow_unrecorded" in out
    assert gto.show(str(gto_repo))["toy"]["stage"]["staging"] == "v0.1.0"
    # prod has no such policy: still refused
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1 and "carries no evidence record" in err


def test_a_refused_actor_is_refused_first_even_on_a_gto_version(gto_repo, remote, cli):
    """Only the missing record is unjudgeable: who pushed can be judged, and a refusal deletes."""
    cfg = gto_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("  staging: {}", "  staging: {allow: {users: [dev]}}"))
    commit_all(gto_repo, "only dev promotes to staging")
    git(gto_repo, "push", "-q", "origin", "main")  # the policy is the default branch's
    for target in ("toy@v0.1.0", "HEAD"):  # a GTO version, then a commit never registered
        git(gto_repo, "tag", "-a", "-m", "by hand", "toy#staging#9", target)
        git(gto_repo, "push", "-q", "origin", "toy#staging#9")
        code, _, err = cli("accept-tag", "toy#staging#9", "--actor", "intruder")
        assert code == 1 and "intruder may not promote to `staging`" in err, err
        assert "was deleted again" in err
        assert git(remote, "tag", "-l", "toy#*") == ""
        assert git(gto_repo, "tag", "-l", "toy#*") == ""


def test_a_dvc_users_committed_metrics_rewritten_by_the_run_do_not_block_register(gto_repo, cli):
    """DVC commits metrics.json beside the code; CI's run trains again and rewrites it (another
    machine, another number, another format). That changes no source: the run's record is
    clean and register makes the version, saying the file differs; a changed source still
    refuses."""
    import json

    set_params(gto_repo, accuracy=0.93)
    # what `dvc repro` wrote on the developer's machine, committed with the change
    (gto_repo / "metrics.json").write_text(
        json.dumps({"accuracy": 0.9301, "loss": 0.0699, "speed": {"p95_ms": 11.0}}, indent=2)
    )
    commit_all(gto_repo, "feat: better, with dvc repro's metrics")
    assert cli("run")[0] == 0  # trains again: evaluate.py writes its own metrics.json
    assert git(gto_repo, "status", "--porcelain", "--untracked-files=no") == "M metrics.json"
    record = json.loads((gto_repo / ".lepton" / "runs" / "toy.json").read_text())
    assert record["git"]["dirty"] is False
    code, out, err = cli("run")  # a second run (a cache hit) finds the tree as clean
    assert (
        code == 0
        and json.loads((gto_repo / ".lepton/runs/toy.json").read_text())["git"]["dirty"] is False
    )
    code, out, err = cli("register")
    assert code == 0, err
    assert "the run rewrote files it writes that git tracks" in out + err
    assert "toy@v0.2.0" in git(gto_repo, "tag", "-l", "toy@*")
    message = git(gto_repo, "tag", "-l", "--format=%(contents)", "toy@v0.2.0")
    assert '"accuracy": 0.93' in message  # the run's metrics, not the committed file's

    # a source changed and not committed still makes the tree dirty
    set_params(gto_repo, accuracy=0.94)
    commit_all(gto_repo, "feat: even better")
    (gto_repo / "train.py").write_text((gto_repo / "train.py").read_text() + "# tweak\n")
    assert cli("run")[0] == 0
    code, _, err = cli("register")
    assert code == 1 and "uncommitted changes" in err


def test_a_metrics_file_that_is_also_an_input_still_counts(gto_repo, cli):
    """A file the model reads (here listed under `code:`) is a source even if it is also in
    `metrics:`: rewritten and not committed, it keeps the version from being made."""
    cfg = gto_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace('code: ["*.py"]', 'code: ["*.py", metrics.json]'))
    set_params(gto_repo, accuracy=0.93)
    commit_all(gto_repo, "feat: metrics.json is read too")
    assert cli("run")[0] == 0
    assert git(gto_repo, "status", "--porcelain", "--untracked-files=no") == "M metrics.json"
    code, _, err = cli("register")
    assert code == 1 and "uncommitted changes" in err
