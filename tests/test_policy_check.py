"""policy.check against the GitHub stand-in, without git or the CLI: every permission level
against every required level, memberships in each state, and what each refusal says.

Fast enough to run once per mutant (tests/mutation/run.py)."""

import itertools

import pytest

from lepton_ci.core.config import PromotionPolicy
from lepton_ci.core.errors import RegistryError
from lepton_ci.core.github import GitHubClient, GitHubError
from lepton_ci.versions import policy
from tests.support.github_server import Fault, GitHubServer

pytestmark = pytest.mark.e2e
REPO = "acme/models"
LEVELS = ["read", "triage", "write", "maintain", "admin"]


@pytest.fixture(scope="module")
def gh():
    with GitHubServer() as srv:
        for level in ["none", *LEVELS]:
            srv.state.permissions[(REPO, f"u-{level}")] = level
        srv.state.teams[("acme", "release-managers")] = {"rm"}
        srv.state.pending[("acme", "release-managers")] = {"invited"}
        yield srv


def check(gh, actor, token="teams-token", stage="prod", **allow):
    client = GitHubClient(token, base_url=gh.url, max_retries=0, sleep=lambda s: None)
    return policy.check(PromotionPolicy(**allow), actor, stage, client=client, repo=REPO)


@pytest.mark.parametrize(("has", "needs"), list(itertools.product(["none", *LEVELS], LEVELS)))
def test_a_level_admits_exactly_itself_and_the_levels_below(gh, has, needs):
    """`none` is what GitHub answers for someone without access: below every level."""
    if has != "none" and LEVELS.index(has) >= LEVELS.index(needs):
        assert check(gh, f"u-{has}", permission=needs) == f"u-{has} has {has} permission"
    else:
        with pytest.raises(RegistryError, match=f"u-{has} may not promote to `prod`"):
            check(gh, f"u-{has}", permission=needs)


def test_a_pending_invitation_is_no_membership(gh):
    assert check(gh, "rm", teams=["acme/release-managers"]) == (
        "rm is a member of acme/release-managers"
    )
    with pytest.raises(RegistryError, match="invited may not promote") as e:
        check(gh, "invited", teams=["acme/release-managers"])
    assert e.value.hint == (
        "ask one of them to promote, or change `stages.prod.allow` in lepton.yaml"
    )
    assert gh.state.count("GET", "/memberships/invited") == 1


def test_a_non_member_of_one_team_may_be_a_member_of_the_next(gh):
    gh.state.teams[("acme", "sre")] = {"sam"}
    allow = {"teams": ["acme/release-managers", "acme/sre"]}
    assert check(gh, "sam", **allow) == "sam is a member of acme/sre"
    with pytest.raises(RegistryError, match="nobody-here may not promote"):
        check(gh, "nobody-here", **allow)


def test_permission_first_then_teams(gh):
    allow = {"teams": ["acme/release-managers"], "permission": "admin"}
    assert check(gh, "rm", **allow) == "rm is a member of acme/release-managers"
    assert check(gh, "u-admin", **allow) == "u-admin has admin permission"


def test_someone_without_access_or_unknown_to_github_is_refused_and_teams_still_asked(gh):
    """GitHub answers `none` for a user with no access to the repository and 404 for a login
    that is no user: both are "not allowed by permission", never an error, and a team
    that admits them is still asked."""
    gh.state.users.add("outsider")
    with pytest.raises(RegistryError, match="outsider may not promote to `prod`"):
        check(gh, "outsider", permission="read")
    with pytest.raises(RegistryError, match="ghost may not promote to `prod`"):
        check(gh, "ghost", permission="read")
    asked = [(p, code) for _, p, code in gh.state.log if "/ghost/" in p]
    assert asked == [(f"/repos/{REPO}/collaborators/ghost/permission", 404)]  # no such user
    gh.state.teams[("acme", "contractors")] = {"contractor"}
    allow = {"teams": ["acme/contractors"], "permission": "write"}
    assert check(gh, "contractor", **allow) == "contractor is a member of acme/contractors"
    with pytest.raises(RegistryError, match="ghost may not promote to `prod`"):
        check(gh, "ghost", **allow)
    assert gh.state.count("GET", "/memberships/ghost") == 1


def test_a_token_for_another_repository_sees_none_of_this_one(gh):
    """An installation token is made for its own repository: GitHub answers 404 for any
    other, which must not read as "no such user" and refuse someone who may promote."""
    from tests.support.github_server import Token

    gh.state.tokens["other-repo"] = Token("github-actions[bot]", repos=frozenset({"acme/other"}))
    client = GitHubClient("other-repo", base_url=gh.url, max_retries=0, sleep=lambda s: None)
    with pytest.raises(RegistryError, match="cannot read") as e:
        policy.check(
            PromotionPolicy(permission="write"), "u-admin", "prod", client=client, repo=REPO
        )
    assert "acme/models" in str(e.value) and "may not promote" not in str(e.value)


def test_listed_users_need_no_api(gh):
    before = len(gh.state.log)
    assert check(gh, "release-bot", users=["release-bot"]) == "release-bot is listed for `prod`"
    assert len(gh.state.log) == before
    with pytest.raises(RegistryError, match=r"who may: users release-bot\n"):
        check(gh, "u-admin", users=["release-bot"])
    assert len(gh.state.log) == before  # only users: refused without asking GitHub


def test_who_may_lists_every_rule_or_nobody():
    assert policy.who_may(PromotionPolicy()) == "nobody"
    full = PromotionPolicy(users=["a", "b"], teams=["o/t", "o/u"], permission="write")
    assert policy.who_may(full) == (
        "users a, b; members of o/t, o/u; anyone with write permission or higher"
    )


def test_unknown_actor_and_non_login_are_refused(gh):
    with pytest.raises(RegistryError, match="who is promoting is unknown") as e:
        check(gh, "", permission="read")
    assert "GITHUB_TRIGGERING_ACTOR" in (e.value.hint or "")
    with pytest.raises(RegistryError, match="is not a GitHub login") as e:
        check(gh, "a/../b", permission="read")
    assert e.value.hint == "pass --actor the login of who promotes"
    assert check(gh, "dependabot[bot]", users=["dependabot[bot]"]).startswith("dependabot[bot]")


@pytest.mark.parametrize(("client", "repo"), [(None, REPO), ("c", ""), (None, "")])
def test_no_api_no_promotion(gh, client, repo):
    c = GitHubClient("teams-token", base_url=gh.url) if client else None
    with pytest.raises(RegistryError, match="without the GitHub API"):
        policy.check(PromotionPolicy(permission="read"), "u-admin", "s", client=c, repo=repo)


@pytest.mark.parametrize("status", [403, 404])
def test_a_team_that_cannot_be_read_is_not_a_refusal(gh, status):
    gh.state.faults.append(Fault("GET", r"/teams/release-managers$", status))
    with pytest.raises(RegistryError, match=f"GitHub answered {status}") as e:
        check(gh, "rm", teams=["acme/release-managers"])
    assert "may not promote" not in str(e.value)
    assert "Members: read" in (e.value.hint or "")


@pytest.mark.parametrize("path", [r"/teams/release-managers$", r"/memberships/rm$"])
def test_other_team_errors_are_raised_as_they_are(gh, path):
    gh.state.faults.append(Fault("GET", path, 401))
    with pytest.raises(GitHubError) as e:
        check(gh, "rm", teams=["acme/release-managers"])
    assert e.value.status == 401


@pytest.mark.parametrize(
    ("answer", "level"),
    [
        ({"role_name": "maintain", "permission": "write"}, "maintain"),
        ({"role_name": "custom", "permission": "read"}, "read"),
        ({"role_name": "", "permission": "admin"}, "admin"),
        ({"role_name": "custom", "permission": "owner"}, "none"),
        ({}, "none"),
        ([], "none"),
        (None, "none"),
    ],
)
def test_level_of_a_permission_answer(answer, level):
    assert policy._level(answer) == level
