"""The example workflows and the composite actions, run under act (host mode)."""

import json

import pytest

from tests.support.act import act, action_repo, git, make_workspace
from tests.support.github_server import GitHubServer

pytestmark = pytest.mark.e2e
HOSTILE_REF = "feat/$(touch /tmp/lepton-pwned-ref)"
HOSTILE_TITLE = '`touch /tmp/lepton-pwned-title` $(id) "; exit 1'


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """One virtualenv shared by the act runs: the setup step installs into it once."""
    return tmp_path_factory.mktemp("act-venv") / "venv"


@pytest.fixture(scope="module")
def action(tmp_path_factory):
    return action_repo(tmp_path_factory.mktemp("action") / "lepton-ci")


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def pr_payload(ws, number=7):
    return {
        "pull_request": {
            "number": number,
            "title": HOSTILE_TITLE,
            "head": {
                "sha": git(ws, "rev-parse", "HEAD"),
                "ref": HOSTILE_REF,
                "repo": {"full_name": "acme/models"},
            },
            "base": {"ref": "main", "repo": {"full_name": "acme/models"}},
        },
        "repository": {"full_name": "acme/models", "default_branch": "main"},
    }


def test_pull_request_then_workflow_run_comment(tmp_path, home, venv, action):
    from pathlib import Path

    for p in ("/tmp/lepton-pwned-ref", "/tmp/lepton-pwned-title"):
        Path(p).unlink(missing_ok=True)
    ws = make_workspace(tmp_path / "ws", ["model-pr.yml", "model-pr-comment.yml"])
    git(ws, "checkout", "-q", "-b", "feature")
    (ws / "params.yaml").write_text((ws / "params.yaml").read_text().replace("C: 1.0", "C: 0.8"))
    git(ws, "commit", "-qam", "fix: less regularisation")
    artifacts = tmp_path / "artifacts"
    env = {"LEPTON_VENV": str(venv), "LEPTON_TEST_ARTIFACTS": str(artifacts)}
    proc = act(
        ws, "pull_request", pr_payload(ws), "model-pr.yml", home=home, action=action, env=env
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    bundle = artifacts / "lepton-report"
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["pr"] == 7 and meta["workflow"] == "model-pr"
    record = json.loads((bundle / "record.json").read_text())
    assert record["git"]["branch"] == HOSTILE_REF  # carried as data, never run
    assert not Path("/tmp/lepton-pwned-ref").exists()
    assert not Path("/tmp/lepton-pwned-title").exists()

    with GitHubServer() as gh:
        head = git(ws, "rev-parse", "HEAD")
        gh.state.add_pull("acme/models", 7, head, fork=True, title=HOSTILE_TITLE)
        git(ws, "checkout", "-q", "main")
        payload = {
            "workflow_run": {"id": 99, "event": "pull_request", "head_sha": head},
            "repository": {"full_name": "acme/models", "default_branch": "main"},
        }
        proc = act(
            ws,
            "workflow_run",
            payload,
            "model-pr-comment.yml",
            home=home,
            action=action,
            env={**env, "GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": "acme/models"},
            secrets={"GITHUB_TOKEN": "test-token"},
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        (comment,) = gh.state.comments[("acme/models", 7)]
        assert comment["body"].startswith(
            "<!-- lepton-ci:sticky model=digits workflow=model-pr -->"
        )
        assert "gates passed" in comment["body"]


def test_a_failing_gate_fails_the_pr_workflow(tmp_path, home, venv, action):
    ws = make_workspace(tmp_path / "ws", ["model-pr.yml"])
    git(ws, "checkout", "-q", "-b", "worse")
    p = ws / "params.yaml"
    p.write_text(p.read_text().replace("max_samples: null", "max_samples: 60"))
    git(ws, "commit", "-qam", "fix: faster")
    artifacts = tmp_path / "artifacts"
    proc = act(
        ws,
        "pull_request",
        pr_payload(ws),
        "model-pr.yml",
        home=home,
        action=action,
        env={"LEPTON_VENV": str(venv), "LEPTON_TEST_ARTIFACTS": str(artifacts)},
    )
    assert proc.returncode != 0
    assert "Fail on a failed gate" in proc.stdout
    # the bundle was still uploaded, so the comment can show why
    assert (
        json.loads((artifacts / "lepton-report" / "record.json").read_text())["verdict"] == "fail"
    )
