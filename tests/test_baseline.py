"""Baseline resolution on real repositories: branches, PR merge-bases, shallow clones."""

import pytest

from lepton_ci.core.errors import BaselineError, GitError
from lepton_ci.core.git import Git
from lepton_ci.run.baseline import resolve
from tests.conftest import Cli, commit_all, git, set_params

pytestmark = pytest.mark.e2e


def tag(repo, name, rev="HEAD"):
    git(repo, "tag", "-a", "-m", f"Register {name}", name, rev)


def step(repo, msg):
    (repo / "log.txt").write_text(
        (repo / "log.txt").read_text() + msg + "\n" if (repo / "log.txt").exists() else msg + "\n"
    )
    return commit_all(repo, msg)


def test_first_version_has_no_baseline(toy_repo):
    assert resolve(Git(toy_repo), "toy") is None


def test_branch_takes_newest_reachable_not_on_head(toy_repo):
    tag(toy_repo, "toy@v0.1.0")
    step(toy_repo, "c2")
    tag(toy_repo, "toy@v0.2.0")
    got = resolve(Git(toy_repo), "toy")
    assert got is None or got.tag == "toy@v0.1.0"
    assert got is not None
    step(toy_repo, "c3")
    assert resolve(Git(toy_repo), "toy").tag == "toy@v0.2.0"
    # a version on a branch that HEAD does not contain is not a baseline
    git(toy_repo, "checkout", "-q", "-b", "side", "HEAD~1")
    step(toy_repo, "side")
    tag(toy_repo, "toy@v9.0.0")
    git(toy_repo, "checkout", "-q", "main")
    assert resolve(Git(toy_repo), "toy").tag == "toy@v0.2.0"


def test_many_newer_versions_off_the_branch_fall_back_to_one_ancestry_query(toy_repo, monkeypatch):
    from lepton_ci.run import baseline

    tag(toy_repo, "toy@v0.1.0")
    step(toy_repo, "c2")
    git(toy_repo, "checkout", "-q", "-b", "side")
    for i in range(baseline._Reachable.PROBES + 3):  # more than are asked about one by one
        step(toy_repo, f"side {i}")
        tag(toy_repo, f"toy@v1.0.{i}")
    git(toy_repo, "checkout", "-q", "main")
    g = Git(toy_repo)
    calls = []
    real = g.run
    monkeypatch.setattr(g, "run", lambda args, **kw: (calls.append(args), real(args, **kw))[1])
    assert resolve(g, "toy").tag == "toy@v0.1.0"
    asked = [c for c in calls if list(c[:2]) == ["merge-base", "--is-ancestor"]]
    assert len(asked) == baseline._Reachable.PROBES
    assert sum(list(c[:2]) == ["tag", "--merged"] for c in calls) == 1


def test_semver_order_not_date_order(toy_repo):
    tag(toy_repo, "toy@v0.10.0")
    step(toy_repo, "c2")
    tag(toy_repo, "toy@v0.9.0", "HEAD")  # a hotfix line registered later on a newer commit
    step(toy_repo, "c3")
    assert resolve(Git(toy_repo), "toy").tag == "toy@v0.10.0"


def test_pull_request_uses_merge_base_with_base_branch(toy_repo):
    tag(toy_repo, "toy@v0.1.0")
    git(toy_repo, "checkout", "-q", "-b", "feature")
    step(toy_repo, "feature work")
    git(toy_repo, "checkout", "-q", "main")
    step(toy_repo, "main moves on")
    tag(toy_repo, "toy@v0.2.0")
    git(toy_repo, "checkout", "-q", "feature")
    got = resolve(Git(toy_repo), "toy", base_ref="main")
    assert got.tag == "toy@v0.1.0"  # v0.2.0 is not in the PR's merge-base
    assert "merge-base with main" in got.why
    # the same through the environment a pull_request event sets
    from lepton_ci.run.baseline import pr_base_ref

    assert pr_base_ref({"GITHUB_BASE_REF": "main"}) == "main"


def test_pull_request_base_branch_missing_says_fetch(toy_repo):
    with pytest.raises(BaselineError) as e:
        resolve(Git(toy_repo), "toy", base_ref="release")
    assert "`git fetch origin release`" in str(e.value)


def test_deregistered_version_is_skipped(toy_repo):
    tag(toy_repo, "toy@v0.1.0")
    step(toy_repo, "c2")
    tag(toy_repo, "toy@v0.2.0")
    tag(toy_repo, "toy@v0.2.0!#1")
    step(toy_repo, "c3")
    assert resolve(Git(toy_repo), "toy").tag == "toy@v0.1.0"


def make_remote(tmp_path, toy_repo):
    for i in range(3):
        step(toy_repo, f"old{i}")  # history below the tag, so a depth can cut it
    tag(toy_repo, "toy@v0.1.0")
    for i in range(4):
        step(toy_repo, f"c{i}")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(toy_repo), str(remote))
    return remote


def test_clone_without_tags_says_exact_fetch(tmp_path, toy_repo):
    remote = make_remote(tmp_path, toy_repo)
    clone = tmp_path / "notags"
    git(tmp_path, "clone", "-q", "--no-tags", f"file://{remote}", str(clone))
    with pytest.raises(BaselineError) as e:
        resolve(Git(clone), "toy")
    assert "origin has 1 version tag(s) of toy that this clone has not fetched" in str(e.value)
    assert "`git fetch --tags origin`" in str(e.value)
    git(clone, "fetch", "-q", "--tags", "origin")
    assert resolve(Git(clone), "toy").tag == "toy@v0.1.0"


def test_shallow_clone_too_shallow_says_unshallow(tmp_path, toy_repo):
    remote = make_remote(tmp_path, toy_repo)
    clone = tmp_path / "shallow1"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(clone))
    with pytest.raises(BaselineError) as e:
        resolve(Git(clone), "toy")
    assert "`git fetch --unshallow --tags origin`" in str(e.value)
    git(clone, "fetch", "-q", "--tags", "origin")
    with pytest.raises(BaselineError) as e:
        resolve(Git(clone), "toy")
    assert "cannot tell whether toy@v0.1.0 is an ancestor" in str(e.value)
    assert "`git fetch --unshallow --tags origin`" in str(e.value)
    git(clone, "fetch", "-q", "--unshallow", "--tags", "origin")
    assert resolve(Git(clone), "toy").tag == "toy@v0.1.0"


def test_shallow_clone_deep_enough_works_once_tags_are_fetched(tmp_path, toy_repo):
    remote = make_remote(tmp_path, toy_repo)
    clone = tmp_path / "shallow5"
    git(tmp_path, "clone", "-q", "--depth", "5", f"file://{remote}", str(clone))
    git(clone, "fetch", "-q", "--tags", "origin")
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    assert resolve(Git(clone), "toy").tag == "toy@v0.1.0"


def hand_tag_with_record(repo, name):
    """Tag HEAD with the last run's record, as anyone could (no `lepton-ci register`)."""
    rec = (repo / ".lepton" / "runs" / "toy.json").read_text()
    git(repo, "tag", "-a", "--cleanup=verbatim", "-m", f"Register {name}\n\n{rec}", name)


def test_a_registered_failure_never_becomes_the_baseline(cli, toy_repo):
    """The ratchet: a regression must not pass in two small steps via a failed version."""
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0  # toy@v0.1.0, accuracy 0.9
    set_params(toy_repo, accuracy=0.8)  # -0.1: more than max_regression 0.05
    commit_all(toy_repo, "fix: worse")
    assert cli("run", "--no-fail")[0] == 0
    hand_tag_with_record(toy_repo, "toy@v0.1.1")
    set_params(toy_repo, accuracy=0.78)  # only -0.02 from the failed v0.1.1
    commit_all(toy_repo, "fix: a bit worse again")
    code, out, _ = cli("run")
    assert code == 1, out
    assert "vs  toy@v0.1.0" in out
    assert "toy@v0.1.1 failed its gates (accuracy, loss), so it is not the baseline" in out
    got = resolve(Git(toy_repo), "toy")
    assert got.tag == "toy@v0.1.0" and "passed its gates" in got.why


def test_fresh_clone_of_a_registered_commit_runs(tmp_path, toy_repo, capsys):
    """A clone of a commit that already carries its version tag has fetched that tag."""
    tag(toy_repo, "toy@v0.1.0")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(toy_repo), str(remote))
    clone = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", f"file://{remote}", str(clone))
    assert resolve(Git(clone), "toy") is None  # its own tag is no baseline, and not missing
    code, out, err = Cli(clone, capsys)("run")
    assert code == 0, err
    assert "no baseline (first version)" in out
    # a tag the clone really lacks is still reported
    git(toy_repo, "tag", "-a", "-m", "x", "toy@v0.0.9", "HEAD")
    git(toy_repo, "push", "-q", str(remote), "toy@v0.0.9")
    with pytest.raises(BaselineError, match="origin has 1 version tag"):
        resolve(Git(clone), "toy")


def test_git_facts_a_run_reads_in_fewer_calls(tmp_path, toy_repo):
    """Branch and dirtiness from one `git status`, the common git directory and shallowness
    from one `rev-parse`: the answers of the separate questions, detached HEAD and worktrees
    included."""
    g = Git(toy_repo)
    assert g.branch_and_dirty() == (g.branch(), g.dirty()) == ("main", False)
    (toy_repo / "train.py").write_text((toy_repo / "train.py").read_text() + "\n# edit\n")
    assert Git(toy_repo).branch_and_dirty() == ("main", True)
    git(toy_repo, "checkout", "-q", "--", "train.py")
    git(toy_repo, "checkout", "-q", "--detach")
    assert Git(toy_repo).branch_and_dirty() == (None, False)
    git(toy_repo, "checkout", "-q", "-b", "(detached)")  # a legal, unlucky branch name
    assert Git(toy_repo).branch_and_dirty() == ("(detached)", False)
    assert g.common_dir() == (toy_repo / ".git").resolve() and g.is_shallow() is False
    other = tmp_path / "worktree"
    git(toy_repo, "worktree", "add", "-q", "--detach", str(other))
    assert Git(other).common_dir() == (toy_repo / ".git").resolve()
    outside = tmp_path / "plain"
    outside.mkdir()
    assert Git(outside).common_dir() is None
    with pytest.raises(GitError, match="not inside a git repository"):
        Git(outside).is_shallow()


@pytest.mark.parametrize(
    "message",
    [
        "Register\n\n-----BEGIN LEPTON-CI RECORD-----\n{}\n-----END LEPTON-CI RECORD-----\n",
        "Register toy@v0.1.1\n\n{not json",
        "release",  # no record claimed, and no metrics committed at it: nothing to compare with
    ],
)
def test_a_tag_whose_record_cannot_be_read_is_no_baseline(cli, toy_repo, message):
    """A hand-pushed version tag became the baseline with no metrics, so the next regression
    passed every gate; the warning printed already said such a tag "is no baseline"."""
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0  # toy@v0.1.0, accuracy 0.9
    set_params(toy_repo, accuracy=0.89)
    commit_all(toy_repo, "fix: hand-tagged")
    git(toy_repo, "tag", "-a", "--cleanup=verbatim", "-m", message, "toy@v0.1.1")
    set_params(toy_repo, accuracy=0.8)  # -0.1 from v0.1.0: more than max_regression 0.05
    commit_all(toy_repo, "fix: worse")
    code, out, err = cli("run")
    assert code == 1, out + err
    assert "vs  toy@v0.1.0" in out
    assert "toy@v0.1.1" in out + err and "not the baseline" in out + err
    code, _, err = cli("run", "--baseline", "v0.1.1")
    if message != "release":  # named by hand: a record that cannot be read is refused
        assert code == 1 and "cannot be read" in err, err
