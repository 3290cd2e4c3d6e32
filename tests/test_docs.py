"""The docs site says only what is true: its examples run, its config loads, its workflows lint,
its links from the code land on pages that exist, and the reference covers the code.

- A ```console block after `<!-- doc-test: SCENARIO -->` is run: every `$ ` line as a command
  (in bash, in a fresh repository per page and scenario, blocks in page order), every other
  line an output line that must appear, in order, in what the commands printed (stdout and
  stderr); `…` in an expected line stands for any text.
- A ```yaml block titled `lepton.yaml` is loaded with the real config loader.
- A ```yaml block titled `.github/workflows/NAME.yml` passes actionlint and zizmor (pedantic).
- Every other ```yaml block parses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from lepton_ci.core import config, docs
from tests.conftest import commit_all, git
from tools import docs_gen  # the generated pages' names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
MARKER = re.compile(r"<!-- doc-test: (?P<scenario>[\w-]+) -->\n$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    title: str
    body: str
    scenario: str | None = None

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.M)


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, `--8<-- "FILE"` includes (pymdownx.snippets) expanded."""
    text = SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text().rstrip("\n"), page.read_text())
    out = []
    for m in FENCE.finditer(text):
        title = TITLE.search(m["attrs"])
        marker = MARKER.search(text[max(0, m.start() - 200) : m.start()])
        out.append(
            Block(
                page,
                text.count("\n", 0, m.start()) + 1,
                m["lang"],
                title["title"] if title else "",
                m["body"],
                marker["scenario"] if marker else None,
            )
        )
    return out


def all_blocks() -> list[Block]:
    return [b for page in [*PAGES, ROOT / "README.md"] for b in blocks(page)]


# -- console examples ------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def steps(body: str) -> list[Step]:
    out: list[Step] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append(Step(line[2:]))
        elif line.strip():
            assert out, f"output before the first command: {line}"
            out[-1].expected.append(line.rstrip())
    return out


def pattern(expected: str) -> re.Pattern[str]:
    """`…` stands for any text, the spaces around it included (table columns move)."""
    parts = expected.split("…")
    parts = [p if i == 0 else p.lstrip(" ") for i, p in enumerate(parts)]
    parts = [p if i == len(parts) - 1 else p.rstrip(" ") for i, p in enumerate(parts)]
    return re.compile(".*".join(re.escape(part) for part in parts))


def missing_lines(expected: list[str], actual: str) -> list[str]:
    """The expected lines that do not appear, in order, among the actual ones."""
    lines = [line.rstrip() for line in actual.splitlines()]
    i, missing = 0, []
    for want in expected:
        p = pattern(want)
        j = i
        while j < len(lines) and not p.fullmatch(lines[j]):
            j += 1
        if j == len(lines):
            missing.append(want)
        else:
            i = j + 1
    return missing


def digits_project(tmp_path: Path) -> Path:
    """The digits example as a user's repository before lepton-ci: no lepton.yaml."""
    repo = tmp_path / "digits"
    shutil.copytree(
        ROOT / "examples" / "digits",
        repo,
        ignore=shutil.ignore_patterns(
            "lepton.yaml", "model.joblib", "predictions.json", "metrics.json", ".lepton",
            "__pycache__",
        ),
    )  # fmt: skip
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada Lovelace")  # the author the docs show
    git(repo, "config", "user.email", "ada@example.com")
    commit_all(repo, "feat: digits classifier")
    return repo


def registered(tmp_path: Path) -> Path:
    """The digits example with its lepton.yaml, v0.1.0 run, registered and pushed to origin."""
    repo = tmp_path / "digits"
    shutil.copytree(
        ROOT / "examples" / "digits",
        repo,
        ignore=shutil.ignore_patterns(
            "model.joblib", "predictions.json", "metrics.json", ".lepton", "__pycache__"
        ),
    )
    (repo / ".gitignore").write_text(".lepton/\nmodel.joblib\npredictions.json\nmetrics.json\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada Lovelace")
    git(repo, "config", "user.email", "ada@example.com")
    commit_all(repo, "feat: digits classifier")
    git(tmp_path, "init", "-q", "--bare", "origin.git")
    git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(repo, "push", "-q", "origin", "main")
    for command in ("lepton-ci run", "lepton-ci register --push"):
        out, status = run_step(repo, command)
        assert status == "0", out
    return repo


def gto_era(tmp_path: Path) -> Path:
    """The digits example as DVC and GTO left it: metrics.json committed, digits@v0.1.0 an
    annotated tag without a record; lepton.yaml added."""
    repo = tmp_path / "digits"
    shutil.copytree(
        ROOT / "examples" / "digits",
        repo,
        ignore=shutil.ignore_patterns(
            "model.joblib", "predictions.json", "metrics.json", ".lepton", "__pycache__"
        ),
    )
    (repo / ".gitignore").write_text("model.joblib\npredictions.json\n.lepton/\n")
    for script in ("train.py", "evaluate.py"):
        subprocess.run([sys.executable, script], cwd=repo, check=True, capture_output=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada Lovelace")
    git(repo, "config", "user.email", "ada@example.com")
    commit_all(repo, "feat: digits classifier")
    git(repo, "tag", "-a", "digits@v0.1.0", "-m", "Registering artifact digits version v0.1.0")
    return repo


SCENARIOS = {"getting-started": digits_project, "registered": registered, "gto-era": gto_era}


def scenarios() -> list[tuple[str, str, list[Block]]]:
    found: dict[tuple[str, str], list[Block]] = {}
    for b in all_blocks():
        if b.scenario:
            found.setdefault((str(b.page.relative_to(ROOT)), b.scenario), []).append(b)
    return [(page, name, bs) for (page, name), bs in sorted(found.items())]


def run_step(repo: Path, command: str) -> tuple[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)  # as on a person's machine
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return proc.stdout + proc.stderr, str(proc.returncode)


@pytest.mark.e2e
@pytest.mark.parametrize(("page", "scenario", "found"), scenarios(), ids=lambda v: str(v)[:40])
def test_console_examples_print_what_the_docs_show(tmp_path, page, scenario, found):
    assert scenario in SCENARIOS, f"{page}: unknown doc-test scenario {scenario!r}"
    repo = SCENARIOS[scenario](tmp_path)
    status = "0"
    for block in found:
        assert block.lang == "console", f"{block.where()}: a doc-test block must be ```console"
        for step in steps(block.body):
            if step.command == "echo $?":  # the exit code of the command before
                assert step.expected == [status], f"{block.where()}: exit {status}"
                continue
            out, status = run_step(repo, step.command)
            missing = missing_lines(step.expected, out)
            assert not missing, (
                f"{block.where()}: `{step.command}` did not print:\n"
                + "\n".join(missing)
                + f"\n--- it printed:\n{out}"
            )


def test_the_matcher_wants_every_line_in_order():
    out = "a 1\nb 22\nc 3\n"
    assert missing_lines(["a …", "c 3"], out) == []
    assert missing_lines(["c 3", "a 1"], out) == ["a 1"]
    assert missing_lines(["b 2"], out) == ["b 2"]  # a whole line, not a part of one
    assert missing_lines(["b   …   "], "b 22\n") == []  # the columns around `…` may move


# -- YAML ------------------------------------------------------------------------------------


def test_every_lepton_yaml_in_the_docs_loads(tmp_path):
    found = [b for b in all_blocks() if b.lang == "yaml" and b.title == "lepton.yaml"]
    assert len(found) >= 5
    for i, block in enumerate(found):
        path = tmp_path / str(i) / "lepton.yaml"
        path.parent.mkdir()
        path.write_text(block.body)
        try:
            config.load(path)
        except Exception as e:
            pytest.fail(f"{block.where()}: {e}")


def test_every_yaml_block_parses():
    for block in all_blocks():
        if block.lang == "yaml":
            try:
                yaml.safe_load(block.body)
            except yaml.YAMLError as e:
                pytest.fail(f"{block.where()}: {e}")


def workflow_blocks() -> list[Block]:
    return [b for b in all_blocks() if b.title.startswith(".github/workflows/")]


def test_every_workflow_in_the_docs_passes_actionlint_and_zizmor(tmp_path):
    found = workflow_blocks()
    assert len(found) >= 3
    for i, block in enumerate(found):
        repo = tmp_path / str(i)
        target = repo / block.title
        target.parent.mkdir(parents=True)
        target.write_text(block.body)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        lint = subprocess.run(["actionlint", str(target)], capture_output=True, text=True)
        assert lint.returncode == 0, f"{block.where()}:\n{lint.stdout}{lint.stderr}"
        ziz = subprocess.run(
            [
                "zizmor", "--offline", "--persona", "pedantic", "--config",
                str(ROOT / ".github" / "zizmor.yml"), str(target),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert ziz.returncode == 0, f"{block.where()}:\n{ziz.stdout}{ziz.stderr}"


def test_workflows_in_the_docs_pin_actions_and_state_permissions():
    for block in workflow_blocks():
        for ref in re.findall(r"uses:\s*([^\s#]+)", block.body):
            if not ref.startswith("./"):
                assert re.search(r"@[0-9a-f]{40}$", ref), f"{block.where()}: pin {ref} by SHA"
        assert re.search(r"^permissions: \{\}$", block.body, re.M), block.where()


# -- links -----------------------------------------------------------------------------------


def site_pages() -> set[str]:
    pages = {str(p.relative_to(DOCS).with_suffix("")) for p in PAGES}
    return pages | {p.removesuffix(".md") for p in docs_gen.PAGES}


def test_every_docs_link_the_code_gives_names_a_page():
    """Hints in errors, the header of the lepton.yaml init writes, the examples' comments and
    the README (which PyPI shows too: its links into the docs are absolute)."""
    url = re.escape(docs.SITE) + r"(?P<path>[\w/-]+?)/?(?:#(?P<anchor>[\w-]+))?(?=[\s\"')`]|$)"
    pages = site_pages()
    seen = set()
    files = [
        *ROOT.glob("lepton_ci/**/*.py"),
        *ROOT.glob("examples/*/lepton.yaml"),
        ROOT / "README.md",
    ]
    calls = re.compile(r"docs\.page\(\s*[\"'](?P<path>[^\"']+)[\"']")
    for path in files:
        text = path.read_text()
        for m in [*re.finditer(url, text), *calls.finditer(text)]:
            seen.add(m["path"])
            assert m["path"] in pages, f"{path.relative_to(ROOT)}: no docs page {m['path']!r}"
    assert {"reference/config", "how-to/watch", "reference/templates"} <= seen
