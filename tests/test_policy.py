"""Who may promote: users, teams and repository permission, asked of the GitHub API."""

import json

import pytest

from tests.conftest import git
from tests.support import github_events
from tests.support.github_server import Fault, GitHubServer

pytestmark = pytest.mark.e2e
REPO = "acme/models"

POLICY = """\
stages:
  staging:
    allow: {permission: write}
  prod:
    requires: staging
    allow: {users: [release-bot], teams: [acme/release-managers], permission: admin}
"""


@pytest.fixture
def gh(monkeypatch):
    """Teams need a token with organization Members: read (a PAT or App token), as on GitHub."""
    with GitHubServer() as srv:
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_TOKEN", "teams-token")
        monkeypatch.setenv("GITHUB_API_URL", srv.url)
        srv.state.permissions[(REPO, "dev")] = "write"
        srv.state.permissions[(REPO, "reader")] = "read"
        srv.state.permissions[(REPO, "boss")] = "admin"
        srv.state.teams[("acme", "release-managers")] = {"rm"}
        yield srv


@pytest.fixture
def mp(monkeypatch):
    return monkeypatch


@pytest.fixture
def policy_repo(toy_repo, cli):
    cfg = toy_repo / "lepton.yaml"
    text = cfg.read_text()
    cfg.write_text(text[: text.index("stages:")] + POLICY)
    git(toy_repo, "commit", "-qam", "chore: policy")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    return toy_repo


def tags(repo):
    return git(repo, "tag", "-l", "toy#*").split()


def test_permission_rule(gh, policy_repo, cli):
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "reader")
    assert code == 1
    assert "reader may not promote to `staging`; who may: anyone with write permission" in err
    assert tags(policy_repo) == []
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")
    assert code == 0, err
    assert "dev has write permission" in err  # stderr: stdout stays the command's own
    assert tags(policy_repo) == ["toy#staging#1"]


@pytest.mark.parametrize(
    ("actor", "why"),
    [
        ("release-bot", "release-bot is listed for `prod`"),
        ("rm", "rm is a member of acme/release-managers"),
        ("boss", "boss has admin permission"),
    ],
)
def test_each_prod_rule_admits(gh, policy_repo, cli, actor, why):
    assert cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")[0] == 0
    code, _, err = cli("promote", "toy", "v0.1.0", "prod", "--actor", actor)
    assert code == 0, err
    assert why in err


def test_refused_prod_promotion_says_who_may_and_writes_nothing(gh, policy_repo, cli, monkeypatch):
    assert cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")[0] == 0
    monkeypatch.setenv("GITHUB_ACTOR", "dev")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1
    assert (
        "dev may not promote to `prod`; who may: users release-bot; members of "
        "acme/release-managers; anyone with admin permission or higher"
    ) in err
    assert tags(policy_repo) == ["toy#staging#1"]


def test_the_workflow_token_cannot_read_teams_and_says_which_token_can(
    gh, policy_repo, cli, monkeypatch
):
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")  # GITHUB_TOKEN: no Members: read
    assert cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")[0] == 0
    # permission is read first, with the token the workflow has
    code, _, err = cli("promote", "toy", "v0.1.0", "prod", "--actor", "boss")
    assert code == 0 and "boss has admin permission" in err, err
    git(policy_repo, "tag", "-d", "toy#prod#2")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod", "--actor", "rm")
    assert code == 1
    assert "cannot read team acme/release-managers to check rm's membership" in err
    assert "GITHUB_TOKEN never has the organization permission Members: read" in err
    assert "fine-grained PAT or a GitHub App installation token" in err
    assert "may not promote" not in err  # "cannot tell" never reads as "not a member"


@pytest.mark.parametrize(
    ("role", "base", "admitted"),
    [("release-manager", "maintain", True), ("auditor", "triage", False), ("maintain", "", True)],
)
def test_custom_repository_roles_rank_by_their_base_role(
    gh, policy_repo, cli, role, base, admitted
):
    gh.state.permissions[(REPO, "carol")] = role
    if base:
        gh.state.custom_roles[role] = base
    code, out, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "carol")
    assert (code == 0) is admitted, out + err
    if admitted:
        assert "carol has write permission" in err or "carol has maintain permission" in err


def test_policy_without_github_is_refused_not_skipped(policy_repo, cli, monkeypatch):
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")
    assert code == 1 and "without the GitHub API" in err
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "who is promoting is unknown" in err
    assert tags(policy_repo) == []


def test_team_syntax_is_validated(tmp_path):
    from lepton_ci.core import config
    from lepton_ci.core.errors import ConfigError

    p = tmp_path / "lepton.yaml"
    p.write_text(
        "models:\n  m:\n    train: x\n    metrics: [m.json]\n"
        "stages:\n  prod:\n    allow: {teams: [justaname]}\n"
    )
    with pytest.raises(ConfigError, match="must be written as ORG/TEAM-SLUG"):
        config.load(p)
    # `acme/..` would make the membership URL ask about the whole organization
    p.write_text(p.read_text().replace("justaname", "acme/.."))
    with pytest.raises(ConfigError, match="must be written as ORG/TEAM-SLUG"):
        config.load(p)


def test_an_actor_that_is_not_a_login_is_refused_before_any_api_call(gh, policy_repo, cli):
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev/../../orgs/acme")
    assert code == 1 and "`dev/../../orgs/acme` is not a GitHub login" in err
    assert gh.state.log == [] and tags(policy_repo) == []
    assert cli("promote", "toy", "v0.1.0", "staging", "--actor", "dependabot[bot]")[0] == 1
    assert gh.state.count("GET", "/collaborators/dependabot") == 1


@pytest.fixture
def with_remote(policy_repo, tmp_path):
    remote = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(policy_repo, "remote", "add", "origin", str(remote))
    git(policy_repo, "push", "-q", "origin", "main", "--tags")
    git(policy_repo, "remote", "set-head", "origin", "main")  # as `git clone` leaves it
    return remote


def push_stage_tag(repo, name, target="toy@v0.1.0"):
    git(repo, "tag", "-a", "-m", "by hand", name, target)
    git(repo, "push", "-q", "origin", name)


def tag_pushed(monkeypatch, tmp_path, repo, tag, sender, attempt=1, rerun_by=None):
    """The job's environment as GitHub sets it for the push of `tag` by `sender` (the
    payload is GitHub's own example, re-pointed), on attempt `attempt`."""
    sha = git(repo, "rev-parse", f"{tag}^{{}}")
    event = github_events.push(f"refs/tags/{tag}", sha, sender=sender)
    path = tmp_path / f"push-{tag.replace('#', '-')}-{attempt}.json"
    path.write_text(json.dumps(event))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))
    monkeypatch.setenv("GITHUB_REF", f"refs/tags/{tag}")
    monkeypatch.setenv("GITHUB_ACTOR", sender)
    monkeypatch.setenv("GITHUB_TRIGGERING_ACTOR", rerun_by or sender)
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", str(attempt))
    return event


def test_a_pushed_stage_tag_from_someone_not_allowed_is_deleted(gh, policy_repo, with_remote, cli):
    push_stage_tag(policy_repo, "toy#staging#1")
    code, _, err = cli("accept-tag", "toy#staging#1", "--actor", "reader")
    assert code == 1
    assert "reader may not promote to `staging`" in err
    assert "the tag toy#staging#1 was deleted again" in err
    assert git(policy_repo, "tag", "-l", "toy#*") == ""
    assert git(with_remote, "tag", "-l", "toy#*") == ""


def test_a_pushed_stage_tag_from_someone_allowed_is_accepted(
    gh, policy_repo, with_remote, cli, gh_files
):
    from tests.conftest import parse_outputs

    push_stage_tag(policy_repo, "toy#staging#1")
    code, out, err = cli("accept-tag", "toy#staging#1", "--actor", "dev")
    assert code == 0, err
    assert "toy@v0.1.0 accepted in staging" in out
    outputs = parse_outputs(gh_files["output"].read_text())
    assert (outputs["stage"], outputs["version"], outputs["model"]) == ("staging", "v0.1.0", "toy")
    assert outputs["deploy"] == "true"
    assert git(with_remote, "tag", "-l", "toy#*") == "toy#staging#1"


def test_pushed_tag_skipping_the_required_stage_is_deleted(gh, policy_repo, with_remote, cli):
    push_stage_tag(policy_repo, "toy#prod#1")
    code, _, err = cli("accept-tag", "toy#prod#1", "--actor", "boss")
    assert code == 1 and "must be in stage `staging` before `prod`" in err
    assert git(with_remote, "tag", "-l", "toy#*") == ""


def test_a_version_tag_is_not_a_promotion(gh, policy_repo, cli):
    code, out, _ = cli("accept-tag", "toy@v0.1.0")
    assert code == 0 and "not a stage assignment; nothing to promote" in out


def test_a_rerun_must_be_allowed_for_who_started_it_and_who_pressed_rerun(
    gh, policy_repo, cli, monkeypatch
):
    # github.actor stays the first attempt's; github.triggering_actor is who re-ran it.
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    monkeypatch.setenv("GITHUB_ACTOR", "dev")
    monkeypatch.setenv("GITHUB_TRIGGERING_ACTOR", "reader")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "reader may not promote to `staging`" in err
    monkeypatch.setenv("GITHUB_ACTOR", "reader")  # a refused dispatch, re-run by someone allowed
    monkeypatch.setenv("GITHUB_TRIGGERING_ACTOR", "dev")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "reader may not promote to `staging`" in err
    assert tags(policy_repo) == []
    monkeypatch.delenv("GITHUB_TRIGGERING_ACTOR")  # a re-run, but who pressed it is unknown
    monkeypatch.setenv("GITHUB_ACTOR", "dev")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "who is promoting is unknown" in err
    monkeypatch.setenv("GITHUB_TRIGGERING_ACTOR", "boss")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 0, err
    assert "dev has write permission; boss has admin permission" in err


def test_a_tag_the_promote_workflow_deployed_is_accepted_but_not_deployed_again(
    gh, policy_repo, with_remote, cli, gh_files
):
    """With a PAT or App token, model-promote's tag push starts model-tag too: one deploys."""
    from tests.conftest import parse_outputs

    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev", "--push")
    assert code == 0, err
    assert cli("accept-tag", "toy#staging#1", "--actor", "dev")[0] == 0
    assert parse_outputs(gh_files["output"].read_text())["deploy"] == "true"
    git(policy_repo, "tag", "-d", "toy#staging#1")
    git(with_remote, "tag", "-d", "toy#staging#1")
    gh_files["output"].write_text("")
    code, _, err = cli(
        "promote", "toy", "v0.1.0", "staging", "--actor", "dev", "--push", "--deployed-here"
    )
    assert code == 0, err
    code, out, err = cli("accept-tag", "toy#staging#1", "--actor", "dev")
    assert code == 0, err
    outputs = parse_outputs(gh_files["output"].read_text())
    assert (outputs["stage"], outputs["deploy"]) == ("staging", "false")
    assert "was deployed by the workflow that promoted it" in out + err


def test_only_the_tags_own_message_marks_it_deployed_never_a_commit_message(
    gh, policy_repo, cli, gh_files, monkeypatch, tmp_path
):
    """git shows a lightweight tag's commit message as its contents: a merged commit whose
    message carries the trailer must not decide anything. A lightweight tag is no stage
    assignment at all (GTO reads only annotated tags): refused, said plainly, not deployed."""
    from tests.conftest import commit_all, parse_outputs, set_params

    set_params(policy_repo, lr=0.7)
    commit_all(policy_repo, "fix: tweak\n\nLepton-Deployed-By: someone")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    git(policy_repo, "tag", "toy#staging#1", "toy@v0.1.1^{}")
    code, _, err = cli("accept-tag", "toy#staging#1", "--actor", "dev")
    assert code == 1 and "toy#staging#1 is a lightweight tag" in err
    assert "deploy" not in parse_outputs(gh_files["output"].read_text())
    # In an annotated tag the key counts only as a trailer, not inside the message's text.
    git(
        policy_repo,
        "tag",
        "-a",
        "toy#staging#2",
        "toy@v0.1.1^{}",
        "-m",
        "x\n\nLepton-Deployed-By: a\nmore",
    )
    gh_files["output"].write_text("")
    tag_pushed(monkeypatch, tmp_path, policy_repo, "toy#staging#2", "dev")
    assert cli("accept-tag", "toy#staging#2")[0] == 0
    assert parse_outputs(gh_files["output"].read_text())["deploy"] == "true"


def test_the_pusher_is_read_from_the_push_event(gh, policy_repo, with_remote, cli, tmp_path, mp):
    """Without --actor, the tag's pusher is the push event's `sender`, not a variable a step
    could have set: `GITHUB_ACTOR` says dev, but reader pushed."""
    push_stage_tag(policy_repo, "toy#staging#1")
    tag_pushed(mp, tmp_path, policy_repo, "toy#staging#1", "reader")
    mp.setenv("GITHUB_ACTOR", "dev")
    code, _, err = cli("accept-tag", "toy#staging#1")
    assert code == 1 and "reader may not promote to `staging`" in err
    assert git(with_remote, "tag", "-l", "toy#*") == ""


@pytest.mark.parametrize(
    ("pusher", "rerun_by", "refused"),
    [("reader", "dev", "reader"), ("dev", "reader", "reader"), ("dev", "boss", None)],
)
def test_a_rerun_of_the_tag_workflow_needs_the_pusher_and_the_rerunner_allowed(
    gh, policy_repo, with_remote, cli, tmp_path, mp, pusher, rerun_by, refused
):
    """A refused pusher's tag is not let through by an allowed person pressing re-run, nor an
    allowed pusher's right lent to whoever re-runs."""
    push_stage_tag(policy_repo, "toy#staging#1")
    tag_pushed(mp, tmp_path, policy_repo, "toy#staging#1", pusher, attempt=2, rerun_by=rerun_by)
    code, _, err = cli("accept-tag", "toy#staging#1")
    if refused:
        assert code == 1 and f"{refused} may not promote to `staging`" in err
        assert "the tag toy#staging#1 was deleted again" in err
        assert git(with_remote, "tag", "-l", "toy#*") == ""
    else:
        assert code == 0, err
        assert "dev has write permission; boss has admin permission" in err
        assert git(with_remote, "tag", "-l", "toy#*") == "toy#staging#1"


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        # a proxy page instead of the API: an answer that is no answer
        (Fault("GET", "/collaborators/", 200, body=b"<html>maintenance</html>", times=9),
         "answered 200 with a body that is not JSON"),
        # a body that cannot be decoded: an error the client does not know (requests')
        (Fault("GET", "/collaborators/", 200, headers={"Content-Encoding": "gzip"},
               body=b"not gzip", times=9),
         "could not be authorised (ContentDecodingError"),
        # a token that lost its access while the run waited
        (Fault("GET", "/collaborators/", 401, body={"message": "Bad credentials"}, times=9),
         "failed: 401 Bad credentials"),
    ],
)  # fmt: skip
def test_any_failure_to_authorise_is_a_refusal_that_deletes_the_tag(
    gh, policy_repo, with_remote, cli, tmp_path, mp, fault, said
):
    push_stage_tag(policy_repo, "toy#staging#1")
    tag_pushed(mp, tmp_path, policy_repo, "toy#staging#1", "dev")
    gh.state.faults.append(fault)
    code, _, err = cli("accept-tag", "toy#staging#1")
    assert code == 1 and said in err, err
    assert "the tag toy#staging#1 was deleted again" in err
    assert git(policy_repo, "tag", "-l", "toy#*") == ""
    assert git(with_remote, "tag", "-l", "toy#*") == ""


def test_github_failing_with_5xx_is_a_refusal_that_deletes_the_tag(
    gh, policy_repo, with_remote, tmp_path, mp
):
    """5xx after the client's retries (handed in without waits between them)."""
    from lepton_ci.core.context import Context
    from lepton_ci.core.errors import LeptonError
    from lepton_ci.core.github import GitHubClient
    from lepton_ci.versions.operations import accept_pushed_tag

    push_stage_tag(policy_repo, "toy#staging#1")
    tag_pushed(mp, tmp_path, policy_repo, "toy#staging#1", "dev")
    gh.state.faults.append(Fault("GET", "/collaborators/", 503, times=3))
    client = GitHubClient("test-token", base_url=gh.url, max_retries=2, sleep=lambda s: None)
    with pytest.raises(LeptonError) as e:
        accept_pushed_tag(Context.load(cwd=policy_repo), "toy#staging#1", github=client)
    assert "failed: 503" in e.value.message and "was deleted again" in e.value.message
    assert gh.state.count("GET", "/collaborators/dev/permission") == 3
    assert git(with_remote, "tag", "-l", "toy#*") == ""


def test_a_tag_that_cannot_be_deleted_from_the_remote_says_so(
    gh, policy_repo, with_remote, cli, tmp_path, mp
):
    push_stage_tag(policy_repo, "toy#staging#1")
    tag_pushed(mp, tmp_path, policy_repo, "toy#staging#1", "reader")
    hook = with_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected tag' >&2\nexit 1\n")
    hook.chmod(0o755)
    code, _, err = cli("accept-tag", "toy#staging#1")
    assert code == 1 and "reader may not promote" in err
    assert "deleting it from origin FAILED" in err
    assert "git push origin :refs/tags/toy#staging#1" in err
