"""One sticky PR comment per (model, workflow), through the CLI, against the local server."""

import json
import shutil
import threading

import pytest

from lepton_ci.core.record import load
from lepton_ci.report import comment as report
from tests.conftest import commit_all, git, parse_outputs, set_params
from tests.support import github_events as events
from tests.support.github_server import WORKFLOW_TOKEN, Fault, GitHubServer, Token

pytestmark = pytest.mark.e2e
REPO = "acme/models"
PR = 42


@pytest.fixture
def gh():
    with GitHubServer() as srv:
        yield srv


@pytest.fixture
def pr_env(gh, toy_repo, tmp_path, monkeypatch, cli):
    """A registered v0.1.0 on main, then a PR commit on a branch; Actions env for that PR."""
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    git(toy_repo, "checkout", "-q", "-b", "feature")
    set_params(toy_repo, accuracy=0.93, lr=0.2)
    head = commit_all(toy_repo, "feat: better")

    def set_event(sha, run_id=100, pr=PR, event_name="pull_request", extra=None):
        event = {
            "pull_request": {
                "number": pr,
                "head": {"sha": sha, "repo": {"full_name": REPO, "fork": False}},
                "base": {"repo": {"full_name": REPO}},
            }
        }
        event.update(extra or {})
        path = tmp_path / f"event-{run_id}.json"
        path.write_text(json.dumps(event))
        for k, v in {
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_TOKEN": WORKFLOW_TOKEN,  # `ghs_`: no GET /user, github-actions[bot]
            "GITHUB_API_URL": gh.url,
            "GITHUB_WORKFLOW": "model-ci",
            "GITHUB_RUN_ID": str(run_id),
            "GITHUB_BASE_REF": "main",
        }.items():
            monkeypatch.setenv(k, v)

    # the PR's author has pasted a comment carrying this workflow's marker and a forged,
    # newer report: it must neither stop lepton-ci's comment nor be edited by it
    gh.state.add_pull(REPO, PR, head, chatter="model=toy workflow=model-ci")
    set_event(head)
    return set_event


def comments(gh, number=PR):
    """lepton-ci's comments on the PR (the conversation also holds others', see add_pull)."""
    everyone = gh.state.comments.get((REPO, number), [])
    return [c for c in everyone if c["user"]["login"] == "github-actions[bot]"]


def test_create_then_update_never_duplicates(gh, pr_env, cli, toy_repo):
    assert cli("run")[0] == 0
    code, out, _ = cli("comment")
    assert code == 0 and "PR comment created" in out
    assert len(comments(gh)) == 1
    body = comments(gh)[0]["body"]
    assert body.startswith("<!-- lepton-ci:sticky model=toy workflow=model-ci -->")
    assert "vs `toy@v0.1.0`" in body
    assert "| **accuracy** | 0.9 | 0.93 | ▲ +0.03 (+3.33%) 🟢 better | ✅ pass |" in body
    assert "| lr | 0.1 | 0.2 |" in body
    assert "params: 2 changed" in body
    assert "```mermaid\nxychart-beta" in body
    # three more runs with new results: still one comment, edited in place
    for i, acc in enumerate((0.94, 0.95, 0.96)):
        set_params(toy_repo, accuracy=acc)
        head = commit_all(toy_repo, f"fix: {i}")
        gh.state.add_pull(REPO, PR, head)
        pr_env(head, run_id=200 + i)
        assert cli("run")[0] == 0
        code, out, _ = cli("comment")
        assert "PR comment updated" in out
    assert len(comments(gh)) == 1
    assert "0.96" in comments(gh)[0]["body"]


def test_unchanged_report_makes_no_edit_and_at_most_3_calls(gh, pr_env, cli):
    cli("run")
    cli("comment")
    n_before = len(gh.state.log)
    patches = gh.state.count("PATCH")
    code, out, _ = cli("comment")
    assert code == 0
    assert "PR comment unchanged (2 API calls)" in out
    assert gh.state.count("PATCH") == patches
    assert all(m == "GET" for m, _, _ in gh.state.log[n_before:])


def test_update_costs_three_calls(gh, pr_env, cli, toy_repo):
    cli("run")
    cli("comment")
    set_params(toy_repo, accuracy=0.97)
    head = commit_all(toy_repo, "fix: more")
    gh.state.add_pull(REPO, PR, head)
    pr_env(head, run_id=300)
    cli("run")
    code, out, _ = cli("comment")
    assert code == 0
    assert "PR comment updated (3 API calls)" in out


def test_rerun_of_same_commit_with_new_run_link_makes_no_edit(
    gh, pr_env, cli, toy_repo, monkeypatch
):
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.test")
    cli("run")
    cli("comment")
    head = git(toy_repo, "rev-parse", "HEAD")
    pr_env(head, run_id=101)  # a re-run: new run id, new run URL, same results
    cli("run")
    code, out, _ = cli("comment")
    assert code == 0
    assert "unchanged" in out


def test_older_run_never_overwrites_newer_head(gh, pr_env, cli, toy_repo):
    old_head = git(toy_repo, "rev-parse", "HEAD")
    cli("run")
    old_record = (toy_repo / ".lepton" / "runs" / "toy.json").read_text()
    set_params(toy_repo, accuracy=0.99)
    new_head = commit_all(toy_repo, "fix: newer")
    gh.state.add_pull(REPO, PR, new_head)
    pr_env(new_head, run_id=500)
    cli("run")
    assert "PR comment created" in cli("comment")[1]
    newer_body = comments(gh)[0]["body"]
    # the slow run of the older head finishes last
    (toy_repo / ".lepton" / "runs" / "toy.json").write_text(old_record)
    pr_env(old_head, run_id=400)
    code, out, _ = cli("comment")
    assert code == 0
    assert "PR comment stale" in out
    assert comments(gh)[0]["body"] == newer_body


def test_workflows_and_models_get_separate_comments(gh, pr_env, cli):
    cli("run")
    cli("comment")
    cli("comment", "--workflow", "nightly")
    assert len(comments(gh)) == 2


def test_two_concurrent_runs_leave_one_comment(gh, pr_env, cli, toy_repo):
    from lepton_ci.core.gha import Runtime
    from lepton_ci.core.github import GitHubClient
    from lepton_ci.report import publish

    cli("run")
    rec = load(toy_repo / ".lepton" / "runs" / "toy.json")
    import os

    env = dict(os.environ)
    chart = [report.Point(label="v0.1.0", value=0.9), report.Point(label="this PR", value=0.93)]
    metas = [
        report.BundleMeta(
            model="toy",
            workflow="model-ci",
            head_sha=rec.git.sha,
            pr=PR,
            repo=REPO,
            run_id=rid,
            history=h,
        )
        for rid, h in ((601, []), (602, chart))
    ]
    barrier = threading.Barrier(2)
    real_list = GitHubClient.issue_comments

    def slow_list(self, repo, number):
        items = list(real_list(self, repo, number))
        if not getattr(self, "_synced", False):
            self._synced = True
            barrier.wait(5)  # both runs list before either creates
        return iter(items)

    GitHubClient.issue_comments = slow_list
    try:
        errors = []

        def post(meta):
            try:
                publish.comment(
                    env, Runtime(env), rec, meta, client=GitHubClient("test-token", base_url=gh.url)
                )
            except Exception as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=post, args=(m,)) for m in metas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    finally:
        GitHubClient.issue_comments = real_list
    assert errors == []
    assert gh.state.count("POST", "/comments") == 2
    assert len(comments(gh)) == 1
    # whichever created first survives, carrying the newer run's report
    assert report.parse_meta(comments(gh)[0]["body"])["run"] == 602
    assert "xychart-beta" in comments(gh)[0]["body"]


def test_502_on_update_is_retried(gh, pr_env, cli, toy_repo):
    cli("run")
    cli("comment")
    set_params(toy_repo, accuracy=0.91)
    head = commit_all(toy_repo, "fix: x")
    gh.state.add_pull(REPO, PR, head)
    pr_env(head, run_id=700)
    cli("run")
    gh.state.faults.append(Fault("PATCH", r"/comments/", 502))
    code, out, _ = cli("comment")
    assert code == 0 and "updated" in out
    assert "0.91" in comments(gh)[0]["body"]


def test_fork_read_only_token_points_to_two_phase_flow(gh, pr_env, cli, toy_repo):
    gh.state.tokens[WORKFLOW_TOKEN] = Token("github-actions[bot]", write=False)
    head = git(toy_repo, "rev-parse", "HEAD")
    pr_env(
        head,
        extra={
            "pull_request": {
                "number": PR,
                "head": {"sha": head, "repo": {"full_name": "forker/models", "fork": True}},
                "base": {"repo": {"full_name": REPO}},
            }
        },
    )
    cli("run")
    code, _, err = cli("comment")
    assert code == 1 and "workflow_run" in err and "--from BUNDLE" in err
    assert comments(gh) == []


def test_body_over_the_limit_is_trimmed_and_says_so(gh, pr_env, cli, toy_repo):
    many = {f"metric_{i:04d}_{'x' * 60}": 0.5 for i in range(900)}
    set_params(toy_repo, metrics_override={"accuracy": 0.9, "loss": 0.1, **many})
    head = commit_all(toy_repo, "feat: many metrics")
    gh.state.add_pull(REPO, PR, head)
    pr_env(head, run_id=800)
    cli("run")
    code, _, err = cli("comment")
    assert code == 0, err
    body = comments(gh)[0]["body"]
    assert len(body) <= 65536
    assert "Trimmed to fit GitHub's 65,536-character limit" in body
    assert "metric rows" in body and "| **accuracy** |" in body


def test_two_phase_bundle_posted_from_workflow_run(
    gh, pr_env, cli, toy_repo, tmp_path, monkeypatch
):
    # As on GitHub: the pull_request job checks out refs/pull/N/merge, a merge commit of the
    # PR head into the base; the event, the PR and the workflow_run name the PR head.
    head = git(toy_repo, "rev-parse", "HEAD")
    git(toy_repo, "checkout", "-q", "--detach", "main")
    git(toy_repo, "merge", "-q", "--no-ff", "-m", "Merge into main", head)
    merge = git(toy_repo, "rev-parse", "HEAD")
    code, _, err = cli("run")
    assert code == 0, err
    bundle = toy_repo / ".lepton" / "report" / "toy"
    assert {p.name for p in bundle.iterdir()} == {"record.json", "meta.json", "comment.md"}
    meta = json.loads((bundle / "meta.json").read_text())
    record = json.loads((bundle / "record.json").read_text())
    assert record["git"]["sha"] == merge and record["git"]["pr_head"] == head
    assert meta["pr"] == PR and meta["head_sha"] == head and meta["workflow"] == "model-ci"
    assert [p["label"] for p in meta["history"]] == ["v0.1.0", "this PR"]
    # the trusted job: another checkout, the bundle downloaded as an artifact
    downloaded = tmp_path / "artifact"
    downloaded.mkdir()
    for f in bundle.iterdir():
        (downloaded / f.name).write_text(f.read_text())
    monkeypatch.chdir(tmp_path)

    def workflow_run(head_repo):
        run = events.workflow_run(head, run_id=900, head_repo=head_repo)["workflow_run"]
        pr_env(head, run_id=900, event_name="workflow_run", extra={"workflow_run": run})
        return cli("comment", "--from", str(downloaded))

    # same commit, but built from another repository (e.g. a fork that pushed it too)
    code, _, err = workflow_run("forker/models")
    assert code == 1 and "built forker/models; refusing to post" in err
    assert comments(gh) == []
    code, _, err = workflow_run(REPO)
    assert code == 0, err
    assert len(comments(gh)) == 1 and "toy@v0.1.0" in comments(gh)[0]["body"]
    assert f'"sha": "{head}"' in comments(gh)[0]["body"]


def test_a_stale_run_is_skipped_when_the_comment_shows_a_later_one(
    gh, pr_env, cli, toy_repo, tmp_path, monkeypatch, gh_files
):
    """model-pr for an old head finishes (or its comment job runs) after the PR moved on and
    a later run commented: nothing to post, and no red job. Without a later comment the
    bundle is refused as before (it may name another PR)."""
    old = git(toy_repo, "rev-parse", "HEAD")
    pr_env(old, run_id=900)
    assert cli("run")[0] == 0
    bundle = tmp_path / "old-bundle"
    shutil.copytree(toy_repo / ".lepton" / "report" / "toy", bundle)
    set_params(toy_repo, accuracy=0.94, lr=0.3)
    new = commit_all(toy_repo, "feat: newer")
    gh.state.add_pull(REPO, PR, new)
    monkeypatch.chdir(tmp_path)

    def old_run_comments():
        run = {"id": 900, "head_sha": old, "event": "pull_request", "conclusion": "success"}
        run["head_repository"] = {"full_name": REPO}
        pr_env(old, run_id=950, event_name="workflow_run", extra={"workflow_run": run})
        return cli("comment", "--from", str(bundle))

    code, _, err = old_run_comments()
    assert code == 1 and "stale run, or a forged PR number" in err  # no later report shown
    assert comments(gh) == []
    pr_env(new, run_id=1000)
    assert cli("run")[0] == 0 and cli("comment")[0] == 0
    (shown,) = comments(gh)
    body = shown["body"]
    gh_files["output"].write_text("")
    code, out, err = old_run_comments()
    assert code == 0, err
    assert "shows run 1000, later than this run 900; nothing posted" in out + err
    assert comments(gh) == [shown] and shown["body"] == body
    assert parse_outputs(gh_files["output"].read_text())["action"] == "stale"


def test_a_cancelled_run_is_skipped_quietly(gh, pr_env, cli, toy_repo, tmp_path, monkeypatch):
    head = git(toy_repo, "rev-parse", "HEAD")
    assert cli("run")[0] == 0
    bundle = toy_repo / ".lepton" / "report" / "toy"
    for conclusion in ("cancelled", "skipped"):
        run = {"id": 900, "head_sha": head, "event": "pull_request", "conclusion": conclusion}
        pr_env(head, run_id=950, event_name="workflow_run", extra={"workflow_run": run})
        code, out, err = cli("comment", "--from", str(bundle))
        said = out + err
        assert code == 0 and f"workflow run 900 was {conclusion}" in said
        assert "no report to post, nothing done" in said
    assert comments(gh) == []


def test_bundle_with_forged_pr_number_is_refused(gh, pr_env, cli, toy_repo, tmp_path, monkeypatch):
    cli("run")
    bundle = toy_repo / ".lepton" / "report" / "toy"
    meta = json.loads((bundle / "meta.json").read_text())
    gh.state.add_pull(REPO, 7, "b" * 40)  # someone else's PR
    meta["pr"] = 7
    (bundle / "meta.json").write_text(json.dumps(meta))
    event = tmp_path / "wr.json"
    event.write_text(json.dumps(events.workflow_run(meta["head_sha"], run_id=901)))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "workflow_run")
    code, _, err = cli("comment", "--from", str(bundle))
    assert code == 1 and "refusing to post" in err
    assert comments(gh, 7) == []
    meta["head_sha"] = "not-a-sha"
    (bundle / "meta.json").write_text(json.dumps(meta))
    code, _, err = cli("comment", "--from", str(bundle))
    assert code == 1 and "meta.json: invalid: `head_sha`" in err
    # Bytes that are not UTF-8 in either file: a clear error, not an internal one.
    (bundle / "meta.json").write_bytes(b'{"model": "\xff"}')
    code, _, err = cli("comment", "--from", str(bundle))
    assert code == 1 and "meta.json: not UTF-8" in err
    (bundle / "record.json").write_bytes(b'{"model": "\xff"}')
    code, _, err = cli("comment", "--from", str(bundle))
    assert code == 1 and "record.json: not UTF-8" in err and "not a valid evidence record" in err


@pytest.mark.parametrize("name", ["record.json", "meta.json"])
def test_a_bundle_file_that_is_not_utf8_is_refused_clearly(cli, toy_repo, name):
    """The bundle comes from an untrusted run: bad bytes are its fault, not an internal error."""
    cli("run")
    bundle = toy_repo / ".lepton" / "report" / "toy"
    (bundle / name).write_bytes((bundle / name).read_bytes()[:-2] + b'\xff"}')
    code, _, err = cli("comment", "--from", str(bundle))
    assert code == 1 and f"{bundle / name}: not UTF-8" in err


def test_local_run_renders_to_file_and_terminal(cli, toy_repo):
    cli("run")
    code, out, _ = cli("comment")
    assert code == 0
    assert "not posting (repository, pull request, token unknown)" in out
    assert "<!-- lepton-ci:sticky model=toy workflow=local -->" in out
    assert (toy_repo / ".lepton" / "report" / "toy" / "comment.md").is_file()


def test_an_odd_github_repository_does_not_fail_the_run(cli, toy_repo, monkeypatch):
    monkeypatch.setenv("GITHUB_REPOSITORY", "/srv/git/models.git")
    code, _, err = cli("run")
    assert code == 0, err
    meta = json.loads((toy_repo / ".lepton" / "report" / "toy" / "meta.json").read_text())
    assert meta["repo"] is None


def test_the_pr_head_is_recorded_only_for_a_checkout_of_its_merge_commit(
    pr_env, cli, toy_repo, tmp_path
):
    """pull_request_target checks out the base by default: that run speaks for the base, not
    for the PR head its event names. A shallow clone of the merge commit still knows its head."""
    from lepton_ci.cli import main

    head = git(toy_repo, "rev-parse", "HEAD")
    git(toy_repo, "checkout", "-q", "--detach", "main")
    base = git(toy_repo, "rev-parse", "HEAD")
    assert cli("run", "--no-fail")[0] == 0
    record = load(toy_repo / ".lepton" / "runs" / "toy.json")
    assert (record.git.sha, record.git.pr_head) == (base, None)
    git(toy_repo, "merge", "-q", "--no-ff", "-m", "Merge into main", head)
    git(toy_repo, "branch", "merge")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", "-b", "merge", f"file://{toy_repo}", "shallow")
    assert main(["-C", str(shallow), "run", "--no-fail", "--baseline", "none"]) == 0
    record = load(shallow / ".lepton" / "runs" / "toy.json")
    assert record.git.pr_head == head


@pytest.mark.unit
def test_the_comment_template_is_loaded_ahead_in_a_thread():
    """`run` warms the PR comment's template (jinja2's import, the compiled template) while
    it waits on git and training; a template that fails to load is left to the real render."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom lepton_ci.core import templating\nfrom lepton_ci.report import comment\n"
        "assert 'jinja2' not in sys.modules\n"
        "templating.warm('no-such-template.j2').join()\n"
        "templating.warm(comment.TEMPLATE).join()\n"
        "env = templating._environment((str(templating.template_dir()),), False)\n"
        "print(sorted(name for _, name in env.cache.keys()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pr_comment.md.j2']" and not out.stderr, out


@pytest.mark.parametrize("conclusion", events.CONCLUSIONS)
def test_the_comment_job_on_a_workflow_run_of_every_conclusion(
    conclusion, gh, pr_env, cli, toy_repo, tmp_path, gh_files
):
    """model-pr-comment runs for every completed model-pr run. Only a run that went to its
    end (success, failure: a failed gate, neutral) uploaded a report, which is posted; for
    the others the bundle was never written: the job says why and ends cleanly, asking
    GitHub nothing (a cancelled run's report, if any, a newer run replaces)."""
    head = git(toy_repo, "rev-parse", "HEAD")
    downloaded = tmp_path / "report"
    if conclusion in ("success", "failure", "neutral"):
        assert cli("run")[0] == 0
        downloaded.mkdir()
        for f in (toy_repo / ".lepton" / "report" / "toy").iterdir():
            (downloaded / f.name).write_bytes(f.read_bytes())
    payload = events.workflow_run(head, run_id=77, workflow="model-ci", conclusion=conclusion)
    pr_env(head, run_id=78, event_name="workflow_run", extra=payload)
    before = len(gh.state.log)
    code, out, err = cli("comment", "--from", str(downloaded))
    assert code == 0, err
    outputs = gh_files["output"].read_text()
    if conclusion in ("success", "failure", "neutral"):
        assert "PR comment created" in out
        assert len(comments(gh)) == 1
        assert outputs.endswith("action=created\n")
        return
    assert comments(gh) == [] and len(gh.state.log) == before  # GitHub not even asked
    level = "warning" if conclusion in ("timed_out", "startup_failure") else "notice"
    said = [ln for ln in out.splitlines() if ln.startswith(f"::{level}")]
    assert len(said) == 1 and "workflow run 77 (model-ci)" in said[0], out
    assert "no report to post, nothing done" in said[0]
    assert outputs == "comment-id=\ncomment-url=\naction=skipped\n"


def test_an_app_token_is_told_its_name_by_author_or_warned(gh, pr_env, cli, monkeypatch):
    """A GitHub App's token posts as APP-SLUG[bot] and cannot ask GitHub who it is: without
    `--author` the comment is found only after a second one was made (and removed again), and
    the step says to pass it; with it, the comment is found at once."""
    monkeypatch.setenv("GITHUB_TOKEN", "teams-token")  # the stand-in's App: release-app[bot]
    assert cli("run")[0] == 0
    code, out, err = cli("comment", "--author", "release-app[bot]")
    assert code == 0 and "PR comment created" in out and "posts as" not in err
    code, out, err = cli("comment", "--author", "release-app[bot]")
    assert code == 0 and "PR comment unchanged" in out
    code, out, err = cli("comment")
    assert code == 0 and "PR comment updated" in out
    assert "the token posts as release-app[bot], not github-actions[bot]" in out + err
    assert "pass `author: release-app[bot]`" in out + err
    everyone = gh.state.comments[(REPO, PR)]
    # the PR author's pasted marker comment (add_pull) stays theirs, untouched
    marked = [c["user"]["login"] for c in everyone if "lepton-ci" in c["body"][:40]]
    assert marked == ["acme", "release-app[bot]"]
    code, _, err = cli("comment", "--author", "x/../y")
    assert code == 1 and "--author `x/../y` is not a GitHub login" in err
