from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from lepton_ci.cli import main

T = TypeVar("T")
FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def _order_seed(config: pytest.Config) -> int | None:
    """pytest-randomly's seed for this run (None when the plugin is off: `-p no:randomly`)."""
    seed = getattr(config.option, "randomly_seed", None)
    return seed if isinstance(seed, int) else None


@pytest.hookimpl(trylast=True)  # after pytest-randomly has chosen its seed
def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis draws its examples from the test order's seed unless `--hypothesis-seed` is
    given: one printed number repeats a run, the order and the generated inputs both."""
    seed = _order_seed(config)
    if seed is not None and config.getoption("hypothesis_seed", None) is None:
        from hypothesis import core

        core.global_force_seed = seed  # what `--hypothesis-seed` sets


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The seed at the end of every run, `-q` included (the header that names it is not
    printed then): a failure that depends on the order is repeated with it."""
    seed = _order_seed(config)
    if seed is not None:
        terminalreporter.write_line(
            f"random order: repeat it with -p randomly --randomly-seed={seed}"
        )


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Own HOME and git config; no GITHUB_* or LEPTON_* leaking in from the machine."""
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n  name = Test User\n  email = test@example.com\n"
        "[init]\n  defaultBranch = main\n[advice]\n  detachedHead = false\n"
        '[protocol "file"]\n  allow = always\n'
    )
    for key in list(os.environ):
        if key.startswith(("GITHUB_", "LEPTON_", "RUNNER_", "ACTIONS_", "GIT_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # caches (compiled templates) in HOME
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return home


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return proc.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def set_params(repo: Path, **values: object) -> None:
    p = repo / "params.yaml"
    data = yaml.safe_load(p.read_text())
    data.update(values)
    p.write_text(yaml.safe_dump(data))


class Cli:
    def __init__(self, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.repo = repo
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["-C", str(self.repo), *args])
        out, err = self.capsys.readouterr()
        return code, out, err


def two_model_repo(repo: Path) -> Path:
    """A monorepo with the toy model twice, as `alpha` and `beta`."""
    for name in ("alpha", "beta"):
        shutil.copytree(FIXTURES / "toy", repo / name)
        (repo / name / "lepton.yaml").unlink()
    cfg = (FIXTURES / "toy" / "lepton.yaml").read_text()
    body = cfg.split("models:\n  toy:\n", 1)[1].split("stages:")[0]
    models = "".join(f"  {n}:\n    path: {n}\n{body}" for n in ("alpha", "beta"))
    (repo / "lepton.yaml").write_text("models:\n" + models + "stages: [staging]\n")
    (repo / ".gitignore").write_text(".lepton/\nmodel.bin\nmetrics.json\ntrain_count.txt\n")
    git(repo, "init", "-q")
    commit_all(repo, "feat: two models")
    return repo


@pytest.fixture
def toy_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "toy", repo)
    (repo / ".gitignore").write_text(".lepton/\nmodel.bin\nmetrics.json\ntrain_count.txt\n")
    git(repo, "init", "-q")
    commit_all(repo, "feat: toy model")
    return repo


@pytest.fixture
def cli(toy_repo: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(toy_repo, capsys)


@pytest.fixture
def gh_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    out = tmp_path / "github_output"
    summary = tmp_path / "step_summary"
    out.touch()
    summary.touch()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    yield {"output": out, "summary": summary}


def parse_outputs(text: str) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT the way the runner does, heredoc delimiters included."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            i += 1
            while lines[i] != delim:
                body.append(lines[i])
                i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        i += 1
    return out


# -- real services, started once per test session --------------------------------------------


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """A registry, podman with its Docker API socket, and base images in the registry."""
    from tests.support.services import local_services

    with local_services(tmp_path_factory.mktemp("services")) as (registry, podman, bases):
        docker_host = podman.start_service()
        yield {"registry": registry, "podman": podman, "bases": bases, "docker_host": docker_host}


@pytest.fixture(scope="session")
def deps_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deps-cache")


@pytest.fixture
def shared_deps_cache(deps_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One dependency-layer cache for the session's builds of the examples, as one machine
    has: their frameworks (scikit-learn, torch) are installed once, not once per test HOME."""
    monkeypatch.setenv("LEPTON_DEPS_CACHE", str(deps_cache))
    return deps_cache


def point_image_at(repo: Path, old: str, new: str) -> None:
    """Rewrite lepton.yaml's image name, e.g. to push through a proxy or another registry."""
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace(f"name: {old}", f"name: {new}"))


def use_registry(repo: Path, registry: str, base: str) -> str:
    """Point lepton.yaml at the test registry, the image in a repository namespace of its own
    (the registry is shared by the session: no test sees another's tags or blobs). Returns
    REGISTRY/NAMESPACE, the prefix of the image name."""
    prefix = f"{registry}/t{uuid.uuid4().hex[:10]}"
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text()
        .replace("127.0.0.1:5000/pybase:bookworm", base)
        .replace("name: 127.0.0.1:5000/", f"name: {prefix}/")
        .replace("127.0.0.1:5000", registry)
    )
    return prefix


EXAMPLE = Path(__file__).parent.parent / "examples" / "digits"
# What training, evaluation and lepton-ci leave in an example: never copied into a test repo.
EXAMPLE_OUTPUTS = (
    "model.joblib",
    "model.pth",
    "predictions.json",
    "metrics.json",
    ".lepton",
    "__pycache__",
)


def example_repo(
    repo: Path,
    services: dict[str, Any],
    edit: Callable[[Path], None] | None = None,
    example: Path = EXAMPLE,
) -> str:
    """An example (digits unless told), committed in a new git repository at `repo`, its
    lepton.yaml on this session's registry and base image (`edit(lepton.yaml)` runs before the
    commit). Returns REGISTRY/NAMESPACE, the prefix of its image name."""
    shutil.copytree(example, repo, ignore=shutil.ignore_patterns(*EXAMPLE_OUTPUTS))
    prefix = use_registry(repo, services["registry"].host, services["bases"]["python"])
    if edit is not None:
        edit(repo / "lepton.yaml")
    git(repo, "init", "-q")
    commit_all(repo, "feat: digits")
    return prefix


def set_host_port(repo: Path, port: int) -> None:
    """Publish the podman target on PORT: every `host_port:` in lepton.yaml."""
    cfg = repo / "lepton.yaml"
    cfg.write_text(re.sub(r"host_port: \d+", f"host_port: {port}", cfg.read_text()))


def first_deploy_on_free_port(repo: Path, deploy: Callable[[], T]) -> tuple[int, T]:
    """The first podman deploy, the one that binds host_port: on a free port, committed to
    lepton.yaml. If another process took the port before podman bound it, `deploy` raises
    PortTaken (see check_port); the failed revision is forgotten and another port is tried.
    Returns the port and what `deploy` returned."""
    from tests.support.services import on_free_port

    def attempt(port: int) -> tuple[int, T]:
        shutil.rmtree(repo / ".lepton" / "deploy", ignore_errors=True)
        set_host_port(repo, port)
        commit_all(repo, f"test: serve on port {port}")
        return port, deploy()

    return on_free_port(attempt)
