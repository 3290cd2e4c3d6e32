"""What GitHub does with the shipped workflows that act does not model: permissions,
environments, concurrency queues, tag filters, pins. Checked against GitHub's documented rules.
"""

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "templates" / "workflows").glob("*.yml"))
DEPLOYS = ("lepton-ci/lepton-ci", "actions/deploy", "actions/rollback")


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads `on:` as true
    return data


def uses(job: dict) -> list[str]:
    """The actions a job's steps use, without their refs (lepton-ci's are pinned by SHA)."""
    return [s.get("uses", "").split("@")[0] for s in job.get("steps", [])]


def deploys(job: dict) -> bool:
    return any(u.endswith(DEPLOYS) for u in uses(job)) and (
        "lepton-ci/lepton-ci" not in uses(job) or _with(job, "lepton-ci/lepton-ci")
    )


def _with(job: dict, action: str) -> bool:
    step = next(s for s in job["steps"] if s.get("uses", "").split("@")[0] == action)
    return bool((step.get("with") or {}).get("deploy-environment"))


def github_filter(pattern: str) -> re.Pattern[str]:
    """GitHub's filter pattern for branches and tags: `*` is any run of characters but `/`,
    `**` any run at all (docs: 'Filter pattern cheat sheet'). Only what the workflows use."""
    out = ""
    for token in re.findall(r"\*\*|\*|[^*]", pattern):
        if token in "?+[]!":
            raise NotImplementedError(token)
        out += {"**": ".*", "*": "[^/]*"}.get(token, re.escape(token))
    return re.compile(out)


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_per_job(wf):
    data = load(wf)
    assert data["permissions"] == {}, "scopes belong on the job that needs them"
    for name, job in data["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name}: job-level permissions"
        checkout = next(
            (s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")), None
        )
        if checkout is None:
            continue
        persisted = (checkout.get("with") or {}).get("persist-credentials", True)
        pushes = perms.get("contents") == "write"
        assert persisted is pushes, f"{name}: persist the token only where the job pushes"


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_deploys_run_in_their_environment_and_its_queue_on_the_job(wf):
    data = load(wf)
    assert "concurrency" not in data or "deploy" not in str(data["concurrency"])
    for name, job in data["jobs"].items():
        if not deploys(job):
            assert "deployments" not in job["permissions"], f"{name}: unused deployments: write"
            continue
        env = job.get("environment")
        assert env, f"{name} deploys without an environment (no reviewers, no secrets)"
        group = job["concurrency"]["group"]
        assert group == f"deploy-{env}", f"{name}: the environment's own queue"
        assert job["concurrency"]["cancel-in-progress"] is False
        assert job["permissions"].get("deployments") == "write"


def test_training_never_runs_where_the_token_can_push():
    jobs = load(ROOT / "templates" / "workflows" / "model-main.yml")["jobs"]
    assert jobs["run"]["permissions"] == {"contents": "read"}
    restore = next(s for s in jobs["release"]["steps"] if "cache/restore@" in s.get("uses", ""))
    assert restore["with"]["fail-on-cache-miss"] is True
    assert restore["with"]["key"] == "lepton-${{ runner.os }}-${{ github.sha }}"
    # a run-cache miss (e.g. another platform's key) fails there rather than training
    ship = next(s for s in jobs["release"]["steps"] if s.get("uses", "").startswith("lepton-ci/"))
    assert ship["with"]["cached-only"] == "true"
    save = next(s for s in jobs["run"]["steps"] if "cache/save@" in s.get("uses", ""))
    assert save["with"]["key"] == restore["with"]["key"]
    pr = load(ROOT / "templates" / "workflows" / "model-pr.yml")["jobs"]["run"]
    restore_pr = next(s for s in pr["steps"] if "cache/restore@" in s.get("uses", ""))
    assert restore_pr["with"]["restore-keys"] == "lepton-${{ runner.os }}-"


def test_tag_deploys_name_the_accepted_stage_environment():
    jobs = load(ROOT / "templates" / "workflows" / "model-tag.yml")["jobs"]
    accept = jobs["accept"]
    assert "environment" not in accept and "deployments" not in accept["permissions"]
    deploy = jobs["deploy"]
    assert deploy["needs"] == "accept"
    assert deploy["environment"] == "${{ needs.accept.outputs.stage }}"
    assert deploy["if"] == "needs.accept.outputs.deploy == 'true'"


def test_tag_filter_matches_model_names_with_a_slash():
    (pattern,) = load(ROOT / "templates" / "workflows" / "model-tag.yml")["on"]["push"]["tags"]
    f = github_filter(pattern)
    for tag in ("digits#prod#7", "team/digits#staging#12"):
        assert f.fullmatch(tag), tag
    assert not f.fullmatch("digits@v1.2.0")
    assert not github_filter("*#*#*").fullmatch("team/digits#staging#12")  # the old filter


def test_the_promote_workflow_marks_the_tag_it_deploys():
    steps = load(ROOT / "templates" / "workflows" / "model-promote.yml")["jobs"]["promote"]["steps"]
    promote = next(s for s in steps if "actions/promote@" in s.get("uses", ""))
    assert promote["with"]["deployed-here"] == "true"


def _snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```ya?ml[^\n]*\n(.*?)```", text, re.S)  # `title="..."` may follow


def test_readme_pins_third_party_actions_by_sha_and_states_permissions():
    snippets = [s for s in _snippets() if re.search(r"^\s*(- )?uses:", s, re.M)]
    assert snippets
    for snippet in snippets:
        for ref in re.findall(r"uses:\s*([^\s#]+)", snippet):
            if ref.startswith(("lepton-ci/", "./")):
                continue
            assert re.search(r"@[0-9a-f]{40}$", ref), f"README: pin {ref} by commit SHA"
        if re.search(r"^\s*jobs:", snippet, re.M):
            assert "permissions:" in snippet, f"README snippet without permissions:\n{snippet}"


def test_init_ships_the_example_workflows():
    examples = ROOT / "examples" / "workflows"
    assert examples.resolve() == (ROOT / "templates" / "workflows").resolve()
