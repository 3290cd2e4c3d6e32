"""Who may promote: users, teams and repository permission, asked of the GitHub API."""

import pytest

from tests.conftest import git
from tests.support.github_server import GitHubServer

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
    with GitHubServer() as srv:
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_TOKEN", "test-token")
        monkeypatch.setenv("GITHUB_API_URL", srv.url)
        srv.state.permissions[(REPO, "dev")] = "write"
        srv.state.permissions[(REPO, "reader")] = "read"
        srv.state.permissions[(REPO, "boss")] = "admin"
        srv.state.teams[("acme", "release-managers")] = {"rm"}
        yield srv


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
    code, out, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")
    assert code == 0, err
    assert "dev has write permission" in out
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
    code, out, err = cli("promote", "toy", "v0.1.0", "prod", "--actor", actor)
    assert code == 0, err
    assert why in out


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


def test_policy_without_github_is_refused_not_skipped(policy_repo, cli, monkeypatch):
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "dev")
    assert code == 1 and "without the GitHub API" in err
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "who is promoting is unknown" in err
    assert tags(policy_repo) == []


def test_team_syntax_is_validated(tmp_path):
    from lepton_ci import config
    from lepton_ci.errors import ConfigError

    p = tmp_path / "lepton.yaml"
    p.write_text(
        "models:\n  m:\n    train: x\n    metrics: [m.json]\n"
        "stages:\n  prod:\n    allow: {teams: [justaname]}\n"
    )
    with pytest.raises(ConfigError, match="must be written as ORG/TEAM-SLUG"):
        config.load(p)
