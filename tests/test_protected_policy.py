"""The stages policy comes from a protected ref (the default branch), never from the work tree
or the ref being promoted: real git repositories with a bare `origin`, a policy edited on a
branch, on a tagged commit and in the work tree, and each way of naming the protected ref."""

import json

import pytest

from tests.conftest import commit_all, git
from tests.support import github_events

pytestmark = pytest.mark.e2e

# Users only: refusals and admissions need no GitHub API.
MAIN_POLICY = """\
stages:
  staging:
    allow: {users: [release-bot]}
  prod:
    requires: staging
    allow: {users: [release-bot]}
"""
EVIL_POLICY = MAIN_POLICY.replace("[release-bot]", "[mallory]")
DEPLOY = """\
    deploy:
      target: podman
      environments:
        staging: {host_port: 18999}
"""


def set_policy(repo, policy, extra=""):
    cfg = repo / "lepton.yaml"
    text = cfg.read_text()
    cfg.write_text(text[: text.index("stages:")] + extra + policy)


def stage_tags(repo):
    return git(repo, "tag", "-l", "toy#*").split()


@pytest.fixture
def repo(toy_repo, cli, tmp_path):
    """v0.1.0 registered on main under MAIN_POLICY, pushed to a bare origin; the clone knows
    origin/HEAD, as `git clone` leaves it."""
    text = (toy_repo / "lepton.yaml").read_text()
    (toy_repo / "lepton.yaml").write_text(text.replace("    gates:\n", DEPLOY + "    gates:\n"))
    set_policy(toy_repo, MAIN_POLICY)
    commit_all(toy_repo, "chore: policy")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(toy_repo, "remote", "add", "origin", str(origin))
    git(toy_repo, "push", "-q", "origin", "main", "--tags")
    git(toy_repo, "remote", "set-head", "origin", "main")
    return toy_repo


def evil_branch(repo, policy=EVIL_POLICY, extra=""):
    git(repo, "checkout", "-q", "-b", "evil")
    set_policy(repo, policy, extra)
    commit_all(repo, "chore: let mallory promote")
    git(repo, "push", "-q", "origin", "evil")


def test_a_policy_edited_on_a_branch_is_not_obeyed(repo, cli):
    """`model-promote` dispatched from a branch runs that branch's lepton.yaml: its
    `allow` (and a `policy.ref` pointing at itself) count for nothing."""
    evil_branch(repo, extra="policy: {ref: refs/heads/evil}\n")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "mallory may not promote to `staging`" in err
    assert "who may: users release-bot" in err
    assert "differs from the one on origin/main" in err and "stages prod, staging" in err
    assert stage_tags(repo) == []
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "release-bot")
    assert code == 0, err
    assert "allowed by the policy on origin/main" in err


def test_an_uncommitted_edit_is_named_and_not_obeyed(repo, cli):
    set_policy(repo, EVIL_POLICY)
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "mallory may not promote to `staging`" in err
    assert "the stages policy in the work tree's lepton.yaml differs from the one on " in err
    assert "the one on origin/main is obeyed" in err


def test_a_local_commit_not_on_the_remote_is_not_the_policy(repo, cli):
    """The remote's default branch is the protected one: a commit on the local main that
    nobody reviewed or pushed does not change who may promote."""
    set_policy(repo, EVIL_POLICY)
    commit_all(repo, "chore: not pushed")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "mallory may not promote" in err


def test_a_tagged_commit_with_its_own_policy_is_judged_by_the_default_branch(repo, cli):
    """`model-tag` checks out the tagged commit: its lepton.yaml is the pusher's. A version
    registered on a branch whose policy lets mallory promote is still judged by main's; the
    refused tag is deleted here and on origin."""
    evil_branch(repo)
    (repo / "x.py").write_text("# a change\n")
    commit_all(repo, "fix: something")
    assert cli("run")[0] == 0 and cli("register", "--push")[0] == 0
    git(repo, "checkout", "-q", "--detach", "toy@v0.1.1")
    git(repo, "tag", "-a", "-m", "by hand", "toy#staging#5", "toy@v0.1.1")
    git(repo, "push", "-q", "origin", "toy#staging#5")
    code, _, err = cli("accept-tag", "toy#staging#5", "--actor", "mallory")
    assert code == 1 and "mallory may not promote to `staging`" in err
    assert "the tag toy#staging#5 was deleted again" in err
    assert stage_tags(repo) == [] and git(repo / ".." / "origin.git", "tag", "-l", "toy#*") == ""


def test_the_default_branch_may_name_another_protected_ref(repo, cli):
    """`policy.ref` counts as main's lepton.yaml says, and names where the policy is kept."""
    git(repo, "checkout", "-q", "-b", "release")
    set_policy(repo, MAIN_POLICY.replace("[release-bot]", "[dev]", 1))
    commit_all(repo, "chore: the release managers' policy")
    git(repo, "push", "-q", "origin", "release")
    git(repo, "checkout", "-q", "main")
    set_policy(repo, MAIN_POLICY, "policy: {ref: refs/heads/release}\n")
    commit_all(repo, "chore: the policy lives on release")
    git(repo, "push", "-q", "origin", "main")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "release-bot")
    assert code == 1 and "release-bot may not promote to `staging`; who may: users dev" in err
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")
    assert code == 0, err
    assert "allowed by the policy on origin/release" in err


def test_lepton_policy_ref_names_it_and_must_exist(repo, cli, monkeypatch):
    evil_branch(repo)
    git(repo, "checkout", "-q", "main")
    monkeypatch.setenv("LEPTON_POLICY_REF", "refs/heads/evil")  # the operator's own choice
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 0, err
    assert "allowed by the policy on origin/evil" in err
    monkeypatch.setenv("LEPTON_POLICY_REF", "refs/heads/nowhere")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod", "--actor", "mallory")
    assert code == 1 and "LEPTON_POLICY_REF=refs/heads/nowhere: no such branch" in err


def test_without_a_remote_the_local_default_branch_is_read_and_said(toy_repo, cli):
    """A clone with no remote (a laptop, the demo): main is the policy, with a warning that
    says so; a branch's own policy still counts for nothing."""
    set_policy(toy_repo, MAIN_POLICY)
    commit_all(toy_repo, "chore: policy")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    git(toy_repo, "checkout", "-q", "-b", "evil")
    set_policy(toy_repo, EVIL_POLICY)
    commit_all(toy_repo, "chore: let mallory promote")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "mallory may not promote" in err
    assert "no remote `origin` in this clone: the promotion policy is read from the local " in err
    assert "default branch, main" in err


def actions_env(monkeypatch, tmp_path, default_branch="main"):
    event = github_events.workflow_dispatch(
        {"version": "v0.1.0", "stage": "staging"}, "model-promote.yml", sender="mallory"
    )
    event["repository"]["default_branch"] = default_branch
    path = tmp_path / "dispatch.json"
    path.write_text(json.dumps(event))
    for k, v in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_ACTOR": "mallory",
        "GITHUB_TRIGGERING_ACTOR": "mallory",
        "GITHUB_RUN_ATTEMPT": "1",
    }.items():
        monkeypatch.setenv(k, v)


def test_in_actions_the_default_branch_is_the_events_and_must_be_in_the_clone(
    repo, cli, monkeypatch, tmp_path
):
    """actions/checkout sets no origin/HEAD: the event's `repository.default_branch` names the
    branch. A clone without it is an error with the fix, never a guess and never the work
    tree; a pushed stage tag is then deleted (an unreadable policy allows nothing)."""
    evil_branch(repo)
    git(repo, "remote", "set-head", "origin", "--delete")
    actions_env(monkeypatch, tmp_path)
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "mallory may not promote" in err
    # a checkout of `evil` alone: neither origin/main nor main is here
    git(repo, "update-ref", "-d", "refs/remotes/origin/main")
    git(repo, "branch", "-q", "-D", "main")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "the default branch `main` is not in this clone" in err
    assert "fetch-depth: 0" in err
    git(repo, "tag", "-a", "-m", "by hand", "toy#staging#3", "toy@v0.1.0")
    git(repo, "push", "-q", "origin", "toy#staging#3")
    code, _, err = cli("accept-tag", "toy#staging#3")
    assert code == 1 and "the default branch `main` is not in this clone" in err
    assert "the tag toy#staging#3 was deleted again" in err
    assert stage_tags(repo) == []


def test_the_default_branch_must_hold_the_config(repo, cli):
    git(repo, "checkout", "-q", "--orphan", "orphan-main")
    git(repo, "rm", "-rq", "--cached", ".")
    (repo / "README").write_text("nothing yet\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "a default branch without lepton.yaml")
    git(repo, "push", "-q", "-f", "origin", "orphan-main:main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-f", "toy@v0.1.0")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "release-bot")
    assert code == 1 and "origin/main" in err and "has no lepton.yaml" in err
    assert "never from the work tree" in err


def test_rollback_is_allowed_to_whoever_may_promote_to_the_environment(repo, cli, monkeypatch):
    """The environment `staging` rolls back under `stages.staging.allow` of the protected
    policy: a refused actor is refused before anything is touched."""
    evil_branch(repo)
    code, _, err = cli("rollback", "staging", "--actor", "mallory", "--to", "1")
    assert code == 1
    assert "rollback of staging refused: mallory may not promote to `staging`" in err
    assert not (repo / ".lepton" / "deploy").exists()  # nothing was read or locked
    monkeypatch.setenv("GITHUB_ACTOR", "release-bot")
    code, _, err = cli("rollback", "staging", "--to", "1")
    # past the policy: the deployer answers (there is no revision 1 to go back to)
    assert code == 1 and "revision 1 is not a healthy revision to roll back to" in err
    assert "rollback of staging allowed by the policy on origin/main" in err


def test_policy_ref_is_a_full_ref_and_errors_name_the_ref_and_file(repo, cli, tmp_path):
    from lepton_ci.core import config
    from lepton_ci.core.errors import ConfigError

    bad = tmp_path / "lepton.yaml"
    bad.write_text("models:\n  m:\n    train: x\n    metrics: [m.json]\npolicy: {ref: main}\n")
    with pytest.raises(ConfigError, match=r"`policy.ref`: give a branch or tag by its full name"):
        config.load(bad)
    set_policy(repo, MAIN_POLICY, "policy: {ref: refs/heads/../x}\n")
    commit_all(repo, "chore: a broken policy ref")
    git(repo, "push", "-q", "origin", "main")
    git(repo, "reset", "-q", "--hard", "HEAD~1")  # this clone's own file is fine
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "release-bot")
    assert code == 1 and "origin/main:lepton.yaml:" in err and "`policy.ref`" in err


def test_an_environment_no_stage_is_named_like_is_said_to_be_unrestricted(repo, cli):
    text = (repo / "lepton.yaml").read_text()
    (repo / "lepton.yaml").write_text(text.replace("staging: {host_port", "qa: {host_port"))
    code, _, err = cli("rollback", "qa", "--actor", "mallory", "--to", "1")
    assert code == 1 and "revision 1 is not a healthy revision" in err
    assert "no stage `qa` in the policy on origin/main (" in err
    assert "anyone who can run this may roll back qa" in err


@pytest.mark.parametrize("short_name", ["main", "origin/main"])
def test_a_short_lepton_policy_ref_is_refused_a_tag_would_shadow_the_branch(
    repo, cli, monkeypatch, short_name
):
    """git resolves a short name to a tag before a branch: anyone who can push a tag named
    `main` (or `origin/main`) would choose the policy. Only a full ref or commit is taken."""
    evil_branch(repo)
    git(repo, "tag", short_name, "evil")
    git(repo, "checkout", "-q", "main")
    monkeypatch.setenv("LEPTON_POLICY_REF", short_name)
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "LEPTON_POLICY_REF" in err and "full name" in err
    assert stage_tags(repo) == []
    monkeypatch.setenv("LEPTON_POLICY_REF", "refs/heads/main")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "mallory")
    assert code == 1 and "mallory may not promote" in err
