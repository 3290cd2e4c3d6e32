"""What GitHub does with the shipped workflows that act does not model: permissions,
environments, concurrency queues, tag filters, pins. Checked against GitHub's documented rules.
"""

import re
from pathlib import Path

import pytest
import yaml

from lepton_ci.core import docs
from tools import docs_gen

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
            (s for s in job.get("steps", []) if s.get("uses", "").startswith("actions/checkout@")),
            None,
        )
        if checkout is None:
            continue
        persisted = (checkout.get("with") or {}).get("persist-credentials", True)
        pushes = perms.get("contents") == "write"
        assert persisted is pushes, f"{name}: persist the token only where the job pushes"


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_deploys_run_in_their_environment(wf):
    data = load(wf)
    assert "concurrency" not in data or "deploy" not in str(data["concurrency"])
    for name, job in data["jobs"].items():
        if not deploys(job):
            assert "deployments" not in job["permissions"], f"{name}: unused deployments: write"
            continue
        env = job.get("environment")
        assert env, f"{name} deploys without an environment (no reviewers, no secrets)"
        assert job["permissions"].get("deployments") == "write"


def person_started(data: dict) -> bool:
    """A run a person asked for: a button (workflow_dispatch only) or a tag they pushed."""
    on = data["on"] if isinstance(data["on"], dict) else {data["on"]: None}
    if set(on) == {"workflow_dispatch"}:
        return True
    return set(on) == {"push"} and bool((on["push"] or {}).get("tags"))


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_no_rollback_promotion_or_stage_tag_can_be_replaced_in_a_queue(wf):
    """GitHub keeps one running and one pending job per concurrency group, and a newer pending
    job replaces the older one whatever cancel-in-progress says (docs: 'Control the
    concurrency of workflows and jobs'). A deploy a person asked for therefore joins no group
    another run can join; it waits for the environment's release lock instead. Only the
    default branch's automatic release queues in `deploy-<env>`, where the newest push wins."""
    data = load(wf)
    for name, job in data["jobs"].items():
        if not deploys(job):
            continue
        group = (job.get("concurrency") or {}).get("group", "")
        if person_started(data):
            assert not group or "github.run_id" in group, f"{name}: {group} can be replaced"
        else:
            assert group == f"deploy-{job['environment']}", f"{name}: the environment's queue"
            assert job["concurrency"]["cancel-in-progress"] is False


def test_person_started_deploys_are_the_rollback_promote_and_tag_workflows():
    started = {load(wf)["name"] for wf in WORKFLOWS if person_started(load(wf))}
    assert started >= {"model-rollback", "model-promote", "model-tag"}
    assert "model-main" not in started


def test_the_release_lock_waits_longer_than_a_deploy_can_take():
    """The lock is the queue of what a person starts: it must outwait a running deploy and
    its revert (rollout and rollback budgets), or a queued rollback fails instead of waiting."""
    from lepton_ci.core.config import DeployConfig

    jobs = {(load(wf)["name"], n): j for wf in WORKFLOWS for n, j in load(wf)["jobs"].items()}
    shortest_job = min(j["timeout-minutes"] * 60 for j in jobs.values() if deploys(j))
    cfg = DeployConfig.model_validate({"environments": {"prod": {"url": "http://x"}}})
    env = cfg.environments["prod"]
    assert env.rollout_timeout + env.rollback_timeout < cfg.lock_timeout < shortest_job


def test_training_never_runs_where_the_token_can_push():
    jobs = load(ROOT / "templates" / "workflows" / "model-main.yml")["jobs"]
    assert jobs["run"]["permissions"] == {"contents": "read"}
    restore = next(s for s in jobs["release"]["steps"] if "cache/restore@" in s.get("uses", ""))
    assert restore["with"]["fail-on-cache-miss"] is True
    assert restore["with"]["key"] == "lepton-untrusted-${{ runner.os }}-${{ github.sha }}"
    # a run-cache miss (e.g. another platform's key) fails there rather than training
    ship = next(s for s in jobs["release"]["steps"] if s.get("uses", "").startswith("lepton-ci/"))
    assert ship["with"]["cached-only"] == "true"
    save = next(s for s in jobs["run"]["steps"] if "cache/save@" in s.get("uses", ""))
    assert save["with"]["key"] == restore["with"]["key"]
    pr = load(ROOT / "templates" / "workflows" / "model-pr.yml")["jobs"]["run"]
    restore_pr = next(s for s in pr["steps"] if "cache/restore@" in s.get("uses", ""))
    assert restore_pr["with"]["restore-keys"] == "lepton-untrusted-${{ runner.os }}-"


def _trusted(data: dict, job: dict) -> bool:
    env = {**(data.get("env") or {}), **(job.get("env") or {})}
    return env.get("LEPTON_TRUSTED_JOB") == "true"


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_jobs_that_can_write_are_the_trusted_side_and_never_train(wf):
    """A job whose token can write declares itself trusted: lepton-ci's virtualenv then comes
    from the trusted side's cache, and `run` there may only reuse a run. The one cache such a
    job takes from the untrusted side is the run-cache (data, checked by hashes), and it drops
    the tag index that came with it. A job that trains is the untrusted side, in its keys too."""
    data = load(wf)
    for name, job in data["jobs"].items():
        writes = any(v == "write" for v in job["permissions"].values())
        trusted = _trusted(data, job)
        assert trusted or not writes, f"{name} can write: give it LEPTON_TRUSTED_JOB: 'true'"
        steps = job.get("steps", [])
        for i, step in enumerate(steps):
            ref = step.get("uses", "")
            if ref.endswith(("actions/run@v1", "lepton-ci/lepton-ci@v1")) and trusted:
                assert (step.get("with") or {}).get("cached-only") == "true", f"{name} trains"
            if ref.startswith("actions/cache"):
                key = step["with"]["key"]
                assert "-untrusted-" in key or "-trusted-" in key, f"{name}: {key} names no side"
                if trusted and "-untrusted-" in key:
                    assert "save@" not in ref and ".lepton/cache" in step["with"]["path"]
                    assert steps[i + 1].get("run") == "rm -rf .git/lepton-ci", name
                if not trusted:
                    assert "-untrusted-" in key, f"{name} runs untrusted code: {key}"


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


def test_only_the_release_job_can_sign():
    """A job that runs the repository's code (training, every pull-request job) never holds
    `id-token: write` or the signing key: a poisoned training script could sign anything."""
    for wf in WORKFLOWS:
        for name, job in load(wf)["jobs"].items():
            signs = job["permissions"].get("id-token") == "write" or "LEPTON_SIGNING_KEY" in str(
                job
            )
            if signs and (wf.name, name) == ("model-site.yml", "deploy"):
                # deploy-pages' own OIDC proof: a single third-party step, no checkout, no code
                # of the repository's and no lepton-ci step runs in that job
                assert [s.get("uses", "").split("@")[0] for s in job["steps"]] == [
                    "actions/deploy-pages"
                ]
            elif signs:
                assert (wf.name, name) == ("model-main.yml", "release"), (wf.name, name)
    jobs = load(ROOT / "templates" / "workflows" / "model-main.yml")["jobs"]
    release = jobs["release"]
    assert release["permissions"]["id-token"] == "write"
    ship = next(s for s in release["steps"] if s.get("uses", "").startswith("lepton-ci/"))
    assert ship["with"]["signing-key"] == "${{ secrets.LEPTON_SIGNING_KEY }}"
    assert ship["with"]["cached-only"] == "true"  # it signs the run-cache's files, never trains
    assert "id-token" not in jobs["run"]["permissions"]


def readme_workflow(name: str) -> dict:
    """The README's workflow block titled `.github/workflows/NAME` (the tutorial shows the
    same one, and tests/test_docs_workflow.py runs it under act)."""
    from tests.test_docs import blocks

    (snippet,) = [
        b.body for b in blocks(ROOT / "README.md") if b.title == f".github/workflows/{name}"
    ]
    data = yaml.safe_load(snippet)
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_readme_one_step_workflow_gives_pull_requests_only_what_they_need():
    """A PR run comments (pull-requests: write) and can neither push nor reach staging's
    secrets; only the default branch's job can."""
    jobs = readme_workflow("model.yml")["jobs"]
    pr = next(j for j in jobs.values() if "pull_request" in j["if"])
    assert pr["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "environment" not in pr
    main = next(j for j in jobs.values() if "push" in j["if"])
    assert main["permissions"]["contents"] == "write" and main["environment"] == "staging"
    assert "pull-requests" not in main["permissions"]


def test_the_all_in_one_action_comments_after_a_failed_gate_but_not_after_a_crash():
    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    comment = next(s for s in steps if s.get("id") == "comment")
    cond = comment["if"]
    # runs after the run step failed its gates (a status function), not after a cancel, and
    # only when the run got as far as writing its report
    assert cond.startswith("${{ !cancelled() && steps.run.outputs.report != ''")
    for later in ("register", "card", "build", "deploy"):
        step = next(s for s in steps if s.get("id") == later)
        assert "cancelled()" not in step["if"] and "always()" not in step["if"], later


def test_the_site_rebuilds_after_every_workflow_that_pushes_tags_without_a_pat():
    """A tag pushed with GITHUB_TOKEN starts no workflow (GitHub docs: 'Triggering a workflow
    from a workflow'), so `push: tags` never sees what register and promote push in CI; the end
    of the workflow that pushed them does start one, on the default branch, which the
    github-pages environment allows by default."""
    by_name = {load(wf)["name"]: load(wf) for wf in WORKFLOWS}
    pushing = {
        name
        for name, data in by_name.items()
        if any(j["permissions"].get("contents") == "write" for j in data["jobs"].values())
    }
    assert pushing == {"model-main", "model-promote", "model-tag"}
    site = by_name["model-site"]
    trigger = site["on"]["workflow_run"]
    assert set(trigger["workflows"]) == pushing and trigger["types"] == ["completed"]
    # trusted code only: the default branch, nothing of the run that triggered it
    for job in site["jobs"].values():
        for step in job["steps"]:
            assert "workflow_run" not in str(step.get("with", {})), step


def test_the_watch_cron_makes_no_deployment_and_only_the_job_that_acts_has_the_environment():
    """A job with `environment:` puts a deployment on the Environments page each run and
    waits for the environment's reviewers: every 10 minutes, that is noise and a stall."""
    wd = ROOT / "templates" / "workflows"
    caller = load(wd / "model-watch.yml")
    assert "schedule" in caller["on"]
    (watch,) = caller["jobs"].values()
    assert "environment" not in watch
    assert watch["uses"] == "./.github/workflows/model-watch-environment.yml"
    called = load(wd / "model-watch-environment.yml")
    inputs = called["on"]["workflow_call"]["inputs"]
    assert set(watch["with"]) <= set(inputs)  # actionlint cannot read it from examples/
    assert {k for k, v in inputs.items() if v.get("required")} <= set(watch["with"])
    granted = watch["permissions"]
    for name, job in called["jobs"].items():
        for scope, level in job["permissions"].items():  # the caller's token is the ceiling
            assert granted.get(scope) == level, f"{name} needs {scope}: {level}"
    judge, act = called["jobs"]["judge"], called["jobs"]["act"]
    assert "environment" not in judge and "if" not in judge
    (judging,) = [
        s for s in judge["steps"] if s.get("uses", "").split("@")[0].endswith("actions/watch")
    ]
    assert judging["with"]["judge-only"] == "true"
    assert judge["outputs"]["act"] == "${{ steps.watch.outputs.act }}"
    assert act["needs"] == "judge" and act["if"] == "needs.judge.outputs.act == 'true'"
    assert act["environment"] == "${{ inputs.environment }}"
    (acting,) = [
        s for s in act["steps"] if s.get("uses", "").split("@")[0].endswith("actions/watch")
    ]
    assert "judge-only" not in acting["with"]


ACTIONS = sorted([ROOT / "action.yml", *(ROOT / "actions").glob("*/action.yml")])


def test_every_input_is_described_and_every_optional_one_has_a_default():
    """What the Actions reference says of the inputs, held against every action.yml."""
    required = set()
    for action in ACTIONS:
        name = action.parent.name if action.parent != ROOT else "lepton-ci"
        for key, spec in yaml.safe_load(action.read_text())["inputs"].items():
            assert str(spec.get("description", "")).strip(), f"{name}.{key}: no description"
            if spec.get("required"):
                assert "default" not in spec, f"{name}.{key}: required yet defaulted"
                required.add(f"{name}.{key}")
            else:
                assert "default" in spec, f"{name}.{key}: optional without a default"
    assert required == {
        "deploy.environment",
        "rollback.environment",
        "watch.environment",
        "promote.model",
        "promote.version",
        "promote.stage",
    }
    page = " ".join(docs_gen.actions_page().split())  # docs/reference/actions.md
    assert (
        "Every input has a description, every optional input a default, and the six required "
        "ones (`environment` of deploy, rollback and watch; `model`, `version` and `stage` of "
        "promote) none" in page
    )


DOCS_CALL = re.compile(r"docs\.page\(\s*[\"']([^\"']+)[\"'](?:,\s*[\"']([^\"']+)[\"'])?")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation but `-`
    and `_` dropped, spaces as `-`; a repeated heading gets `-1`, `-2`, ..."""
    seen: dict[str, int] = {}
    out = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"#{1,6} (.+)", line)
        if m is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_readme_anchor_linked_from_code_templates_and_the_readme_exists():
    """The lepton.yaml that `init` writes linked to `#configuration`, which no heading made.
    The README is now its first screens only: shipped files link into the docs site, at
    anchors its pages' headings make, and never to a README anchor."""
    readme = (ROOT / "README.md").read_text()
    anchors = github_anchors(readme)
    for anchor in re.findall(r"\]\(#([^)\s]+)\)", readme):
        assert anchor in anchors, f"README.md links to #{anchor}, which no heading makes"
    shipped = [ROOT / "action.yml", *(ROOT / "actions").rglob("*.yml")]
    for folder in ("lepton_ci", "templates", "examples", "tools"):
        shipped += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix != ".pyc"]
    readme_link = re.compile(
        r"(?:lepton-ci/lepton-ci(?:/blob/[\w./-]+/README\.md)?|README\.md)#([\w-]+)"
    )
    site_link = re.compile(re.escape(docs.SITE) + r"([\w/-]+?)/?#([\w-]+)")
    generated = docs_gen.pages()
    links = []
    for path in shipped:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        where = str(path.relative_to(ROOT))
        for anchor in readme_link.findall(text):
            raise AssertionError(f"{where} links to README #{anchor}: link the docs page")
        links += [(where, page, anchor) for page, anchor in site_link.findall(text)]
        links += [(where, m[0], m[1]) for m in DOCS_CALL.findall(text) if m[1]]
    assert any(where.endswith(".py") for where, _, _ in links)
    for where, page, anchor in links:
        source = generated.get(f"{page}.md") or (ROOT / "docs" / f"{page}.md").read_text()
        assert anchor in github_anchors(source), f"{where} links to {page}#{anchor}: no heading"
