"""sticky.upsert against the GitHub stand-in, without the CLI: which comment is kept, when
it is edited, and when a report is too old to replace the one posted."""

import json

import pytest

from lepton_ci.core.github import GitHubClient, GitHubError
from lepton_ci.report.comment import BundleMeta, Rendered, marker
from lepton_ci.report.sticky import upsert
from tests.support.github_server import WORKFLOW_TOKEN, Fault, GitHubServer, Token

pytestmark = pytest.mark.e2e
REPO = "acme/models"
PR = 5
OLD, NEW = "a" * 40, "b" * 40
BOT = "github-actions[bot]"  # who the workflow's token posts as


@pytest.fixture
def gh():
    with GitHubServer() as srv:
        yield srv


def client(gh, token="test-token"):
    return GitHubClient(token, base_url=gh.url, max_retries=0, sleep=lambda s: None)


def report(digest="d1", sha=NEW, run=1, model="digits", workflow="ci"):
    meta = BundleMeta(model=model, workflow=workflow, head_sha=sha, pr=PR, run_id=run)
    line = json.dumps({"sha": sha, "run": run, "digest": digest}, sort_keys=True)
    body = f"{marker(model, workflow)}\nreport {digest}\n<!-- lepton-ci:meta {line} -->\n"
    return Rendered(body, digest, []), meta


def post(gh, digest="d1", sha=NEW, run=1, head=NEW, token="test-token", author=None, **kw):
    rendered, meta = report(digest, sha, run, **kw)
    return upsert(client(gh, token), REPO, PR, rendered, meta, head_sha=head, author=author)


def bodies(gh):
    return [c["body"].split("\n")[1] for c in gh.state.comments.get((REPO, PR), [])]


def test_created_then_updated_then_unchanged(gh):
    c = client(gh)  # one client: `calls` counts each upsert's own calls, not the client's
    c.calls = 5

    def again(digest, run):
        rendered, meta = report(digest, NEW, run)
        return upsert(c, REPO, PR, rendered, meta, head_sha=NEW)

    first = again("d1", 1)
    assert (first.action, first.calls) == ("created", 4)  # who am I, list, create, list again
    assert first.url and first.url.endswith(f"#issuecomment-{first.comment_id}")
    second = again("d2", 2)
    assert (second.action, second.comment_id, second.url) == (
        "updated",
        first.comment_id,
        first.url,
    )
    assert second.calls == 2 and bodies(gh) == ["report d2"]
    again_ = again("d2", 3)
    assert (again_.action, again_.calls, again_.url) == ("unchanged", 1, first.url)
    assert gh.state.count("PATCH") == 1


def test_a_comment_from_before_run_numbers_is_older_than_none(gh):
    """A comment whose meta has no run number (a local run's, run 0) is replaced by run 0."""
    line = json.dumps({"sha": NEW, "digest": "d0"})
    body = f"{marker('digits', 'ci')}\nold\n<!-- lepton-ci:meta {line} -->"
    gh.state.new_comment(REPO, PR, body, BOT, "Bot")
    assert post(gh, "d1", run=0).action == "updated"


def test_the_same_report_for_a_new_head_is_an_update(gh):
    post(gh, "d1", sha=OLD, head=OLD)
    out = post(gh, "d1", sha=NEW, head=NEW)
    assert out.action == "updated"


def test_an_older_run_of_the_same_head_leaves_the_newer_report(gh):
    post(gh, "d1", run=5)
    out = post(gh, "d2", run=4)
    assert out.action == "stale" and bodies(gh) == ["report d1"]
    assert post(gh, "d3", run=5).action == "updated"  # the same run again may update


def test_a_run_for_an_older_head_leaves_the_report_of_the_current_head(gh):
    post(gh, "d1", sha=NEW, run=1, head=NEW)
    out = post(gh, "d2", sha=OLD, run=9, head=NEW)  # a late run for the previous push
    assert out.action == "stale" and bodies(gh) == ["report d1"]
    # without knowing the head, a different sha is not taken for older
    assert post(gh, "d2", sha=OLD, run=9, head=None).action == "updated"


def test_other_models_and_workflows_and_users_keep_their_comments(gh):
    gh.state.new_comment(REPO, PR, "LGTM")
    gh.state.new_comment(REPO, PR, f"quoting: {marker('digits', 'ci')}")
    post(gh, "d1", model="other")
    post(gh, "d1", workflow="nightly")
    out = post(gh, "d1")
    assert out.action == "created"
    assert len(gh.state.comments[(REPO, PR)]) == 5


def test_a_person_pasting_the_marker_and_a_forged_report_is_not_lepton_ci(gh):
    """The PR's author pastes a comment that starts with the marker and claims a newer run
    of the current head: taken for ours, it made the real report `stale` (never posted), or
    was edited over. Only lepton-ci's own comments count; theirs stays as they wrote it."""
    line = json.dumps({"sha": NEW, "run": 10**9, "digest": "forged"})
    pasted = f"{marker('digits', 'ci')}\ngates passed\n<!-- lepton-ci:meta {line} -->\n"
    theirs = gh.state.new_comment(REPO, PR, pasted, "forker", association="CONTRIBUTOR")
    out = post(gh, "d1", run=3)
    assert out.action == "created" and out.comment_id != theirs["id"]
    assert out.calls == 4  # list, who am I (refused: a workflow token is no user), create, list
    assert gh.state.count("GET", "/user") == 1
    again = post(gh, "d2", run=4)
    assert (again.action, again.comment_id) == ("updated", out.comment_id)
    mine, pasted_now = (
        [c for c in gh.state.comments[(REPO, PR)] if c["id"] != theirs["id"]],
        [c for c in gh.state.comments[(REPO, PR)] if c["id"] == theirs["id"]],
    )
    assert [c["body"].split("\n")[1] for c in mine] == ["report d2"]
    assert pasted_now[0]["body"] == pasted


def test_a_personal_token_keeps_its_own_comment(gh):
    """A personal token posts as its user, not a bot: that user's marker comment is ours,
    anyone else's is not."""
    from tests.support.github_server import Token

    gh.state.tokens["pat"] = Token("release-manager", user_type="User")
    gh.state.new_comment(REPO, PR, report("d0", run=99)[0].body, "someone-else")
    c = GitHubClient("pat", base_url=gh.url, max_retries=0, sleep=lambda s: None)

    def pat_post(digest, run):
        rendered, meta = report(digest, NEW, run)
        return upsert(c, REPO, PR, rendered, meta, head_sha=NEW)

    first = pat_post("d1", 1)
    assert first.action == "created"
    second = pat_post("d2", 2)
    assert (second.action, second.comment_id) == ("updated", first.comment_id)
    by = {cm["id"]: cm["user"]["login"] for cm in gh.state.comments[(REPO, PR)]}
    assert by[first.comment_id] == "release-manager" and len(by) == 2


def test_a_race_keeps_the_oldest_and_deletes_ours(gh, monkeypatch):
    rendered1, _ = report("d1", run=1)
    rendered2, meta2 = report("d2", run=2)
    c = client(gh)
    real = c.create_comment

    def racing(repo, number, body):
        theirs = gh.state.new_comment(repo, number, rendered1.body, BOT, "Bot")  # lands first
        ours = real(repo, number, body)
        assert theirs["id"] < ours["id"]
        return ours

    monkeypatch.setattr(c, "create_comment", racing)
    monkeypatch.setattr(c, "issue_comments", _empty_first(c.issue_comments))
    c.calls = 10
    out = upsert(c, REPO, PR, rendered2, meta2, head_sha=NEW)
    (kept,) = gh.state.comments[(REPO, PR)]
    assert (out.action, out.comment_id, out.url) == ("updated", kept["id"], kept["html_url"])
    assert out.calls == 5  # who am I, create, list, delete ours, update theirs
    assert kept["body"] == rendered2.body  # ours is newer: it replaces theirs
    assert gh.state.count("DELETE") == 1


def test_a_race_with_a_newer_run_keeps_its_report(gh, monkeypatch):
    rendered1, _ = report("d1", run=7)
    rendered2, meta2 = report("d2", run=2)
    c = client(gh)
    real = c.create_comment

    def racing(repo, number, body):
        gh.state.new_comment(repo, number, rendered1.body, BOT, "Bot")
        return real(repo, number, body)

    monkeypatch.setattr(c, "create_comment", racing)
    monkeypatch.setattr(c, "issue_comments", _empty_first(c.issue_comments))
    out = upsert(c, REPO, PR, rendered2, meta2, head_sha=NEW)
    (kept,) = gh.state.comments[(REPO, PR)]
    assert out.action == "updated" and kept["body"] == rendered1.body
    assert gh.state.count("PATCH") == 0


def _empty_first(listing):
    """The first listing sees no comment (both runs list before either creates)."""
    calls = iter(range(1_000))

    def issue_comments(repo, number):
        if next(calls) == 0:
            return iter(())
        return listing(repo, number)

    return issue_comments


def test_a_forged_marker_comment_by_someone_else_is_never_found_weighed_or_edited(gh):
    """A PR author writes the marker, a huge run number and a passing table into a comment of
    their own: had it been taken for ours, every real report would be judged stale and the
    forgery would stay. It is not ours: the real report gets its own comment."""
    forged_meta = json.dumps({"sha": NEW, "run": 10**12, "digest": "forged"}, sort_keys=True)
    forged = (
        f"{marker('digits', 'ci')}\n| gate | verdict |\n|---|---|\n| accuracy | pass |\n"
        f"<!-- lepton-ci:meta {forged_meta} -->\n"
    )
    fake = gh.state.new_comment(REPO, PR, forged, "mallory", "User")
    other_bot = gh.state.new_comment(REPO, PR, forged, "evil-app[bot]", "Bot")
    first = post(gh, "d1", run=3)
    assert first.action == "created" and first.author == BOT
    assert post(gh, "d2", run=4).action == "updated"
    assert post(gh, "d2", run=4).action == "unchanged"
    comments = gh.state.comments[(REPO, PR)]
    assert [c["body"] for c in comments[:2]] == [forged, forged]
    assert [c["id"] for c in comments] == [fake["id"], other_bot["id"], first.comment_id]
    assert comments[2]["body"].split("\n")[1] == "report d2"
    for c in (fake, other_bot):  # never edited, never deleted
        assert gh.state.count(None, f"/comments/{c['id']}") == 0


def test_a_personal_token_finds_its_users_comments_not_the_bots(gh):
    """A PAT can say who it is (GET /user): its comments are its user's, and the marker
    comment github-actions[bot] wrote for the same model and workflow is someone else's."""
    gh.state.tokens["pat"] = Token("release-manager", user_type="User")
    by_bot = post(gh, "d1")
    mine = post(gh, "d2", token="pat")
    assert (mine.action, mine.author) == ("created", "release-manager")
    assert post(gh, "d3", token="pat").comment_id == mine.comment_id
    assert bodies(gh) == ["report d1", "report d3"] and by_bot.comment_id != mine.comment_id


def test_an_app_token_is_told_by_author_and_learnt_from_its_comment_without_it(gh):
    """An App's installation token may not call GET /user (403, as GitHub answers) and posts
    as APP-SLUG[bot]. Given `author`, its comment is found at once; without it, the comment
    GitHub stored says who posted, the earlier one is found on the second listing, and the
    new one goes: one comment stays, and `guessed` tells the caller to pass `author`."""
    first = post(gh, "d1", token="teams-token", author="release-app[bot]")
    assert (first.action, first.author, first.guessed) == ("created", "release-app[bot]", None)
    second = post(gh, "d2", token="teams-token", author="release-app[bot]")
    assert (second.action, second.comment_id) == ("updated", first.comment_id)
    assert gh.state.count("GET", "/user") == 0  # told, not asked
    third = post(gh, "d3", token="teams-token")
    assert (third.action, third.comment_id) == ("updated", first.comment_id)
    assert (third.author, third.guessed) == ("release-app[bot]", BOT)
    assert bodies(gh) == ["report d3"]


def test_an_identity_github_cannot_confirm_is_an_error_not_a_guess(gh):
    gh.state.faults.append(Fault("GET", "^/user$", 502, times=1))
    with pytest.raises(GitHubError, match="GET /user failed: 502"):
        post(gh, "d1")
    assert gh.state.comments.get((REPO, PR), []) == []


def test_the_workflows_token_need_not_ask_who_it_is(gh):
    """GITHUB_TOKEN is an installation token (`ghs_...`): GET /user would answer 403, so it
    is not asked, and it posts as github-actions[bot]."""
    c = GitHubClient(WORKFLOW_TOKEN, base_url=gh.url, max_retries=0, sleep=lambda s: None)
    assert c.login() is None and c.calls == 0
    out = post(gh, "d1", token=WORKFLOW_TOKEN)
    assert (out.action, out.author, out.guessed, out.calls) == ("created", BOT, None, 3)
    assert gh.state.count("GET", "/user") == 0
    assert post(gh, "d2", token=WORKFLOW_TOKEN).comment_id == out.comment_id
