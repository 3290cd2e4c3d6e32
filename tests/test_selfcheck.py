"""The self-checks users can see: selfcheck.yml runs the actions from the repository itself on
Linux and macOS with every supported Python, and zizmor as .ci/run does; Dependabot keeps
every pin moving. Static checks of what act cannot run here (macOS, setup-python, Dependabot);
actionlint and zizmor in .ci/run check the syntax."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github"


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)  # YAML 1.1 reads `on:` as true
    return data


def selfcheck() -> dict:
    return load(GITHUB / "workflows" / "selfcheck.yml")


def test_the_actions_run_from_the_repository_on_linux_and_macos_with_each_python():
    job = selfcheck()["jobs"]["actions"]
    matrix = job["strategy"]["matrix"]
    assert matrix["os"] == ["ubuntu-latest", "macos-latest"]
    assert job["runs-on"] == "${{ matrix.os }}" and job["strategy"]["fail-fast"] is False
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor == ">=3.11" and matrix["python"] == ["3.11", "3.12", "3.13"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert {"./", "./actions/run", "./actions/setup"} <= set(uses)
    assert not [u for u in uses if u.startswith("lepton-ci/")], "this commit's code, not a release"
    # lepton-ci's own virtualenv is built with the matrix Python, not the runner's python3
    setup = next(s for s in job["steps"] if s.get("uses") == "./actions/setup")
    assert setup["with"]["python"] == "${{ steps.python.outputs.python-path }}"
    # the outputs are checked, not only the exit codes
    checked = " ".join(str(s.get("env", {})) for s in job["steps"])
    for output in (
        "steps.run.outputs.verdict",
        "steps.run.outputs.cache-hit",
        "steps.all.outputs.verdict",
        "steps.all.outputs.cache-hit",
    ):
        assert output in checked, output


def test_a_self_check_never_writes_to_the_repository():
    """No push trigger (on the default branch the all-in-one registers a version and pushes
    its tag), no token for the comment, read-only jobs."""
    wf = selfcheck()
    assert "push" not in wf["on"] and "pull_request_target" not in wf["on"]
    assert wf["permissions"] == {}
    for name, job in wf["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, name
    everything = next(s for s in wf["jobs"]["actions"]["steps"] if s.get("uses") == "./")
    assert everything["with"]["github-token"] == ""


def _zizmor_commands(text: str) -> list[list[str]]:
    """Each zizmor invocation of a shell script, as arguments, without the binary's path."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        m = re.search(r"(?:^|\s)\"?\S*zizmor\"?\s+(--.*)$", line.strip())
        if m:
            out.append(shlex.split(m[1]))
    return out


def test_the_zizmor_job_runs_what_ci_runs():
    steps = selfcheck()["jobs"]["zizmor"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps)
    ci = _zizmor_commands((ROOT / ".ci" / "run").read_text())
    assert len(ci) == 2 and _zizmor_commands(script) == ci
    assert "--require-hashes -r tools/requirements-zizmor.txt" in re.sub(r"\\\n\s*", "", script)
    # the workflows of this repository are in the pedantic pass
    assert {".github/workflows/release.yml", ".github/workflows/selfcheck.yml"} <= set(ci[1])


def test_the_pinned_zizmor_is_the_one_the_tests_accept():
    text = (ROOT / "tools" / "requirements-zizmor.txt").read_text()
    [version] = re.findall(r"^zizmor==(\S+)", text, re.MULTILINE)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    [spec] = [Requirement(r) for r in extras["test"] if r.startswith("zizmor")]
    assert spec.specifier.contains(version)


def test_dependabot_covers_every_action_and_every_hash_pinned_requirements_file():
    cfg = load(GITHUB / "dependabot.yml")
    assert all(u["cooldown"]["default-days"] >= 7 for u in cfg["updates"])
    dirs = {u["package-ecosystem"]: set(u["directories"]) for u in cfg["updates"]}
    # GitHub Actions: "/" is the workflows and /action.yml; then each composite action
    assert "/" in dirs["github-actions"]
    composite = {f"/actions/{p.parent.name}" for p in (ROOT / "actions").glob("*/action.yml")}
    assert len(composite) == 10
    assert "/actions/*" in dirs["github-actions"] or composite <= dirs["github-actions"]
    # pip: every tracked requirements file pinned with hashes (the examples' are pinned to
    # what their pickles were written with, and torch to the one wheel on these machines)
    tracked = subprocess.run(
        ["git", "ls-files", "*requirements*.txt"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    hashed = {
        "/" + str(Path(f).parent) for f in tracked if "--hash=sha256:" in (ROOT / f).read_text()
    }
    assert hashed == {"/actions/setup", "/tools"} and hashed <= dirs["pip"]


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.dependabot", [".github/dependabot.yml"]),
        (
            "vendor.github-workflows",
            [".github/workflows/selfcheck.yml", ".github/workflows/release.yml"],
        ),
        (
            "custom.github-workflows-require-timeout",
            [".github/workflows/selfcheck.yml", ".github/workflows/release.yml"],
        ),
    ],
)
def test_the_files_match_schemastores_schemas(schema, files):
    """SchemaStore's schemas, vendored in check-jsonschema (no network)."""
    cli = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run(
        [str(cli), "--builtin-schema", schema, *files], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
