"""The watch issue keeper against the GitHub stand-in, whose /issues lists pull requests too
(each with a `pull_request` key), as GitHub's does: a pull request is never the issue kept."""

import pytest

from lepton_ci.core.github import GitHubClient
from lepton_ci.watch.issues import LABEL, IssueKeeper
from tests.support.github_server import GitHubServer

pytestmark = pytest.mark.e2e
REPO = "acme/shop"
MARK = "<!-- lepton-ci:watch model=digits env=prod -->"


@pytest.fixture
def gh():
    with GitHubServer() as srv:
        yield srv


def keeper(gh):
    return IssueKeeper(GitHubClient("test-token", base_url=gh.url, max_retries=0), REPO)


def test_a_pull_request_carrying_the_label_and_marker_is_never_the_issue(gh):
    # e.g. a fix whose description quotes the issue, hidden marker included
    gh.state.add_pull(REPO, 1, "a" * 40, labels=(LABEL,), body=f"Fixes the breach\n{MARK}")
    k = keeper(gh)
    assert [i["number"] for i in gh.state.issues[REPO]] == [1]  # /issues holds the PR
    assert list(k.client.issues(REPO, LABEL)) == []
    assert k.find("digits", "prod") is None

    url = k.sync("digits", "prod", "breached", "| errors | breach |")
    pr_view, issue = gh.state.issues[REPO]
    assert url == f"https://github.com/{REPO}/issues/2" and issue["number"] == 2
    assert issue["body"] == f"{MARK}\n| errors | breach |"
    assert k.sync("digits", "prod", "healthy", "ok") == url
    assert issue["state"] == "closed" and issue["state_reason"] == "completed"
    assert gh.state.pulls[(REPO, 1)]["state"] == "open" and pr_view["state"] == "open"
    on_the_pr = gh.state.comments.get((REPO, 1), [])
    assert on_the_pr and not [c for c in on_the_pr if c["user"]["login"] == "github-actions[bot]"]
    assert [c["body"] for c in gh.state.comments[(REPO, 2)]] == ["Healthy again; closing.\n\nok"]


def test_one_issue_per_model_and_environment(gh):
    k = keeper(gh)
    k.sync("digits", "prod", "breached", "first")
    k.sync("digits", "staging", "breached", "other env")
    k.sync("digits", "prod", "breached", "second")
    prod, staging = gh.state.issues[REPO]
    assert prod["title"] == "digits: SLO breach in prod"
    assert [lb["name"] for lb in prod["labels"]] == [LABEL]
    assert [c["body"] for c in gh.state.comments[(REPO, prod["number"])]] == ["second"]
    assert (REPO, staging["number"]) not in gh.state.comments


def test_unknown_and_healthy_without_an_issue_do_nothing(gh):
    k = keeper(gh)
    assert k.sync("digits", "prod", "unknown", "x") == ""
    assert gh.state.log == []  # not even a look
    assert k.sync("digits", "prod", "healthy", "x") == ""
    assert gh.state.count("POST") == gh.state.count("PATCH") == 0
    k.sync("digits", "prod", "breached", "x")
    assert k.sync("digits", "prod", "unknown", "y") == ""
    assert gh.state.issues[REPO][0]["state"] == "open"


def test_a_closed_issue_is_not_reopened_but_a_new_one_is_opened(gh):
    k = keeper(gh)
    k.sync("digits", "prod", "breached", "x")
    k.sync("digits", "prod", "healthy", "y")
    k.sync("digits", "prod", "breached", "z")
    first, second = gh.state.issues[REPO]
    assert (first["state"], second["state"]) == ("closed", "open")
