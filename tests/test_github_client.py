"""The GitHub client against a real local HTTP server speaking GitHub's REST shapes."""

from pathlib import Path

import pytest

from lepton_ci.core.github import GitHubClient, GitHubError
from tests.support.github_server import Fault, GitHubServer, Token

pytestmark = pytest.mark.e2e
REPO = "acme/models"


@pytest.fixture
def gh():
    with GitHubServer() as srv:
        yield srv


def client(srv, token="test-token", **kw):
    sleeps = []
    c = GitHubClient(token, base_url=srv.url, sleep=sleeps.append, **kw)
    return c, sleeps


def test_pagination_follows_link_headers(gh):
    c, _ = client(gh)
    ids = [gh.state.new_comment(REPO, 7, f"c{i}")["id"] for i in range(250)]
    got = list(c.issue_comments(REPO, 7))
    assert [x["id"] for x in got] == ids
    assert gh.state.count("GET", "/issues/7/comments") == 3 == c.calls


def test_502_then_success_is_retried_with_backoff(gh):
    gh.state.faults.append(Fault("POST", r"/comments$", 502, times=2))
    c, sleeps = client(gh)
    created = c.create_comment(REPO, 1, "hello")
    assert created["body"] == "hello"
    assert sleeps == [1, 2]
    assert len(gh.state.comments[(REPO, 1)]) == 1


def test_5xx_retries_are_bounded(gh):
    gh.state.faults.append(Fault("GET", r"/pulls/", 503, times=10))
    c, sleeps = client(gh, max_retries=3)
    with pytest.raises(GitHubError, match="503"):
        c.pull(REPO, 1)
    assert len(sleeps) == 3 and gh.state.count("GET", "/pulls/") == 4


NOW = 1_800_000_000.0  # the client's clock, fixed: no test depends on the wall clock


def test_primary_rate_limit_waits_until_reset(gh):
    reset = int(NOW) + 3
    gh.state.faults.append(
        Fault(
            "GET",
            r"/comments",
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            {"message": "API rate limit exceeded for installation ID 1."},
        )
    )
    c, sleeps = client(gh, clock=lambda: NOW)
    assert list(c.issue_comments(REPO, 1)) == []
    assert sleeps == [4.0]  # until the reset, plus a second


def test_secondary_rate_limit_honours_retry_after(gh):
    gh.state.faults.append(
        Fault(
            "PATCH",
            r"/comments/",
            429,
            {"retry-after": "7"},
            {"message": "You have exceeded a secondary rate limit."},
        )
    )
    c, sleeps = client(gh)
    cid = c.create_comment(REPO, 1, "a")["id"]
    assert c.update_comment(REPO, cid, "b")["body"] == "b"
    assert sleeps == [7.0]


def test_secondary_rate_limit_without_retry_after_backs_off_doubling_from_a_minute(gh):
    """GitHub's docs: with no retry-after, wait at least a minute, then longer each time."""
    gh.state.add_pull(REPO, 1, "a" * 40)
    for _ in range(2):
        gh.state.faults.append(
            Fault(
                "GET", r"/pulls/", 403, {}, {"message": "You have exceeded a secondary rate limit."}
            )
        )
    c, sleeps = client(gh)
    assert c.pull(REPO, 1)["number"] == 1
    assert sleeps == [60.0, 120.0]


def test_rate_limit_reset_too_far_fails_clearly(gh):
    gh.state.faults.append(
        Fault(
            "GET",
            r"/pulls/",
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3600)},
            {"message": "API rate limit exceeded"},
        )
    )
    c, sleeps = client(gh, clock=lambda: NOW)
    with pytest.raises(GitHubError) as e:
        c.pull(REPO, 1)
    assert "longer than lepton-ci waits" in str(e.value) and sleeps == []


def test_bad_token_is_401_and_never_echoed(gh):
    c, _ = client(gh, token="ghp_supersecret")
    with pytest.raises(GitHubError) as e:
        c.pull(REPO, 1)
    assert "401" in str(e.value) and "ghp_supersecret" not in str(e.value)
    assert "GITHUB_TOKEN" in str(e.value)


def test_read_only_token_hints_permissions_or_two_phase(gh):
    gh.state.tokens["ro"] = Token("github-actions[bot]", write=False)
    c, _ = client(gh, token="ro")
    with pytest.raises(GitHubError) as e:
        c.create_comment(REPO, 1, "x")
    assert "permissions: {pull-requests: write}" in str(e.value)
    fork, _ = client(gh, token="ro", fork=True)
    with pytest.raises(GitHubError) as e:
        fork.create_comment(REPO, 1, "x")
    assert "workflow_run" in str(e.value) and "--from BUNDLE" in str(e.value)


WORKFLOWS = Path(__file__).resolve().parent.parent / "lepton_ci" / "templates" / "workflows"


def test_each_workflows_token_does_what_its_job_does_and_nothing_else(gh, pushed):
    """A workflow's GITHUB_TOKEN is made for its own repository, with exactly its job's
    `permissions:`. GitHub answers 403 "Resource not accessible by integration" for a
    missing permission and 404 for any other repository; the error says which permission
    the job lacks."""
    from lepton_ci.deploy.github_deployments import Recorder
    from lepton_ci.watch.issues import IssueKeeper

    gh.state.add_pull(REPO, 1, "a" * 40)
    issue = gh.state.new_issue(REPO, "an issue", "", [])["number"]

    def token(workflow, job):
        return client(gh, token=gh.state.job_token(WORKFLOWS / workflow, job, REPO))[0]

    commenter = token("model-pr-comment.yml", "comment")
    assert commenter.create_comment(REPO, 1, "the report")["body"] == "the report"
    with pytest.raises(GitHubError, match="Resource not accessible by integration") as e:
        commenter.create_comment(REPO, issue, "x")  # an issue: `issues: write`, not granted
    with pytest.raises(GitHubError, match="Resource not accessible by integration") as e:
        Recorder(commenter, REPO).start("prod", release())
    assert e.value.hint == "give the workflow job `permissions: {deployments: write}`"
    with pytest.raises(GitHubError, match="404") as e:
        commenter.pull("acme/other", 1)
    assert "a token without access also sees 404" in (e.value.hint or "")

    runner = token("model-pr.yml", "run")  # contents: read, and nothing else
    with pytest.raises(GitHubError) as e:
        runner.create_comment(REPO, 1, "x")
    assert e.value.status == 403
    assert "`permissions: {pull-requests: write}` (issues: write for an issue's" in str(e.value)

    releaser = token("model-main.yml", "release")
    rec = Recorder(releaser, REPO)
    rec.start("staging", release())
    rec.finish(True, "healthy", "https://run", "https://staging.example")
    with pytest.raises(GitHubError, match="issues: write"):
        releaser.create_issue(REPO, "x", "y", [])

    watcher = token("model-watch.yml", "watch")
    url = IssueKeeper(watcher, REPO).sync("digits", "prod", "breached", "| errors | breach |")
    assert url.endswith(f"/issues/{issue + 1}")
    with pytest.raises(GitHubError, match="pull-requests: write"):
        watcher.create_comment(REPO, 1, "x")  # the PR's conversation is the PR's


def test_enterprise_base_url_with_path(gh):
    c = GitHubClient("test-token", base_url=gh.url + "/api/v3", sleep=lambda s: None)
    gh.state.add_pull(REPO, 3, "a" * 40)
    assert c.pull(REPO, 3)["head"]["sha"] == "a" * 40
    assert gh.state.log[-1][1].startswith("/api/v3/repos/")


def test_unreachable_server_is_bounded(gh):
    c = GitHubClient(
        "t", base_url="http://127.0.0.1:9", sleep=lambda s: None, max_retries=2, timeout=2
    )
    with pytest.raises(GitHubError, match=r"unreachable .* after 3 tries"):
        c.pull(REPO, 1)


def test_from_env_masks_token_and_reads_api_url(gh):
    import io

    from lepton_ci.core.gha import Runtime

    out = io.StringIO()
    rt = Runtime({"GITHUB_ACTIONS": "true"}, out)
    c = GitHubClient.from_env({"GITHUB_TOKEN": "tok123", "GITHUB_API_URL": gh.url}, rt)
    assert c.base_url == gh.url
    assert out.getvalue() == "::add-mask::tok123\n"


def release(commit="c" * 40):
    from lepton_ci.deploy.manifests import Release

    return Release("digits", "v1.2.0", "r/digits@sha256:" + "a" * 64, "d" * 64, 3, commit=commit)


@pytest.fixture
def pushed(gh):
    """The commit the releases name is on GitHub."""
    gh.state.refs[REPO] = {"refs/heads/main": "c" * 40}


def test_a_deployment_answered_502_after_it_landed_is_not_made_twice(gh, pushed):
    from lepton_ci.deploy.github_deployments import Recorder

    # The write lands, then a proxy loses the answer. A blind retry would leave two
    # Deployments and two in_progress statuses.
    gh.state.faults += [
        Fault("POST", r"/deployments$", 502, after=True),
        Fault("POST", r"/statuses$", 502, after=True),
    ]
    c, sleeps = client(gh)
    rec = Recorder(c, REPO)
    rec.start("prod", release())
    rec.finish(True, "v1.2.0 healthy", "https://run", "https://prod.example")
    (dep,) = gh.state.deployments[REPO]
    assert rec.deployment_id == dep["id"] and dep["payload"]["version"] == "v1.2.0"
    assert [s["state"] for s in gh.state.statuses[dep["id"]]] == ["in_progress", "success"]
    assert sleeps == [1, 1] and gh.state.count("POST", "/deployments") == 3  # one per write


def test_a_deployment_that_did_not_land_is_posted_again(gh, pushed):
    from lepton_ci.deploy.github_deployments import Recorder

    gh.state.faults.append(Fault("POST", r"/deployments$", 503))  # refused before storing
    c, _ = client(gh)
    Recorder(c, REPO).start("staging", release())
    (dep,) = gh.state.deployments[REPO]
    assert dep["environment"] == "staging"
    assert gh.state.count("POST", "/deployments") == 3  # 503, then the real one, then a status


def test_a_comment_answered_502_after_it_landed_heals_to_one(gh, monkeypatch, tmp_path):
    """The comment POST is retried blindly; the sticky upsert then keeps the oldest."""
    from lepton_ci.report import comment as report
    from lepton_ci.report import sticky

    gh.state.faults.append(Fault("POST", r"/comments$", 502, after=True))
    c, _ = client(gh)
    meta = report.BundleMeta(model="digits", workflow="model-pr", head_sha="e" * 40, pr=5)
    rendered = report.Rendered(report.marker("digits", "model-pr") + "\nbody\n", "x" * 64, [])
    out = sticky.upsert(c, REPO, 5, rendered, meta, head_sha="e" * 40)
    (kept,) = gh.state.comments[(REPO, 5)]
    assert out.comment_id == kept["id"]


def test_the_stand_in_reports_what_github_would_not_accept(gh):
    """Its answers and the requests it gets are checked against GitHub's OpenAPI description."""
    c, _ = client(gh)
    with pytest.raises(GitHubError, match='"ref" wasn\'t supplied'):
        c.json("POST", f"/repos/{REPO}/deployments", json={"environment": "prod"})  # no `ref`
    with pytest.raises(GitHubError):
        c.json("GET", f"/repos/{REPO}/deployment-plans")  # no such operation
    found, gh.state.violations[:] = list(gh.state.violations), []
    assert any("request POST /repos/acme/models/deployments" in v and "ref" in v for v in found)
    assert any("no such operation in GitHub's REST API" in v for v in found)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ([], "JSON that is not an object (list)"),
        ("login page", "JSON that is not an object (str)"),
        (b"<html>proxy login</html>", "a body that is not JSON"),
        (b"", "JSON that is not an object (empty)"),  # a 200 with no body at all
    ],
)
def test_an_answer_that_is_not_a_json_object_is_a_clear_error(gh, body, what):
    gh.state.faults.append(Fault("GET", r"/pulls/1$", 200, body=body))
    c, _ = client(gh)
    with pytest.raises(GitHubError) as e:
        c.pull(REPO, 1)
    assert what in str(e.value) and "GITHUB_API_URL" in str(e.value)
    gh.state.faults.append(Fault("GET", r"/comments$", 200, body={"not": "a list"}))
    with pytest.raises(GitHubError, match="not a list"):
        list(c.issue_comments(REPO, 1))
    gh.state.faults.append(Fault("GET", r"/comments$", 200, body=[{"body": "no id"}]))
    with pytest.raises(GitHubError, match="a comment without an id"):
        list(c.issue_comments(REPO, 1))
    gh.state.violations.clear()  # these answers are not GitHub's on purpose


def test_a_403_is_called_rate_limiting_only_when_it_is(gh):
    gh.state.faults.append(Fault("GET", r"/pulls/1$", 403, body=[{"odd": "shape"}]))
    c, _ = client(gh)
    with pytest.raises(GitHubError) as e:
        c.pull(REPO, 1)
    assert "rate limit" not in str(e.value) and "not allowed" in str(e.value)
    gh.state.faults.append(
        Fault("GET", r"/pulls/1$", 403, body={"message": "API rate limit exceeded for x"})
    )
    with pytest.raises(GitHubError, match="rate limited"):
        c.pull(REPO, 1)
    gh.state.violations.clear()  # the odd 403 body is not GitHub's on purpose


def test_a_retry_after_that_is_a_date_waits_a_minute(gh):
    """Retry-After may be an HTTP date: lepton-ci does not parse it, it waits 60 s."""
    gh.state.faults.append(
        Fault("GET", r"/pulls/1$", 429, {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"})
    )
    gh.state.add_pull(REPO, 1, "a" * 40)
    c, sleeps = client(gh)
    assert c.pull(REPO, 1)["number"] == 1
    assert sleeps == [60.0]


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("GET", lambda c: list(c.issue_comments(REPO, 1))),
        ("POST", lambda c: c.create_comment(REPO, 1, "x")),
        ("PATCH", lambda c: c.update_comment(REPO, 5, "x")),
    ],
)
def test_a_comment_without_an_id_names_the_call(gh, method, call):
    body = [{"body": "no id"}] if method == "GET" else {"body": "no id"}
    gh.state.faults.append(Fault(method, r"/comments(/5)?$", 200, body=body))
    c, _ = client(gh)
    with pytest.raises(GitHubError) as e:
        call(c)
    path = "/repos/acme/models/issues/" + ("comments/5" if method == "PATCH" else "1/comments")
    assert str(e.value).startswith(
        f"GitHub API {method} {path} answered 200 with a comment without an id or a text body"
    )
    gh.state.violations.clear()  # these answers are not GitHub's on purpose


def test_a_wait_of_exactly_max_wait_is_waited(gh):
    gh.state.faults.append(Fault("GET", r"/pulls/1$", 429, {"retry-after": "7"}))
    gh.state.add_pull(REPO, 1, "a" * 40)
    c, sleeps = client(gh, max_wait=7)
    assert c.pull(REPO, 1)["number"] == 1 and sleeps == [7.0]
    gh.state.faults.append(Fault("GET", r"/pulls/1$", 429, {"retry-after": "8"}))
    with pytest.raises(GitHubError, match="may be retried in 8s, longer than lepton-ci waits"):
        c.pull(REPO, 1)


def test_a_body_over_the_limit_says_so(gh):
    c, _ = client(gh)
    with pytest.raises(GitHubError) as e:
        c.create_comment(REPO, 1, "x" * 65537)
    assert e.value.status == 422 and e.value.hint == "the body is over GitHub's limit"


def test_the_api_defaults_to_github_com_and_masks_the_token():
    class Rt:
        masked: list[str] = []

        def mask(self, value):
            self.masked.append(value)

    rt = Rt()
    c = GitHubClient.from_env({"GITHUB_TOKEN": "t0k"}, rt)
    assert c.base_url == "https://api.github.com" and rt.masked == ["t0k"]
    assert c.session.headers["Authorization"] == "Bearer t0k"
    c = GitHubClient.from_env(
        {
            "LEPTON_GITHUB_TOKEN": "a",
            "GITHUB_TOKEN": "b",
            "GITHUB_API_URL": "https://ghe.example/api/v3/",
        }
    )
    assert c.base_url == "https://ghe.example/api/v3"
    assert c.session.headers["Authorization"] == "Bearer a"
    assert "Authorization" not in GitHubClient.from_env({}).session.headers
    assert c.session.headers["Accept"] == "application/vnd.github+json"
    assert c.session.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_an_unreachable_api_is_retried_with_backoff_then_named():
    sleeps = []
    c = GitHubClient(
        "t", base_url="http://127.0.0.1:9", sleep=sleeps.append, max_retries=3, timeout=2
    )
    with pytest.raises(GitHubError) as e:
        c.pull(REPO, 1)
    assert sleeps == [1, 2, 4] and c.calls == 4 and e.value.ambiguous
    assert "unreachable" in str(e.value) and "after 4 tries" in str(e.value)


def test_only_a_too_long_422_is_called_too_long(gh):
    c, _ = client(gh)
    with pytest.raises(GitHubError) as e:
        c.create_issue(REPO, "", "no title", [])
    assert e.value.status == 422 and e.value.hint is None
    gh.state.violations.clear()  # an issue without a title is refused on purpose


def test_a_write_that_never_lands_is_tried_a_bounded_number_of_times(gh):
    gh.state.faults.append(Fault("POST", r"/deployments$", 502, times=100))
    c, sleeps = client(gh, max_retries=3)
    looked = []
    with pytest.raises(GitHubError) as e:
        c.create(f"/repos/{REPO}/deployments", {"ref": "main"}, landed=lambda: looked.append(1))
    assert e.value.status == 502 and e.value.ambiguous
    assert gh.state.count("POST", "/deployments") == 4 and len(looked) == 3
    assert sleeps == [1, 2, 4] and c.calls == 4
