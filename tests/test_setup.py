"""The setup action: pinned requirements, refusals before any install, extras on demand,
and the action run under act with the runner's own python3, cold, warm and from the cache."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lepton_ci.core import extras
from lepton_ci.core.config import load
from lepton_ci.gha_entry import argv, env_name
from tests.support.act import act, action_repo, git, make_workspace, system_path

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "actions" / "setup"


def _lock_module():
    spec = importlib.util.spec_from_file_location("lepton_setup_lock", SETUP / "lock.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lock = _lock_module()


def _old_python() -> str | None:
    """A Python older than 3.11 on this machine (pyenv keeps 3.10 here), if any. Looked up at
    import, before the autouse fixture swaps HOME."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(f"{pyenv}/versions/3.10*/bin/python3.10"))
    found += [p for p in ("/usr/bin/python3.10", "/usr/bin/python3.9") if Path(p).exists()]
    return found[0] if found else None


OLD_PYTHON = _old_python()
NO_OLD_PYTHON = "no Python < 3.11 on this machine (pyenv 3.10 is expected here)"


def install_sh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """install.sh with the machine's PATH: no uv from the test's virtualenv on it."""
    return subprocess.run(
        ["bash", str(SETUP / "install.sh"), *args],
        env={**os.environ, "PATH": os.pathsep.join(system_path()), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# -- pinned requirements ---------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("extra", [None, *lock.EXTRAS])
def test_requirements_match_pyproject(extra):
    import tomllib

    text = (SETUP / lock.requirements_name(extra)).read_text()
    digest = next(ln for ln in text.splitlines() if ln.startswith(lock.DIGEST_LINE))
    assert digest.removeprefix(lock.DIGEST_LINE) == lock.deps_digest(
        ROOT / "pyproject.toml", extra
    ), f"pyproject.toml changed: regenerate with `{lock.COMMAND}`"
    pins = lock.parse_pins(text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    if extra:
        wanted += project["optional-dependencies"][extra]
    for spec in map(Requirement, wanted):
        name = spec.name.lower().replace("_", "-")
        assert name in pins, f"{spec.name} is not pinned in {lock.requirements_name(extra)}"
        assert spec.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
    # every pin carries hashes (pip/uv --require-hashes refuses the file otherwise)
    blocks = [b for b in text.split("\n") if "==" in b]
    assert len(blocks) == len(pins) and all(b.rstrip().endswith("\\") for b in blocks)
    if extra:  # installing an extra on top of the core never moves a core pin
        core = lock.parse_pins((SETUP / "requirements.txt").read_text())
        assert {k: pins[k] for k in core} == core
    else:
        assert not {"kubernetes", "docker"} & set(pins)


@pytest.mark.unit
def test_the_digest_notices_a_changed_dependency(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace('"requests>=2.31"', '"requests>=2.32"'))
    assert lock.deps_digest(changed, None) != lock.deps_digest(ROOT / "pyproject.toml", None)
    assert lock.deps_digest(changed, "deploy") != lock.deps_digest(
        ROOT / "pyproject.toml", "deploy"
    )


# -- refusals, before anything is installed --------------------------------------------------


@pytest.mark.unit
def test_an_old_python_is_refused_in_one_line(tmp_path):
    py = OLD_PYTHON
    if py is None:
        pytest.skip(NO_OLD_PYTHON)
    proc = install_sh(env={"LEPTON_INPUT_PYTHON": py, "RUNNER_TEMP": str(tmp_path)})
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert "needs Python 3.11 or newer" in line and "is 3.10." in line
    assert "actions/setup-python" in line
    assert not list(tmp_path.iterdir())  # nothing created


@pytest.mark.unit
@pytest.mark.parametrize("runner_os", ["Windows", "MINGW64_NT-10.0"])
def test_windows_is_refused_naming_the_supported_runners(tmp_path, runner_os):
    proc = install_sh(
        env={"RUNNER_OS": runner_os, "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(tmp_path)}
    )
    assert proc.returncode == 1
    prefix = "::error title=lepton-ci setup::lepton-ci runs on Linux and macOS"
    assert proc.stdout.startswith(prefix)
    assert "ubuntu-latest" in proc.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.unit
def test_a_missing_interpreter_is_named(tmp_path):
    proc = install_sh(env={"LEPTON_INPUT_PYTHON": "python3.99", "RUNNER_TEMP": str(tmp_path)})
    assert proc.returncode == 1
    assert "'python3.99' not found" in proc.stderr


@pytest.mark.unit
def test_check_clears_a_stale_venv_before_the_cache_restores_one(tmp_path):
    venv = tmp_path / "lepton-ci-venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "old-package.py").write_text("")
    (venv / ".lepton-setup.json").write_text('{"deps": "lepton-ci-an-older-lock"}')
    out = tmp_path / "output"
    proc = install_sh("check", env={"RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["ready"] == "false" and outputs["venv"] == str(venv)
    assert outputs["key"].startswith("lepton-ci-untrusted-linux-")
    assert not venv.exists()


@pytest.mark.unit
def test_a_hostile_python_input_cannot_forge_a_workflow_command(tmp_path):
    evil = "$(touch pwned)\n::warning::forged 100%"
    proc = install_sh(
        env={"LEPTON_INPUT_PYTHON": evil, "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(tmp_path)}
    )
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    assert "'$(touch pwned)%0A::warning::forged 100%25' not found" in line
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# -- trusted and untrusted jobs: keys apart, a restored venv checked ------------------------


def check_outputs(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "output"
    out.write_text("")
    proc = install_sh("check", env={"RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(out), **env})
    return proc, dict(line.split("=", 1) for line in out.read_text().splitlines())


@pytest.mark.unit
def test_the_venv_key_says_which_side_saved_it(tmp_path):
    """A job that runs untrusted code (the default) and a job that says it does not
    (LEPTON_TRUSTED_JOB) never share a cache entry; a pull_request job is never trusted."""
    proc, untrusted = check_outputs(tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc, trusted = check_outputs(tmp_path, LEPTON_TRUSTED_JOB="true")
    assert trusted["key"].startswith("lepton-ci-trusted-linux-")
    assert trusted["key"] == untrusted["key"].replace("-untrusted-", "-trusted-")
    proc, pr = check_outputs(tmp_path, LEPTON_TRUSTED_JOB="true", GITHUB_EVENT_NAME="pull_request")
    assert pr["key"] == untrusted["key"]
    assert "ignored in a pull_request job" in proc.stderr
    proc = install_sh("check", env={"RUNNER_TEMP": str(tmp_path), "LEPTON_TRUSTED_JOB": "yes"})
    assert proc.returncode == 1 and "LEPTON_TRUSTED_JOB is `yes`" in proc.stderr


@pytest.fixture(scope="module")
def made_venv(tmp_path_factory) -> Path:
    """lepton-ci's virtualenv as setup makes it (once for the module)."""
    temp = tmp_path_factory.mktemp("made")
    proc = install_sh(env={"RUNNER_TEMP": str(temp)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return temp / "lepton-ci-venv"


def restored(made_venv: Path, temp: Path) -> Path:
    """A copy of it, as actions/cache puts one back in another job."""
    import shutil

    venv = temp / "lepton-ci-venv"
    shutil.copytree(made_venv, venv, symlinks=True)
    return venv


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def _edit_record(venv: Path, dist: str, line: str) -> None:
    record = next(_site(venv).glob(f"{dist}-*.dist-info")) / "RECORD"
    record.write_text(record.read_text() + line + "\n")


def _plant(venv: Path, name: str) -> Path:
    path = _site(venv) / name
    path.write_text("import os\n")
    return path


POISONS = {
    "a .pth file": (
        lambda v: (_site(v) / "zz-evil.pth").write_text("import os\n"),
        "site-packages/zz-evil.pth belongs to no installed distribution",
    ),
    "sitecustomize": (
        lambda v: (_site(v) / "sitecustomize.py").write_text("import os\n"),
        "site-packages/sitecustomize.py belongs to no installed distribution",
    ),
    "an edited package file": (
        lambda v: (_site(v) / "yaml" / "__init__.py").open("a").write("import os\n"),
        "yaml/__init__.py is not the file pyyaml 6.0.4 installed",
    ),
    "a .pth its RECORD lists without a hash": (
        lambda v: (
            (_site(v) / "zz-evil.pth").write_text("import os\n"),
            _edit_record(v, "idna", "zz-evil.pth,,"),
        ),
        "lists zz-evil.pth without a hash",
    ),
    "a sourceless sitecustomize its RECORD lists as bytecode": (
        lambda v: (
            __import__("py_compile").compile(
                str(_plant(v, "sitecustomize.py")), str(_site(v) / "sitecustomize.pyc")
            ),
            (_site(v) / "sitecustomize.py").unlink(),
            _edit_record(v, "idna", "sitecustomize.pyc,,"),
        ),
        "lists sitecustomize.pyc without a hash",
    ),
    "a RECORD reaching outside": (
        lambda v: _edit_record(v, "idna", "../../../../../../etc/hostname,sha256=x,1"),
        "outside the virtualenv",
    ),
    "a package nobody pinned": (
        lambda v: (
            (_site(v) / "evil-1.0.dist-info").mkdir(),
            (_site(v) / "evil-1.0.dist-info" / "METADATA").write_text(
                "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"
            ),
            (_site(v) / "evil-1.0.dist-info" / "RECORD").write_text(
                "evil-1.0.dist-info/RECORD,,\n"
            ),
        ),
        "evil 1.0 is installed but not in the lock",
    ),
    "a pinned package gone": (
        lambda v: [__import__("shutil").rmtree(d) for d in _site(v).glob("jinja2-*.dist-info")],
        "the lock pins jinja2 3.1.6, the virtualenv has none",
    ),
    "another interpreter": (
        lambda v: ((v / "bin" / "python").unlink(), (v / "bin" / "python").symlink_to("/bin/sh")),
        "bin/python is not this job's Python",
    ),
    "the system site-packages let in": (
        lambda v: (v / "pyvenv.cfg").write_text(
            (v / "pyvenv.cfg")
            .read_text()
            .replace("include-system-site-packages = false", "include-system-site-packages = true")
        ),
        "pyvenv.cfg lets the system site-packages in",
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_restored_venv_is_checked_against_the_lock(made_venv, tmp_path, poison):
    venv = restored(made_venv, tmp_path)
    do, said = POISONS[poison]
    do(venv)
    proc = install_sh("verify", env={"LEPTON_VENV": str(venv)})
    assert proc.returncode == 1 and said in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.e2e
def test_an_untouched_venv_passes_and_its_bytecode_is_dropped(made_venv, tmp_path):
    """What the check cannot vouch for (compiled bytecode, lepton-ci's own copy) is deleted
    before it, and made again: a planted .pyc never loads."""
    venv = restored(made_venv, tmp_path)
    pyc = _site(venv) / "yaml" / "__pycache__" / "__init__.cpython-311.pyc"
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(b"planted")
    proc = install_sh("verify", env={"LEPTON_VENV": str(venv)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "what its lock installs" in proc.stdout
    assert not pyc.exists() and not (_site(venv) / "lepton_ci").exists()


@pytest.mark.e2e
def test_a_poisoned_venv_is_made_again_before_anything_of_it_runs(made_venv, tmp_path):
    """A job starts with a virtualenv from the cache whose stamp says it is ready, and a .pth
    file that would run at every interpreter start: it is found before the interpreter
    starts, the virtualenv is made again, and the step says which cache entry to delete."""
    temp = tmp_path / "temp"
    venv = restored(made_venv, temp)
    ran = tmp_path / "pth-ran"
    evil = f"import pathlib; pathlib.Path({str(ran)!r}).touch()\n"
    (_site(venv) / "zz-evil.pth").write_text(evil)
    proc = install_sh(env={"RUNNER_TEMP": str(temp)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is not what its lock installs (lib/python3.11/site-packages/zz-evil.pth" in (
        proc.stderr
    )
    assert "delete that cache entry" in proc.stderr
    assert "installed in" in proc.stdout
    assert not ran.exists() and not (_site(venv) / "zz-evil.pth").exists()


# -- extras on demand ------------------------------------------------------------------------

CONFIG = """\
models:
  ma:
    train: python3 train.py
    metrics: [m.json]
    image: {name: 127.0.0.1:5000/a, base: 127.0.0.1:5000/py:1}
    deploy: {target: kubernetes, environments: {staging: {url: "http://a"}}}
  mb:
    train: python3 train.py
    metrics: [m.json]
    image: {name: 127.0.0.1:5000/b}
    deploy: {environments: {staging: {host_port: 18080}}}
"""


@pytest.mark.unit
def test_extras_follow_the_config(tmp_path):
    (tmp_path / "lepton.yaml").write_text(CONFIG)
    cfg = load(tmp_path / "lepton.yaml")
    assert extras.needed(cfg, "build", "ma") == []  # layers builder: no docker
    assert extras.needed(cfg, "build", "ma", builder="dockerfile") == ["image"]
    assert extras.needed(cfg, "build", "mb") == ["image"]  # no base: dockerfile
    assert extras.needed(cfg, "deploy", "ma") == ["deploy"]
    assert extras.needed(cfg, "deploy", "mb") == []  # podman
    assert extras.needed(cfg, "rollback", None) == ["deploy"]
    assert extras.needed(cfg, "run", None) == []
    assert argv("extras", {env_name("step"): "build", env_name("model"): "ma"}) == [
        "extras",
        "build",
        "--model",
        "ma",
    ]


@pytest.mark.unit
def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "deploy", ("lepton_no_such_module", "the target"))
    pinned = re.escape(f"pip install 'lepton-ci[deploy]=={extras.__version__}'")
    with pytest.raises(extras.MissingExtra, match=pinned):
        extras.require("deploy")
    extras.require("image")  # docker is installed in the test environment


@pytest.mark.e2e
def test_setup_adds_only_the_extras_the_step_needs(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "lepton.yaml").write_text(CONFIG)
    env = {
        "RUNNER_TEMP": str(tmp_path / "temp"),
        "LEPTON_INPUT_WORKING_DIRECTORY": str(repo),
        "LEPTON_INPUT_MODEL": "ma",
    }
    proc = install_sh(env={**env, "LEPTON_SETUP_STEP": "build"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fetching uv-" in proc.stdout
    venv = tmp_path / "temp" / "lepton-ci-venv"
    stamp = json.loads((venv / ".lepton-setup.json").read_text())
    assert stamp["extras"] == []
    site = venv / stamp["site"]
    assert (site / "lepton_ci" / "templates" / "workflows").is_dir()  # symlink copied as files
    assert not (site / "kubernetes").exists() and not (site / "docker").exists()
    proc = install_sh(env={**env, "LEPTON_SETUP_STEP": "build deploy"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adding the `deploy` dependencies for `deploy`" in proc.stdout
    assert json.loads((venv / ".lepton-setup.json").read_text())["extras"] == ["deploy"]
    assert (site / "kubernetes").is_dir() and not (site / "docker").exists()


@pytest.mark.e2e
def test_a_broken_uv_falls_back_to_pip_with_the_same_hashes(tmp_path):
    proc = install_sh(env={"RUNNER_TEMP": str(tmp_path), "LEPTON_UV": "/bin/false"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uv could not set lepton-ci up" in proc.stderr and "using pip instead" in proc.stderr
    venv = tmp_path / "lepton-ci-venv"
    assert json.loads((venv / ".lepton-setup.json").read_text())["installer"] == "pip"
    version = subprocess.run(
        [str(tmp_path / "lepton-ci-venv-bin" / "lepton-ci"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("lepton-ci ")


# -- the action under act, with the runner's python3 -----------------------------------------

TWICE = """\
name: setup
on: push
permissions: {}
jobs:
  job:
    runs-on: ubuntu-latest
    timeout-minutes: 10
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - uses: lepton-ci/lepton-ci/actions/setup@v1
      - id: again
        uses: lepton-ci/lepton-ci/actions/setup@v1
      - env:
          BIN: ${{ steps.again.outputs.bin }}
        run: |
          echo "lepton-ci at $(command -v lepton-ci), bin output $BIN"
          echo "python3 is $(command -v python3)"
          lepton-ci --version
          cd "$RUNNER_TEMP"/lepton-ci-venv/lib/python*/site-packages
          echo "venv has:" *
          cd "$RUNNER_TEMP/../act/actions"
          echo "action dirs:" $(find . -mindepth 2 -maxdepth 2 -name build) \
            $(find . -name '*.egg-info' -o -name __pycache__)
"""


@pytest.fixture(scope="module")
def action(tmp_path_factory):
    return action_repo(tmp_path_factory.mktemp("action") / "lepton-ci")


def setup_workspace(tmp_path: Path, workflow: str) -> Path:
    ws = make_workspace(tmp_path / "ws", [])
    (ws / ".github" / "workflows" / "setup.yml").write_text(workflow)
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "ci: setup")
    return ws


def step_lines(stdout: str) -> list[str]:
    return [ln.split("|", 1)[1].strip() for ln in stdout.splitlines() if "|" in ln]


@pytest.mark.e2e
def test_setup_action_cold_warm_and_from_the_cache(tmp_path, action):
    ws = setup_workspace(tmp_path, TWICE)
    before = sorted(str(p.relative_to(action)) for p in action.rglob("*"))
    cache = tmp_path / "cache-service"

    def job(i: int, **env: str) -> list[str]:  # each job starts with an empty RUNNER_TEMP
        home = tmp_path / f"home{i}"
        home.mkdir()
        proc = act(
            ws,
            "push",
            {"ref": "refs/heads/main"},
            "setup.yml",
            home=home,
            action=action,
            env={"LEPTON_TEST_CACHE": str(cache), **env},
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        warnings = [ln for ln in proc.stdout.splitlines() if "::warning" in ln]
        return step_lines(proc.stdout) + warnings

    first, second = job(0), job(1)
    # job 1: uv from its pinned wheel, installed once, the job's second step finds it ready
    assert any(ln.startswith("lepton-ci setup: fetching uv-") for ln in first)
    assert sum("installed in" in ln for ln in first) == 1
    assert sum(ln.startswith("lepton-ci ") and " ready in " in ln for ln in first) == 1
    assert any(ln.startswith("cache stand-in: saved lepton-ci-untrusted-linux-") for ln in first)
    # job 2: restored from the cache, checked, nothing installed
    assert any(
        ln.startswith("cache stand-in: restored lepton-ci-untrusted-linux-") for ln in second
    )
    assert not any("installed in" in ln for ln in second)
    # the job's own python3 stays first on PATH; lepton-ci comes from its own directory
    py = next(ln for ln in second if ln.startswith("python3 is "))
    assert "lepton-ci-venv" not in py
    where = next(ln for ln in second if ln.startswith("lepton-ci at ")).split()
    assert where[2] == where[5] + "/lepton-ci," and where[5].endswith("/lepton-ci-venv-bin")
    # core only: no kubernetes, no docker
    has = next(ln for ln in second if ln.startswith("venv has: ")).split()
    assert "lepton_ci" in has and "pydantic" in has
    assert "kubernetes" not in has and "docker" not in has
    # nothing written into the action's directory (act's copy, nor the source)
    assert next(ln for ln in second if ln.startswith("action dirs:")) == "action dirs:"
    assert sorted(str(p.relative_to(action)) for p in action.rglob("*")) == before
    # A job that says it runs no untrusted code never restores what those jobs saved: its key
    # is the trusted side's, a miss, and it makes and saves its own.
    third = job(2, LEPTON_TRUSTED_JOB="true")
    assert any(
        ln.startswith("cache stand-in: no entry for lepton-ci-trusted-linux-") for ln in third
    )
    assert sum("installed in" in ln for ln in third) == 1
    assert any(ln.startswith("cache stand-in: saved lepton-ci-trusted-linux-") for ln in third)
    # Poisoned anyway (a .pth in the saved tarball): checked before it runs, made again.
    import tarfile

    (entry,) = cache.glob("lepton-ci-trusted-*.tar")
    with tarfile.open(entry) as t:
        site = next(m.name for m in t.getmembers() if m.name.endswith("/site-packages"))
    evil = tmp_path / "zz-evil.pth"
    evil.write_text("import os; os.system('echo POISONED')\n")
    with tarfile.open(entry, "a") as t:
        t.add(evil, f"{site}/zz-evil.pth")
    fourth = job(3, LEPTON_TRUSTED_JOB="true")
    assert any(ln.startswith("cache stand-in: restored lepton-ci-trusted-linux-") for ln in fourth)
    assert any("is not what its lock installs" in ln and "zz-evil.pth" in ln for ln in fourth)
    assert sum("installed in" in ln for ln in fourth) == 1
    assert not any("POISONED" in ln for ln in fourth)


@pytest.mark.e2e
def test_setup_action_refuses_an_old_python(tmp_path, action):
    py = OLD_PYTHON
    if py is None:
        pytest.skip(NO_OLD_PYTHON)
    workflow = TWICE.replace(
        "      - uses: lepton-ci/lepton-ci/actions/setup@v1\n",
        f"      - uses: lepton-ci/lepton-ci/actions/setup@v1\n        with: {{python: {py}}}\n",
        1,
    )
    ws = setup_workspace(tmp_path, workflow)
    home = tmp_path / "home"
    home.mkdir()
    proc = act(ws, "push", {"ref": "refs/heads/main"}, "setup.yml", home=home, action=action)
    assert proc.returncode != 0
    assert f"lepton-ci needs Python 3.11 or newer; '{py}' is 3.10." in proc.stdout
    assert "actions/setup-python" in proc.stdout
    assert "installed in" not in proc.stdout


@pytest.mark.unit
def test_every_action_sets_up_the_same_way():
    """Each action checks, restores the cache, then installs; the extras steps say theirs."""
    import yaml

    files = [ROOT / "action.yml", *sorted((ROOT / "actions").glob("*/action.yml"))]
    for f in files:
        steps = yaml.safe_load(f.read_text())["runs"]["steps"]
        ids = [s.get("id") for s in steps[:3]]
        assert ids == ["setup-check", None, "setup"], f
        assert steps[0]["run"].endswith('/install.sh" check'), f
        assert steps[1]["uses"].startswith("actions/cache@"), f
        assert steps[1]["with"]["key"] == "${{ steps.setup-check.outputs.key }}", f
        assert steps[1]["if"] == "steps.setup-check.outputs.ready != 'true'", f
        step = (steps[2].get("env") or {}).get("LEPTON_SETUP_STEP")
        if f.parent.name in ("build", "deploy", "rollback"):
            assert step == f.parent.name, f
