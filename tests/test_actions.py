"""The example workflows and the composite actions, run under act (host mode).

The world is GitHub's: pull requests run on refs/pull/N/merge, every event is one of GitHub's
own webhook payloads re-pointed at the test repository, and the GitHub API is the stand-in
that checks itself against GitHub's OpenAPI description.
"""

import json
from functools import partial

import pytest

from tests.support import github_events as events
from tests.support.act import act, action_repo, git, make_workspace, open_pull
from tests.support.backends import stop_splitters
from tests.support.github_server import GitHubServer
from tests.support.services import check_port, on_free_port

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


def origin(tmp_path, ws):
    remote = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(ws, "remote", "add", "origin", str(remote))
    return remote


def on_a_free_port(tmp_path, scenario):
    """`scenario(directory, port)`, a workflow that deploys to staging on host_port `port`.

    podman binds the port only when the workflow deploys: if another process took it by then
    (check_port on act's output raises PortTaken), the whole scenario runs again from scratch,
    in a directory of its own, on another port."""

    def attempt(port):
        (tmp_path / f"port-{port}").mkdir()
        return scenario(tmp_path / f"port-{port}", port)

    return on_free_port(attempt)


def released(tmp_path, services, capsys, venv, workflow, port, state=None):
    """A user's repository with v0.1.0 run, registered and built into the local registry,
    a staging policy (write permission), a bare `origin`, and podman's env for act. `state`:
    the release history kept there, outside the checkout act copies, so it outlives a run."""
    from tests.conftest import Cli, use_registry

    ws = make_workspace(tmp_path / "ws", [workflow])
    use_registry(ws, services["registry"].host, services["bases"]["python"])
    cfg = ws / "lepton.yaml"
    text = (
        cfg.read_text()
        .replace("host_port: 18080", f"host_port: {port}")
        .replace("  staging: {}", "  staging: {allow: {permission: write}}")
    )
    if state is not None:
        text = text.replace(
            "      target: podman", f"      target: podman\n      state_dir: {state}"
        )
    cfg.write_text(text)
    git(ws, "commit", "-qam", "chore: policy and local registry")
    remote = origin(tmp_path, ws)
    cli = Cli(ws, capsys)
    for step in ("run", "register", "build"):
        assert cli(step)[0] == 0, step
    podman = services["podman"]
    env = {
        "LEPTON_VENV": str(venv),
        **podman.config_env,
    }
    return ws, remote, env


def test_fork_pull_request_on_its_merge_commit_then_workflow_run_comment(
    tmp_path, home, venv, action
):
    from pathlib import Path

    for p in ("/tmp/lepton-pwned-ref", "/tmp/lepton-pwned-title"):
        Path(p).unlink(missing_ok=True)
    ws = make_workspace(tmp_path / "ws", ["model-pr.yml", "model-pr-comment.yml"])
    remote = origin(tmp_path, ws)
    git(ws, "checkout", "-q", "-b", "feature")
    (ws / "params.yaml").write_text((ws / "params.yaml").read_text().replace("C: 1.0", "C: 0.8"))
    git(ws, "commit", "-qam", "fix: less regularisation")
    head, base, merge = open_pull(ws, remote, 7, "feature")
    artifacts = tmp_path / "artifacts"
    env = {"LEPTON_VENV": str(venv), "LEPTON_TEST_ARTIFACTS": str(artifacts)}
    payload = events.pull_request(
        7, head, base, fork=True, title=HOSTILE_TITLE, head_ref=HOSTILE_REF, sender="forker"
    )
    proc = act(ws, "pull_request", payload, "model-pr.yml", home=home, action=action, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    bundle = artifacts / "lepton-report"
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["pr"] == 7 and meta["workflow"] == "model-pr"
    record = json.loads((bundle / "record.json").read_text())
    # built on GitHub's merge commit; the report speaks of the PR's head
    assert (record["git"]["sha"], record["git"]["pr_head"], meta["head_sha"]) == (merge, head, head)
    assert record["git"]["branch"] == HOSTILE_REF  # carried as data, never run
    assert not Path("/tmp/lepton-pwned-ref").exists()
    assert not Path("/tmp/lepton-pwned-title").exists()

    with GitHubServer() as gh:
        gh.state.add_pull("acme/models", 7, head, fork=True, title=HOSTILE_TITLE)
        token = job_token(gh, ws, "model-pr-comment.yml", "comment")
        git(ws, "checkout", "-q", "main")  # the trusted job runs the default branch
        # GitHub sends `pull_requests: []` for a fork's run: the PR comes from the bundle.
        payload = events.workflow_run(
            head, run_id=99, head_repo="forker/models", head_branch=HOSTILE_REF
        )
        run = partial(
            act,
            ws,
            "workflow_run",
            payload,
            "model-pr-comment.yml",
            home=home,
            action=action,
            env={**env, "GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": "acme/models"},
            secrets={"GITHUB_TOKEN": token},
        )
        proc = run()
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        (comment,) = ours(gh, 7)  # the forker's pasted marker comment is not taken for it
        assert comment["body"].startswith(
            "<!-- lepton-ci:sticky model=digits workflow=model-pr -->"
        )
        assert "gates passed" in comment["body"]
        # the same commit built from another repository does not speak for this PR
        payload["workflow_run"]["head_repository"] = events.repository(
            payload["workflow_run"]["head_repository"], "mallory/models", fork=True
        )
        proc = run()
        assert proc.returncode != 0 and "built mallory/models; refusing to post" in proc.stdout


def job_token(gh, ws, workflow, job):
    """The GITHUB_TOKEN GitHub would give `job`: for acme/models only, with the job's own
    `permissions:`, so a workflow that asks too little fails here as it would on GitHub."""
    return gh.state.job_token(ws / ".github" / "workflows" / workflow, job, "acme/models")


def ours(gh, number):
    """lepton-ci's comments on a pull request (its conversation holds others' too)."""
    everyone = gh.state.comments.get(("acme/models", number), [])
    return [c for c in everyone if c["user"]["login"] == "github-actions[bot]"]


def test_the_comment_workflow_after_a_run_of_every_conclusion(
    tmp_path, home, venv, action, capsys, monkeypatch
):
    """model-pr-comment.yml as shipped, after a model-pr run of every conclusion. A run that
    went to its end (success, failure, neutral) uploaded its report: posted once, then
    unchanged. The others uploaded none: the job is skipped (no failed check on the PR);
    `comment --from` itself says why if it is run for one (tests/test_comment.py)."""
    import shutil

    from tests.conftest import Cli

    ws = make_workspace(tmp_path / "ws", ["model-pr-comment.yml"])
    remote = origin(tmp_path, ws)
    git(ws, "checkout", "-q", "-b", "feature")
    (ws / "params.yaml").write_text((ws / "params.yaml").read_text().replace("C: 1.0", "C: 0.8"))
    git(ws, "commit", "-qam", "fix: less regularisation")
    head, base, _ = open_pull(ws, remote, 9, "feature")
    # the report model-pr's run uploads, written the way its run step writes it
    event = tmp_path / "pull_request.json"
    event.write_text(json.dumps(events.pull_request(9, head, base)))
    artifacts, none = tmp_path / "artifacts", tmp_path / "no-artifacts"
    none.mkdir()
    with monkeypatch.context() as m:
        for k, v in {
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_REPOSITORY": "acme/models",
            "GITHUB_WORKFLOW": "model-pr",
            "GITHUB_RUN_ID": "50",
        }.items():
            m.setenv(k, v)
        code, _, err = Cli(ws, capsys)("run", "--no-fail")
        assert code == 0, err
    shutil.copytree(ws / ".lepton" / "report" / "digits", artifacts / "lepton-report")
    git(ws, "checkout", "-q", "main")
    with GitHubServer() as gh:
        gh.state.add_pull("acme/models", 9, head)
        token = job_token(gh, ws, "model-pr-comment.yml", "comment")
        for conclusion in events.CONCLUSIONS:
            reported = conclusion in ("success", "failure", "neutral")
            proc = act(
                ws,
                "workflow_run",
                events.workflow_run(head, run_id=50, conclusion=conclusion),
                "model-pr-comment.yml",
                home=home,
                action=action,
                env={
                    "LEPTON_VENV": str(venv),
                    "LEPTON_TEST_ARTIFACTS": str(artifacts if reported else none),
                    "GITHUB_API_URL": gh.url,
                    "GITHUB_REPOSITORY": "acme/models",
                },
                secrets={"GITHUB_TOKEN": token},
            )
            assert proc.returncode == 0, conclusion + proc.stdout[-4000:] + proc.stderr[-2000:]
            if reported:
                first = conclusion == "success"
                assert f"PR comment {'created' if first else 'unchanged'}" in proc.stdout
            else:  # the job is skipped whole: no step of it runs, nothing is red
                assert "lepton-ci" not in proc.stdout and "download" not in proc.stdout.lower()
        (comment,) = ours(gh, 9)
        assert "gates passed" in comment["body"]
        assert gh.state.count("POST", "/comments") == 1 and gh.state.count("PATCH") == 0


def test_a_failing_gate_fails_the_pr_workflow(tmp_path, home, venv, action):
    ws = make_workspace(tmp_path / "ws", ["model-pr.yml"])
    remote = origin(tmp_path, ws)
    git(ws, "checkout", "-q", "-b", "worse")
    p = ws / "params.yaml"
    p.write_text(p.read_text().replace("max_samples: null", "max_samples: 60"))
    git(ws, "commit", "-qam", "fix: faster")
    head, base, _ = open_pull(ws, remote, 8, "worse")
    artifacts = tmp_path / "artifacts"
    proc = act(
        ws,
        "pull_request",
        events.pull_request(8, head, base, action="opened", head_ref="worse"),
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


def test_push_to_main_registers_builds_and_deploys(tmp_path, home, venv, action, services):
    on_a_free_port(
        tmp_path, partial(push_to_main, home=home, venv=venv, action=action, services=services)
    )


def push_to_main(tmp_path, port, *, home, venv, action, services):
    from tests.conftest import use_registry

    ws = make_workspace(tmp_path / "ws", ["model-main.yml", "model-rollback.yml"])
    use_registry(ws, services["registry"].host, services["bases"]["python"])
    cfg = ws / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("host_port: 18080", f"host_port: {port}"))
    git(ws, "commit", "-qam", "chore: local registry")
    remote = origin(tmp_path, ws)
    git(ws, "push", "-q", "origin", "main")
    podman = services["podman"]
    env = {
        "LEPTON_VENV": str(venv),
        "LEPTON_TEST_ACTIONS_CACHE": str(tmp_path / "actions-cache"),
        **podman.config_env,
    }
    payload = events.push("refs/heads/main", git(ws, "rev-parse", "HEAD"))
    try:
        with GitHubServer() as gh:
            gh.state.git["acme/models"] = remote  # what GitHub holds: what was pushed
            proc = act(
                ws,
                "push",
                payload,
                "model-main.yml",
                home=home,
                action=action,
                env={**env, "GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": "acme/models"},
                secrets={
                    "GITHUB_TOKEN": job_token(gh, ws, "model-main.yml", "release"),
                    "REGISTRY_USERNAME": "",
                    "REGISTRY_PASSWORD": "",
                },
            )
            check_port(proc.stdout)
            assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
            # trained in the read-only job; the release job restored its run-cache
            sha = payload["after"]
            key = f"lepton-untrusted-Linux-{sha}"  # saved by the job that runs the code
            assert f"cache stand-in: saved .lepton/cache as key {key}" in proc.stdout
            # the tag index is carried too, once there are tags to index (none before this push)
            assert "cache stand-in: .git/lepton-ci does not exist, skipped" in proc.stdout
            release = [ln for ln in proc.stdout.splitlines() if "Register, build" in ln]
            assert any(f"restored .lepton/cache from key {key}" in ln for ln in release)
            assert any("run-cache hit, training skipped" in ln for ln in release)
            # lepton-ci's virtualenv: the training job's and the writing job's never meet
            trained = [ln for ln in proc.stdout.splitlines() if "Run (read-only)" in ln]
            assert any("key=lepton-ci-untrusted-" in ln for ln in trained)
            assert not any("key=lepton-ci-trusted-" in ln for ln in trained)
            assert any("key=lepton-ci-trusted-" in ln for ln in release)
            assert not any("key=lepton-ci-untrusted-" in ln for ln in release)
            (dep,) = gh.state.deployments["acme/models"]
            assert dep["environment"] == "staging"
            states = [s["state"] for s in gh.state.statuses[dep["id"]]]
            assert states == ["in_progress", "success"]
        assert git(remote, "tag") == "digits@v0.1.0"
        import requests

        r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r.json()["model_version"] == "v0.1.0"
        # the rollback button, with nothing earlier to roll back to, must fail the job
        proc = act(
            ws,
            "workflow_dispatch",
            events.workflow_dispatch({"environment": "staging"}, "model-rollback.yml"),
            "model-rollback.yml",
            home=home,
            action=action,
            env=env,
        )
        assert proc.returncode != 0
        assert "no earlier healthy revision" in proc.stdout
    finally:
        podman("pod", "rm", "-af", "-t", "0", check=False)
        stop_splitters(tmp_path)
        stop_splitters(home)  # act deploys from its host workspace in HOME


def test_promote_button_obeys_the_policy_and_deploys_the_existing_image(
    tmp_path, home, venv, action, services, capsys
):
    on_a_free_port(
        tmp_path,
        partial(promote, home=home, venv=venv, action=action, services=services, capsys=capsys),
    )


def promote(tmp_path, port, *, home, venv, action, services, capsys):
    ws, remote, env = released(tmp_path, services, capsys, venv, "model-promote.yml", port)
    podman = services["podman"]
    inputs = events.workflow_dispatch(
        {"version": "v0.1.0", "stage": "staging"}, "model-promote.yml"
    )
    try:
        with GitHubServer() as gh:
            gh.state.permissions[("acme/models", "dev")] = "write"
            gh.state.permissions[("acme/models", "reader")] = "read"
            git(ws, "push", "-q", "origin", "main")  # the released commit is on GitHub
            gh.state.git["acme/models"] = remote
            genv = {**env, "GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": "acme/models"}
            run = partial(
                act,
                ws,
                "workflow_dispatch",
                inputs,
                "model-promote.yml",
                home=home,
                action=action,
                env=genv,
                secrets={"GITHUB_TOKEN": job_token(gh, ws, "model-promote.yml", "promote")},
            )
            proc = run(actor="reader")
            assert proc.returncode != 0
            assert "reader may not promote to `staging`" in proc.stdout
            assert "anyone with write permission or higher" in proc.stdout
            assert "lepton-ci deploy" not in proc.stdout.split("may not promote")[1]
            # a re-run keeps github.actor; the reader who pressed re-run gets no dev rights
            proc = run(actor="dev", triggering_actor="reader")
            assert proc.returncode != 0 and "reader may not promote" in proc.stdout
            proc = run(actor="dev")
            check_port(proc.stdout)
            assert proc.returncode == 0, proc.stdout[-5000:]
            assert "dev has write permission" in proc.stdout
            assert "staging: revision 1 deployed v0.1.0" in proc.stdout
        assert git(remote, "tag", "-l", "digits#*") == "digits#staging#1"
        # marked, so model-tag (if a PAT or App token pushed it) does not deploy it again
        message = git(remote, "tag", "-l", "--format=%(contents)", "digits#staging#1")
        assert "Lepton-Deployed-By: " in message
        import requests

        assert (
            requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["model_version"]
            == "v0.1.0"
        )
    finally:
        podman("pod", "rm", "-af", "-t", "0", check=False)
        stop_splitters(tmp_path)
        stop_splitters(home)  # act deploys from its host workspace in HOME


def test_pushing_a_stage_tag_promotes_or_is_deleted(tmp_path, home, venv, action, services, capsys):
    on_a_free_port(
        tmp_path,
        partial(stage_tag, home=home, venv=venv, action=action, services=services, capsys=capsys),
    )


def stage_tag(tmp_path, port, *, home, venv, action, services, capsys):
    ws, remote, env = released(tmp_path, services, capsys, venv, "model-tag.yml", port)
    git(ws, "push", "-q", "origin", "main", "--tags")
    git(ws, "tag", "-a", "-m", "promote", "digits#staging#1", "digits@v0.1.0")
    git(ws, "push", "-q", "origin", "digits#staging#1")
    podman = services["podman"]
    sha = git(ws, "rev-parse", "digits#staging#1")
    # The pusher is the push event's sender (github.actor is the same person).
    pushed_by = {who: events.push("refs/tags/digits#staging#1", sha, sender=who)
                 for who in ("intruder", "dev")}  # fmt: skip
    try:
        with GitHubServer() as gh:
            gh.state.permissions[("acme/models", "dev")] = "write"
            gh.state.git["acme/models"] = remote
            genv = {
                **env,
                "GITHUB_API_URL": gh.url,
                "GITHUB_REPOSITORY": "acme/models",
                "GITHUB_REF_NAME": "digits#staging#1",
            }

            def run(actor):
                return act(
                    ws,
                    "push",
                    pushed_by[actor],
                    "model-tag.yml",
                    home=home,
                    action=action,
                    env=genv,
                    # act gives every job one token: the deploy job's (accept's asks no more)
                    secrets={"GITHUB_TOKEN": job_token(gh, ws, "model-tag.yml", "deploy")},
                    actor=actor,
                )

            proc = run(actor="intruder")
            assert proc.returncode != 0
            assert "intruder may not promote to `staging`" in proc.stdout
            assert "was deleted again" in proc.stdout
            assert "Deploy the accepted stage" not in proc.stdout
            assert git(remote, "tag", "-l", "digits#*") == ""
            # the release manager pushes it again
            git(ws, "push", "-q", "origin", "digits#staging#1")
            proc = run(actor="dev")
            check_port(proc.stdout)
            assert proc.returncode == 0, proc.stdout[-5000:]
            assert "digits@v0.1.0 accepted in staging" in proc.stdout
            deploy = [ln for ln in proc.stdout.splitlines() if "Deploy the accepted stage" in ln]
            assert any("staging: revision 1 deployed v0.1.0" in ln for ln in deploy)
            (dep,) = gh.state.deployments["acme/models"]
            assert dep["environment"] == "staging"
        import requests

        assert (
            requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["model_version"]
            == "v0.1.0"
        )
        assert git(remote, "tag", "-l", "digits#*") == "digits#staging#1"
    finally:
        podman("pod", "rm", "-af", "-t", "0", check=False)
        stop_splitters(tmp_path)
        stop_splitters(home)  # act deploys from its host workspace in HOME


def test_the_rollback_button_is_recorded_as_a_github_deployment(
    tmp_path, home, venv, action, services, capsys, monkeypatch
):
    on_a_free_port(
        tmp_path,
        partial(
            rollback_button,
            home=home,
            venv=venv,
            action=action,
            services=services,
            capsys=capsys,
            monkeypatch=monkeypatch,
        ),
    )


def rollback_button(tmp_path, port, *, home, venv, action, services, capsys, monkeypatch):
    from tests.conftest import Cli

    state = tmp_path / "state"
    ws, _, env = released(tmp_path, services, capsys, venv, "model-rollback.yml", port, state)
    podman = services["podman"]
    for k, v in podman.config_env.items():
        monkeypatch.setenv(k, v)
    cli = Cli(ws, capsys)
    try:
        for n in (1, 2):  # v0.1.0 as revision 1, then again as revision 2
            code, out, err = cli("deploy", "staging")
            check_port(out + err)
            assert code == 0, err
            assert f"revision {n} deployed v0.1.0" in out
        with GitHubServer() as gh:
            # who may promote to staging may roll it back: a writer
            gh.state.permissions[("acme/models", "dev")] = "write"
            gh.state.git["acme/models"] = ws  # GitHub holds the commits deployed
            proc = act(
                ws,
                "workflow_dispatch",
                events.workflow_dispatch(
                    {"environment": "staging", "revision": "1"}, "model-rollback.yml"
                ),
                "model-rollback.yml",
                home=home,
                action=action,
                env={**env, "GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": "acme/models"},
                secrets={"GITHUB_TOKEN": "test-token"},
                actor="dev",
            )
            check_port(proc.stdout)
            assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
            assert "revision 3" in proc.stdout
            (dep,) = gh.state.deployments["acme/models"]
            assert dep["environment"] == "staging"
            assert dep["payload"]["version"] == "v0.1.0"
            statuses = gh.state.statuses[dep["id"]]
            assert [s["state"] for s in statuses] == ["in_progress", "success"]
            assert "rolled back to v0.1.0 (revision 3)" in statuses[-1]["description"]
    finally:
        podman("pod", "rm", "-af", "-t", "0", check=False)
        stop_splitters(tmp_path)
        stop_splitters(home)  # act deploys from its host workspace in HOME


STEP_ACTIONS = """\
name: steps
on: push
permissions: {contents: write}
jobs:
  release:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - id: run
        uses: lepton-ci/lepton-ci/actions/run@v1
      - id: register
        uses: lepton-ci/lepton-ci/actions/register@v1
        with: {model: digits}
      - id: card
        uses: lepton-ci/lepton-ci/actions/card@v1
        with: {model: digits}
      - id: build
        uses: lepton-ci/lepton-ci/actions/build@v1
        with: {model: digits}
      - env:
          VERSION: ${{ steps.register.outputs.version }}
          TAG: ${{ steps.register.outputs.tag }}
          CARD: ${{ steps.card.outputs.card }}
          DIGEST: ${{ steps.build.outputs.digest }}
          TAGS: ${{ steps.build.outputs.tags }}
          VERDICT: ${{ steps.run.outputs.verdict }}
        run: >-
          echo "outputs verdict=$VERDICT version=$VERSION tag=$TAG card=${CARD##*/}
          tags=$TAGS digest=$DIGEST"
"""


def test_register_card_and_build_actions_and_their_outputs(tmp_path, home, venv, action, services):
    from tests.conftest import use_registry

    ws = make_workspace(tmp_path / "ws", [])
    use_registry(ws, services["registry"].host, services["bases"]["python"])
    (ws / ".github" / "workflows" / "steps.yml").write_text(STEP_ACTIONS)
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "ci: steps")
    remote = origin(tmp_path, ws)
    payload = events.push("refs/heads/main", git(ws, "rev-parse", "HEAD"))
    proc = act(
        ws, "push", payload, "steps.yml", home=home, action=action, env={"LEPTON_VENV": str(venv)}
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    line = next(ln for ln in proc.stdout.splitlines() if "| outputs verdict=" in ln)
    assert "verdict=pass version=v0.1.0 tag=digits@v0.1.0 card=v0.1.0.md" in line
    sha = git(ws, "rev-parse", "HEAD")
    assert f"tags=0.1.0,0.1,sha-{sha[:7]} digest=sha256:" in line
    assert git(remote, "tag") == "digits@v0.1.0"


ALL_IN_ONE = """\
name: all-in-one
on: push
permissions: {}
jobs:
  model:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    permissions: {contents: write}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - id: lepton
        uses: lepton-ci/lepton-ci@v1
        with: {model: digits, fail-on-gate: "false", deploy-environment: staging}
      - env:
          VERDICT: ${{ steps.lepton.outputs.verdict }}
          VERSION: ${{ steps.lepton.outputs.version }}
          DIGEST: ${{ steps.lepton.outputs.digest }}
        run: echo "outputs verdict=$VERDICT version=$VERSION digest=$DIGEST."
"""


def test_all_in_one_action_never_ships_a_failed_model(tmp_path, home, venv, action):
    """fail-on-gate: false lets the job go on, but nothing is registered, built or deployed."""
    ws = make_workspace(tmp_path / "ws", [])
    p = ws / "params.yaml"
    p.write_text(p.read_text().replace("max_samples: null", "max_samples: 60"))
    (ws / ".github" / "workflows" / "all.yml").write_text(ALL_IN_ONE)
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "fix: faster")
    remote = origin(tmp_path, ws)
    payload = events.push("refs/heads/main", git(ws, "rev-parse", "HEAD"))
    proc = act(
        ws, "push", payload, "all.yml", home=home, action=action, env={"LEPTON_VENV": str(venv)}
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    line = next(ln for ln in proc.stdout.splitlines() if "| outputs verdict=" in ln)
    assert "verdict=fail version=v0.1.0 digest=." in line
    assert git(remote, "tag") == "" and git(ws, "tag") == ""


def test_watch_workflow_keeps_one_issue_per_environment(tmp_path, home, venv, action):
    import yaml

    from lepton_ci.deploy.releases import FileStore, Revision, now
    from tests.support.prometheus import PrometheusServer

    ws = make_workspace(tmp_path / "ws", ["model-watch.yml", "model-watch-environment.yml"])
    wf = yaml.safe_load((ws / ".github" / "workflows" / "model-watch.yml").read_text())
    assert wf["permissions"] == {}
    assert wf["jobs"]["watch"]["permissions"] == {"contents": "read", "issues": "write"}
    state = tmp_path / "state"  # the release history, outside the checkout act copies
    cfg = ws / "lepton.yaml"
    head, tail = cfg.read_text().split("            slos:\n")
    slo = "            slos: [{name: errors, query: 'vector(VALUE)', max: 0.01}]\n"
    rest = tail[tail.index("stages:") :]
    head = head.replace("on_breach: rollback", "on_breach: alert").replace(
        "      target: podman", f"      target: podman\n      state_dir: {state}"
    )

    def configure(value):
        cfg.write_text(head + slo.replace("VALUE", value) + rest)
        git(ws, "commit", "-qam", f"chore: errors at {value}")

    FileStore(state / "digits" / "staging").save(
        Revision(
            number=1,
            env="staging",
            model="digits",
            version="v0.1.0",
            image="r/digits@sha256:" + "1" * 64,
            record_digest="d",
            manifests="",
            status="deployed",
            created_at=now(),
        )
    )
    prom = PrometheusServer(tmp_path / "prom", targets=[]).start()
    try:
        with GitHubServer() as gh:
            run = partial(
                act,
                ws,
                "workflow_dispatch",
                {},
                "model-watch.yml",
                home=home,
                action=action,
                env={
                    "LEPTON_VENV": str(venv),
                    "GITHUB_API_URL": gh.url,
                    "GITHUB_REPOSITORY": "acme/models",
                },
                secrets={"GITHUB_TOKEN": job_token(gh, ws, "model-watch.yml", "watch")},
                variables={"PROMETHEUS_URL": prom.url},
            )
            configure("0.5")
            proc = run()
            assert proc.returncode != 0, proc.stdout[-3000:]
            # the judge (no environment) finds it and leaves it; the job that acts, in the
            # environment, judges again and acts
            judge = "\n".join(ln for ln in proc.stdout.splitlines() if "/Judge]" in ln)
            assert "judged only: the breach of errors is left to the job that acts" in judge
            acts = "\n".join(ln for ln in proc.stdout.splitlines() if "/Act on the breach]" in ln)
            assert "SLO breached by v0.1.0 (revision 1): errors: breach 0.5" in acts
            (issue,) = gh.state.issues["acme/models"]
            assert issue["title"] == "digits: SLO breach in staging" and issue["state"] == "open"
            assert "| errors | breach | 0.5 |" in issue["body"]
            assert run().returncode != 0  # still breaching: the same issue gets a comment
            assert len(gh.state.issues["acme/models"]) == 1
            assert len(gh.state.comments[("acme/models", 1)]) == 1
            configure("0")
            proc = run()
            assert proc.returncode == 0, proc.stdout[-3000:]
            assert issue["state"] == "closed"  # by the judge: the job that acts never started
            assert "/Act on the breach]" not in proc.stdout and "/Judge]" in proc.stdout
    finally:
        prom.stop()


def test_the_comment_workflow_skips_a_cancelled_run_quietly(tmp_path, home, venv, action):
    """A newer push cancels model-pr; its workflow_run must not turn model-pr-comment red."""
    ws = make_workspace(tmp_path / "ws", ["model-pr-comment.yml"])
    head = git(ws, "rev-parse", "HEAD")
    for conclusion in ("cancelled", "skipped"):
        payload = events.workflow_run(head, run_id=99)
        payload["workflow_run"]["conclusion"] = conclusion
        proc = act(
            ws,
            "workflow_run",
            payload,
            "model-pr-comment.yml",
            home=home,
            action=action,
            env={"LEPTON_VENV": str(venv), "LEPTON_TEST_ARTIFACTS": str(tmp_path / "none")},
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "Post the PR comment" not in proc.stdout, conclusion
