"""The workflow the README and 'The team adds one step' give works as written: under act, a
push to main registers the version and pushes its tag (with no `image:`, build and deploy are
skipped with a notice, not failed); a same-repository pull request that makes the model worse
gets its comment after the failed gate, and a failed check. The one act test of that workflow;
tests/test_workflows.py checks its permissions."""

from __future__ import annotations

import pytest

from tests.support import github_events as events
from tests.support.act import act, action_repo, git, make_workspace, open_pull
from tests.support.github_server import GitHubServer
from tests.test_docs import ROOT, blocks

pytestmark = pytest.mark.e2e
WORKFLOW = ".github/workflows/model.yml"


def the_workflow() -> str:
    found = [
        b.body
        for page in (ROOT / "README.md", ROOT / "docs" / "tutorials" / "team.md")
        for b in blocks(page)
        if b.title == WORKFLOW
    ]
    assert found, "no workflow titled .github/workflows/model.yml"
    assert len(set(found)) == 1, "the README and the tutorial show different workflows"
    return found[0]


def test_the_one_step_workflow_versions_main_and_comments_on_a_pull_request(tmp_path):
    action = action_repo(tmp_path / "action")
    ws = make_workspace(tmp_path / "ws", [])
    (ws / WORKFLOW).write_text(the_workflow())
    cfg = ws / "lepton.yaml"
    text = cfg.read_text()  # no `image:`: nothing to build or deploy
    cfg.write_text(text[: text.index("    image:\n")] + text[text.index("    deploy:\n") :])
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "ci: lepton-ci")
    remote = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(ws, "remote", "add", "origin", str(remote))
    git(ws, "push", "-q", "origin", "main")
    home = tmp_path / "home"
    home.mkdir()

    main = git(ws, "rev-parse", "HEAD")
    with GitHubServer() as gh:
        env = {
            "LEPTON_VENV": str(tmp_path / "venv"),
            "GITHUB_API_URL": gh.url,
            "GITHUB_REPOSITORY": "acme/models",
        }
        proc = act(
            ws, "push", events.push("refs/heads/main", main), "model.yml",
            home=home, action=action, env=env, secrets={"GITHUB_TOKEN": "test-token"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "lepton.yaml has no `image:` section, so nothing is built or deployed" in (
            proc.stdout
        )
        assert gh.state.deployments.get("acme/models", []) == []
    assert git(remote, "tag") == "digits@v0.1.0"

    git(ws, "fetch", "-q", "--tags", "origin")
    git(ws, "checkout", "-q", "-b", "worse")
    params = ws / "params.yaml"
    params.write_text(params.read_text().replace("max_samples: null", "max_samples: 60"))
    git(ws, "commit", "-qam", "fix: train faster")
    head, base, _ = open_pull(ws, remote, 5, "worse")
    with GitHubServer() as gh:
        gh.state.add_pull("acme/models", 5, head)
        proc = act(
            ws, "pull_request", events.pull_request(5, head, base, head_ref="worse"), "model.yml",
            home=home, action=action, secrets={"GITHUB_TOKEN": "test-token"},
            env={**env, "GITHUB_API_URL": gh.url},
        )  # fmt: skip
        assert proc.returncode != 0, proc.stdout[-4000:]  # the failed gate fails the check
        assert "gate" in proc.stdout and "failed" in proc.stdout
        everyone = gh.state.comments[("acme/models", 5)]  # the conversation holds others' too
        (comment,) = [c for c in everyone if c["user"]["login"] == "github-actions[bot]"]
    assert "gates failed vs `digits@v0.1.0`" in comment["body"]
    assert git(remote, "tag") == "digits@v0.1.0"  # a pull request registers nothing
