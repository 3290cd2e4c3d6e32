"""The house rules, checked: one folder per concern, imports pointing down, outputs declared."""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from lepton_ci.core.outputs import BY_STEP
from lepton_ci.gha_entry import STEPS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lepton_ci"
# Lower layers never import higher ones; siblings at one level never import each other.
LAYERS = [
    "core",
    "trust",
    "versions",
    "run",
    "report",
    "image",
    "rollout",  # below deploy: the podman target runs the splitter, the deployer the canary
    "deploy",
    "watch",
    "site",
    "init",
    "<top>",
]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "<top>"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "lepton_ci":  # a sub-package, or the root's own names
                    deps.update(
                        f"lepton_ci.{a.name}" if (PACKAGE / a.name).exists() else "lepton_ci"
                        for a in node.names
                    )
                elif node.module.startswith("lepton_ci."):
                    target = node.module
                    sub = [f"{target}.{a.name}" for a in node.names]
                    known = [s for s in sub if (ROOT / (s.replace(".", "/") + ".py")).exists()]
                    deps.update(known or [target])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("lepton_ci."))
    return graph


@pytest.mark.unit
def test_every_import_points_down_the_layers():
    upward = []
    for module, deps in _imports().items():
        here = _layer(module)
        for dep in deps:
            there = _layer(dep)
            if dep == "lepton_ci" or here == there:
                continue
            if LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{module} -> {dep}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


@pytest.mark.unit
def test_module_import_graph_has_no_cycles():
    graph = _imports()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for d in graph.get(n, ()):
            if d not in graph:
                continue
            if state.get(d) == 1:
                cycle.extend([*stack[stack.index(d) :], d] if d in stack else [n, d])
                return True
            if state.get(d) is None and visit(d, [*stack, d]):
                return True
        state[n] = 2
        return False

    for n in graph:
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.unit
def test_few_modules_stay_at_the_top_and_every_folder_is_a_known_layer():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), folders - set(LAYERS)


def _declared(action: Path) -> set[str]:
    return set((yaml.safe_load(action.read_text()).get("outputs") or {}).keys())


# Steps the actions call that are no action of their own: `extras` asks which optional
# dependencies the setup action installs before build and deploy; it writes no outputs.
HELPER_STEPS = {"extras"}


@pytest.mark.unit
@pytest.mark.parametrize("step", sorted(set(STEPS) - HELPER_STEPS))
def test_step_outputs_match_the_action_that_runs_the_step(step):
    action = ROOT / "actions" / step / "action.yml"
    assert action.exists(), f"no action for step {step}"
    assert step in BY_STEP, f"no outputs object for step {step}"
    assert set(BY_STEP[step].names()) == _declared(action)


@pytest.mark.unit
def test_every_outputs_object_belongs_to_a_step_or_a_workflow_command():
    assert set(BY_STEP) - set(STEPS) == {"accept-tag"}


def _gha_steps(action: Path) -> dict[str, str]:
    """step id -> the `lepton-ci gha STEP` it runs."""
    steps = yaml.safe_load(action.read_text())["runs"]["steps"]
    return {
        s["id"]: s["run"].split()[-1]
        for s in steps
        if "id" in s and str(s.get("run", "")).startswith("lepton-ci gha ")
    }


ACTIONS = sorted([ROOT / "action.yml", *(ROOT / "actions").glob("*/action.yml")])


@pytest.mark.unit
@pytest.mark.parametrize("action", ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_declared_output_is_one_a_step_writes(action):
    """The all-in-one action included: an output read from a step that never writes it would
    be empty on GitHub without any error."""
    runs = _gha_steps(action)
    for name, spec in (yaml.safe_load(action.read_text()).get("outputs") or {}).items():
        refs = re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", spec["value"])
        assert refs, f"{action}: output {name} reads no step"
        for step_id, output in refs:
            script = action.parent / "bootstrap.py"
            if step_id == "setup":  # the setup action: its script writes the output
                assert re.search(rf'\boutput\("{output}"', script.read_text()), name
                continue
            assert step_id in runs, f"{action}: output {name} reads step {step_id}"
            assert output in BY_STEP[runs[step_id]].names(), f"{action}: {name} <- {output}"


@pytest.mark.e2e
def test_run_with_several_models_writes_every_declared_output(tmp_path, gh_files, capsys):
    from tests.conftest import Cli, parse_outputs, two_model_repo

    repo = two_model_repo(tmp_path / "mono")
    code, _, err = Cli(repo, capsys)("gha", "run")
    assert code == 0, err
    outputs = parse_outputs(gh_files["output"].read_text())
    assert set(outputs) == _declared(ROOT / "actions" / "run" / "action.yml")
    assert outputs["verdict"] == "pass"
    for name in ("record", "cache-hit", "version", "baseline"):
        assert set(json.loads(outputs[name])) == {"alpha", "beta"}, name
    assert json.loads(outputs["version"]) == {"alpha": "v0.1.0", "beta": "v0.1.0"}
