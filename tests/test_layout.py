"""The house rules, checked: one folder per concern, imports pointing down, outputs declared."""

import ast
from pathlib import Path

import pytest
import yaml

from lepton_ci.core.outputs import BY_STEP
from lepton_ci.gha_entry import STEPS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lepton_ci"
# Lower layers never import higher ones; siblings at one level never import each other.
LAYERS = ["core", "versions", "run", "report", "image", "deploy", "watch", "init", "<top>"]


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
                if node.module == "lepton_ci":
                    deps.update(f"lepton_ci.{a.name}" for a in node.names)
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


@pytest.mark.unit
@pytest.mark.parametrize("step", sorted(set(STEPS)))
def test_step_outputs_match_the_action_that_runs_the_step(step):
    action = ROOT / "actions" / step / "action.yml"
    assert action.exists(), f"no action for step {step}"
    assert step in BY_STEP, f"no outputs object for step {step}"
    assert set(BY_STEP[step].names()) == _declared(action)


@pytest.mark.unit
def test_every_outputs_object_belongs_to_a_step_or_a_workflow_command():
    assert set(BY_STEP) - set(STEPS) == {"accept-tag"}
