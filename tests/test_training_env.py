"""The training environment: asked of the interpreter the commands run, in real virtualenvs
with wheels built here (nothing is downloaded), kept in the run-cache key and shown in the
record, the PR comment and the card."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from lepton_ci.core import record as record_mod
from lepton_ci.core.errors import InputError
from lepton_ci.report import comment as report
from lepton_ci.run import accelerator, changes, interpreter
from tests.conftest import commit_all

pytestmark = pytest.mark.e2e


def build_wheel(directory: Path, name: str, version: str) -> Path:
    """A pure-Python wheel as the packaging spec lays it out: module, METADATA, WHEEL, RECORD."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wheels")
    return {
        f"{n}=={v}": build_wheel(d, n, v)
        for n, v in [("scikit-learn", "1.9.1"), ("scikit-learn", "1.6.1"), ("numpy", "2.2.6")]
    }


def pip_install(venv: Path, *wheel_files: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-index",
            "--no-deps",
            *map(str, wheel_files),
        ],
        check=True,
        capture_output=True,
    )


def settle(venv: Path) -> None:
    """Date the virtualenv's files 10 s back: the memo keeps no answer about files changed
    in the last 2 s (a change in the same clock tick would go unseen), and these were made
    just now."""
    past = time.time() - 10
    for p in [venv, *venv.rglob("*")]:
        os.utime(p, (past, past), follow_symlinks=False)


def make_venv(where: Path, *wheel_files: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    if wheel_files:
        pip_install(where, *wheel_files)
    return where


def set_model(repo: Path, **values: object) -> None:
    cfg = yaml.safe_load((repo / "lepton.yaml").read_text())
    cfg["models"]["toy"].update(values)
    (repo / "lepton.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def set_environment(repo: Path, **values: object) -> None:
    cfg = yaml.safe_load((repo / "lepton.yaml").read_text())
    cfg.setdefault("environment", {}).update(values)
    (repo / "lepton.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def last_record(repo: Path) -> record_mod.Record:
    return record_mod.load(repo / ".lepton" / "runs" / "toy.json")


def train_count(repo: Path) -> int:
    return int((repo / "train_count.txt").read_text())


TRAIN = """\
from pathlib import Path
params = dict(line.split(": ", 1) for line in Path("params.yaml").read_text().splitlines())
Path("model.bin").write_text(repr(sorted(params.items())) * 10)
counter = Path("train_count.txt")
counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
"""
EVALUATE = """\
import json
from pathlib import Path
params = dict(line.split(": ", 1) for line in Path("params.yaml").read_text().splitlines())
accuracy = float(params["accuracy"])
metrics = {"accuracy": accuracy, "loss": round(1 - accuracy, 6), "speed": {"p95_ms": 12.5}}
Path("metrics.json").write_text(json.dumps(metrics))
"""


def without_yaml(repo: Path) -> None:
    """The toy's commands, with the standard library only: the training envs here have only
    the wheels built above."""
    (repo / "train.py").write_text(TRAIN)
    (repo / "evaluate.py").write_text(EVALUATE)


@pytest.fixture
def trained_in_venv(toy_repo: Path, wheels: dict[str, Path]) -> Path:
    """The toy model trained by a virtualenv of its own, `.venv` in the repository, with
    scikit-learn 1.9.1 and numpy; not the interpreter running lepton-ci (which has pydantic)."""
    make_venv(toy_repo / ".venv", wheels["scikit-learn==1.9.1"], wheels["numpy==2.2.6"])
    without_yaml(toy_repo)
    set_model(
        toy_repo, train=".venv/bin/python train.py", evaluate=[".venv/bin/python", "evaluate.py"]
    )
    (toy_repo / ".gitignore").write_text((toy_repo / ".gitignore").read_text() + ".venv/\n")
    commit_all(toy_repo, "build: train in .venv")
    return toy_repo


def test_the_record_names_the_training_interpreter_and_its_packages(trained_in_venv, cli):
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(trained_in_venv).environment
    assert env.interpreter == str(trained_in_venv / ".venv" / "bin" / "python")
    assert env.interpreter_source == "named by the train command"
    assert env.packages == ["numpy==2.2.6", "scikit-learn==1.9.1"]  # PEP 503 names, sorted
    assert "pydantic" in sys.modules  # lepton-ci's own environment has it; the training's not
    assert env.packages_source == "interpreter"
    assert env.python.count(".") == 2 and env.platform.startswith(sys.platform)
    assert env.os and env.os.startswith(os.uname().sysname)
    assert env.accelerator is None  # no nvidia-smi on this machine
    assert env.notable() == [("scikit-learn", "1.9.1"), ("numpy", "2.2.6")]


def test_another_package_version_in_the_training_env_is_a_miss(trained_in_venv, cli, wheels):
    assert cli("run")[0] == 0
    assert cli("run")[0] == 0 and train_count(trained_in_venv) == 1  # a hit
    pip_install(trained_in_venv / ".venv", wheels["scikit-learn==1.6.1"])
    code, out, _ = cli("run")
    assert code == 0 and "run-cache miss" in out
    assert train_count(trained_in_venv) == 2
    assert "scikit-learn==1.6.1" in last_record(trained_in_venv).environment.packages


def test_lepton_cis_own_environment_is_no_part_of_the_key(trained_in_venv, cli, tmp_path):
    assert cli("run")[0] == 0
    extra = tmp_path / "extra-site"
    (extra / "torch-2.13.0.dist-info").mkdir(parents=True)  # beside lepton-ci, not the training
    sys.path.append(str(extra))
    try:
        code, out, _ = cli("run")
    finally:
        sys.path.remove(str(extra))
    assert code == 0 and "run-cache hit" in out and train_count(trained_in_venv) == 1
    assert "torch" not in last_record(trained_in_venv).environment.versions()


@pytest.mark.parametrize(
    ("train", "evaluate"),
    [
        ("python train.py", "python evaluate.py"),  # a shell string, `python` on its PATH
        (["python3", "train.py"], ["python3", "evaluate.py"]),  # argv
        ("OMP_NUM_THREADS=1 python{minor} train.py", "python3 evaluate.py"),
        ("sh -c 'exit 0'", ["python", "evaluate.py"]),  # train is no Python: evaluate's counts
    ],
)
def test_string_and_argv_commands_resolve_on_the_path_they_get(
    toy_repo, cli, wheels, tmp_path, train, evaluate
):
    venv = make_venv(tmp_path / "train-env", wheels["scikit-learn==1.9.1"])
    without_yaml(toy_repo)
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    no_python = isinstance(train, str) and train.startswith("sh ")
    if isinstance(train, str):
        train = train.format(minor=minor)
    if no_python:
        (toy_repo / "model.bin").write_bytes(b"m")  # what train.py would have written
    set_model(
        toy_repo,
        train=train,
        evaluate=evaluate,
        env={"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
    )
    commit_all(toy_repo, "build: the training env on PATH")
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(toy_repo).environment
    assert Path(env.interpreter).parent == venv / "bin"
    assert env.versions() == {"scikit-learn": "1.9.1"}
    step = "evaluate" if no_python else "train"
    assert env.interpreter_source == f"named by the {step} command"


def test_environment_python_wins_and_a_command_without_python_falls_back(
    trained_in_venv, cli, wheels, tmp_path
):
    other = make_venv(tmp_path / "other", wheels["scikit-learn==1.6.1"])
    (trained_in_venv / "train.sh").write_text(".venv/bin/python train.py\n")
    set_model(
        trained_in_venv,
        train=["sh", "train.sh"],
        evaluate=".venv/bin/python evaluate.py",
        env={"PATH": f"{other / 'bin'}:{os.environ['PATH']}"},
    )
    set_environment(trained_in_venv, python=".venv/bin/python")
    commit_all(trained_in_venv, "build: name the interpreter")
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(trained_in_venv).environment
    assert env.interpreter == str(trained_in_venv / ".venv" / "bin" / "python")
    assert env.interpreter_source == "named by environment.python"
    assert env.versions()["scikit-learn"] == "1.9.1"
    # No setting, and no command that starts with python: python3 on PATH, and said so.
    set_environment(trained_in_venv, python=None)
    set_model(trained_in_venv, evaluate=["sh", "-c", ".venv/bin/python evaluate.py"])
    commit_all(trained_in_venv, "build: no setting")
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(trained_in_venv).environment
    assert env.interpreter == str(other / "bin" / "python3")
    assert env.interpreter_source == "python3 on PATH: no command starts with python"
    assert env.versions()["scikit-learn"] == "1.6.1"


def test_an_interpreter_that_cannot_answer_is_a_clear_error(trained_in_venv, cli):
    broken = trained_in_venv / "broken-python"
    broken.write_text("#!/bin/sh\necho 'no such module: encodings' >&2\nexit 3\n")
    broken.chmod(0o755)
    set_environment(trained_in_venv, python="./broken-python")
    commit_all(trained_in_venv, "build: a broken interpreter")
    code, _, err = cli("run")
    assert code == 1
    assert f"the training interpreter {broken} (named by environment.python)" in err
    assert "exited with code 3: no such module: encodings" in err
    assert "environment.python" in err
    assert not (trained_in_venv / "model.bin").exists()  # nothing ran
    set_environment(trained_in_venv, python="no-such-python3.99")
    code, _, err = cli("run")
    assert code == 1 and "`environment.python` is `no-such-python3.99`, which is not on PATH" in err
    set_environment(trained_in_venv, python="-c")
    code, _, err = cli("run")
    assert code == 1 and "environment.python" in err


def test_an_unchanged_env_is_a_stat_not_a_spawn(trained_in_venv, cli, wheels, monkeypatch):
    venv = trained_in_venv / ".venv"
    settle(venv)
    assert cli("run")[0] == 0
    memo = json.loads((trained_in_venv / ".lepton" / "cache" / "interpreters.json").read_text())
    assert len(memo) == 1
    # Were the interpreter asked again, this probe would fail the run.
    monkeypatch.setattr(interpreter, "PROBE", "raise SystemExit(7)")
    code, out, err = cli("run")
    assert code == 0 and "run-cache hit" in out, out + err
    pip_install(venv, wheels["scikit-learn==1.6.1"])  # the site-packages directory changes
    code, _, err = cli("run")
    assert code == 1 and "exited with code 7" in err


def test_a_registered_version_then_a_package_change_in_the_comment_and_card(
    trained_in_venv, cli, wheels
):
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    pip_install(trained_in_venv / ".venv", wheels["scikit-learn==1.6.1"])
    rm = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(trained_in_venv / ".venv" / "bin" / "python"),
            "-q",
            "uninstall",
            "-y",
            "numpy",
        ],
        capture_output=True,
        check=False,
    )
    assert rm.returncode == 0, rm.stderr
    (trained_in_venv / "NOTES.md").write_text("trained with another scikit-learn\n")
    commit_all(trained_in_venv, "build: scikit-learn 1.6.1, no numpy")
    assert cli("run")[0] == 0
    rec = last_record(trained_in_venv)
    diff = changes.between(rec)
    assert diff is not None
    assert diff.packages.rows == [("numpy", "2.2.6", None), ("scikit-learn", "1.9.1", "1.6.1")]
    assert "environment: packages changed: numpy 2.2.6 (removed), scikit-learn 1.9.1 -> 1.6.1" in (
        diff.summary()
    )
    meta = report.BundleMeta(model="toy", workflow="ci", head_sha=rec.git.sha)
    body = report.render(rec, meta).body
    assert "scikit-learn 1.9.1 -> 1.6.1" in body
    assert "| scikit-learn | 1.9.1 | 1.6.1 |" in body and "| numpy | 2.2.6 | — |" in body
    assert "**Trained with:** Python " in body and "· scikit-learn 1.6.1" in body
    # The card names the interpreter and the frameworks, and is still Hub metadata.
    code, out, err = cli("card", "--print")
    assert code == 0, err
    assert "| scikit-learn | 1.6.1 |" in out
    assert (
        "- environment: packages changed: numpy 2.2.6 (removed), scikit-learn 1.9.1 -> 1.6.1" in out
    )
    assert "&gt;" not in out  # Markdown, read as text by `card --print`: no HTML entities
    assert "<details><summary>All 1 installed packages</summary>" in out
    assert f"| Python | {rec.environment.python} (`{trained_in_venv}/.venv/bin/python`, " in out
    assert ModelCard(out).data.to_dict()["model-index"][0]["name"] == "toy"


def test_the_accelerator_from_a_fake_nvidia_smi(trained_in_venv, cli, tmp_path):
    bin_dir = tmp_path / "gpu-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=driver_version,name" ]; then\n'
        '  echo "550.54.15, NVIDIA A100-SXM4-40GB"\n'
        '  echo "550.54.15, NVIDIA A100-SXM4-40GB"\n'
        "  exit 0\nfi\n"
        "cat <<'EOF'\n"
        "Mon Dec  7 17:55:00 2026\n"
        "+-----------------------------------------------------------------------------------+\n"
        "| NVIDIA-SMI 550.54.15       Driver Version: 550.54.15      CUDA Version: 12.4     |\n"
        "|-------------------------------+----------------------+----------------------------+\n"
        "EOF\n"
    )
    smi.chmod(0o755)
    set_model(trained_in_venv, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    commit_all(trained_in_venv, "build: a GPU")
    assert cli("run")[0] == 0
    gpu = last_record(trained_in_venv).environment.accelerator
    assert gpu is not None
    assert (gpu.driver, gpu.cuda) == ("550.54.15", "12.4")
    assert gpu.devices == ["NVIDIA A100-SXM4-40GB"] * 2
    assert (
        gpu.text()
        == "NVIDIA driver 550.54.15, CUDA 12.4 (NVIDIA A100-SXM4-40GB, NVIDIA A100-SXM4-40GB)"
    )
    code, out, _ = cli("card", "--print")
    assert code == 0
    assert "| Accelerator | NVIDIA driver 550.54.15, CUDA 12.4" in out
    # nvidia-smi that fails (tools without a driver, as in many containers): no accelerator
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert accelerator.ask(str(smi), {"PATH": os.environ["PATH"]}) is None


def test_old_records_load_and_digest_as_they_were_written(trained_in_venv, cli):
    """A record written before the training environment was recorded (its environment had
    four fields) loads, serialises to the same bytes, and is shown as listing no packages."""
    assert cli("run")[0] == 0
    path = trained_in_venv / ".lepton" / "runs" / "toy.json"
    data = json.loads(path.read_text())
    data["environment"] = {
        "packages_digest": "blake3:" + "ab" * 32,
        "packages_source": "installed",
        "platform": "linux-x86_64",
        "python": "3.11.7",
    }
    old = json.dumps(data, indent=2, sort_keys=True) + "\n"
    rec = record_mod.parse(old, "old.json")
    assert rec.to_json() == old
    assert rec.environment.packages == [] and rec.environment.notable() == []
    new_env = last_record(trained_in_venv).environment
    path.write_text(old)
    code, out, err = cli("card", "--print")
    assert code == 0, err
    assert "Packages not listed (recorded by an older lepton-ci)" in out
    # A new run against an old baseline: no package list to compare, and it says so.
    lines, packages = changes.environment(new_env, rec.environment)
    assert "packages changed (interpreter; one record lists none)" in lines
    assert not packages.any and not any(line.startswith("accelerator") for line in lines)


@pytest.mark.parametrize(
    ("command", "word"),
    [
        ("python3 train.py", "python3"),
        ("  OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=0 python3.12 -m train", "python3.12"),
        ("env PYTHONHASHSEED=0 python train.py", "python"),
        ("env -i PATH=/usr/bin python3 train.py", "python3"),
        ("exec .venv/bin/python train.py", ".venv/bin/python"),
        (["/opt/py/bin/python3", "train.py"], "/opt/py/bin/python3"),
        ("python 'unbalanced", None),  # the shell will say what is wrong when it runs
        ("A=1", None),  # only an assignment: no program at all
    ],
)
def test_the_program_a_command_runs(command, word):
    assert interpreter._first_word(command) == word


def test_the_memo_forgets_changed_files_and_keeps_a_bounded_number(tmp_path):
    watched = tmp_path / "site-packages"
    watched.mkdir()
    past = time.time_ns() - 10_000_000_000
    os.utime(watched, ns=(past, past))
    memo = interpreter.Memo(tmp_path / "memo.json")
    memo.put("a", [str(watched)], {"v": 1}, time.time_ns())
    memo.save()
    again = interpreter.Memo(tmp_path / "memo.json")
    assert again.get("a") == {"v": 1}
    (watched / "numpy-2.2.6.dist-info").mkdir()  # an install changes the directory
    assert again.get("a") is None
    # a file changed within 2 s of the answer is not trusted to show the next change
    memo.put("b", [str(watched)], {"v": 2}, time.time_ns())
    assert memo.get("b") is None
    for i in range(interpreter.MEMO_ENTRIES + 5):
        memo.put(f"k{i}", [], {"v": i}, past + i)
    memo.save()
    kept = json.loads((tmp_path / "memo.json").read_text())
    assert len(kept) == interpreter.MEMO_ENTRIES and "k0" not in kept and "k36" in kept
    (tmp_path / "memo.json").write_text("{not json")  # damaged: answers are asked again
    assert interpreter.Memo(tmp_path / "memo.json").get("k36") is None


def test_cached_only_reuses_the_run_of_its_inputs_in_the_env_that_trained_it(
    trained_in_venv, cli, wheels
):
    """The release job restores the read-only job's run-cache and never trains: it need not
    have the training dependencies, and the record keeps the environment that trained."""
    assert cli("run")[0] == 0
    pip_install(trained_in_venv / ".venv", wheels["scikit-learn==1.6.1"])  # not the training's
    code, out, err = cli("run", "--cached-only")
    assert code == 0, out + err
    assert "run-cache hit" in out and "this job's own environment is not compared" in out
    rec = last_record(trained_in_venv)
    assert rec.cache.hit and train_count(trained_in_venv) == 1
    assert rec.environment.versions()["scikit-learn"] == "1.9.1"  # where it trained
    # No training interpreter here at all: still the stored run, and said why.
    set_environment(trained_in_venv, python="./gone/bin/python")
    code, out, err = cli("run", "--cached-only")
    assert code == 0, out + err
    assert "`environment.python` is `./gone/bin/python`" in out
    assert last_record(trained_in_venv).environment.interpreter == rec.environment.interpreter
    # Other inputs: a miss, and --cached-only refuses to train.
    (trained_in_venv / "params.yaml").write_text("accuracy: 0.95\nlr: 0.1\n")
    code, _, err = cli("run", "--cached-only")
    assert code == 1 and "--cached-only forbids training" in err
    # Without --cached-only, this job's environment is the training's: another env misses.
    set_environment(trained_in_venv, python=None)
    (trained_in_venv / "params.yaml").write_text("accuracy: 0.9\nlr: 0.1\n")
    code, out, _ = cli("run")
    assert code == 0 and "run-cache miss" in out and train_count(trained_in_venv) == 2


def _alive(pid: int) -> bool:
    """Runs, and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wrapper_python(tmp_path: Path) -> tuple[interpreter.Found, Path]:
    """A `python3` in a wrapper's place that starts a long child and waits for it."""
    pidfile = tmp_path / "child.pid"
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\nsleep 1000 &\necho $! > "{pidfile}"\nwait\n')
    wrapper.chmod(0o755)
    return interpreter.Found(str(wrapper), "named by the train command"), pidfile


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.unit
def test_a_probe_that_times_out_leaves_nothing_running(tmp_path, monkeypatch):
    found, pidfile = _wrapper_python(tmp_path)
    monkeypatch.setattr(interpreter, "PROBE_TIMEOUT_S", 1.0)
    with pytest.raises(InputError, match=r"no answer within 1 s"):
        interpreter._probe(found, cwd=tmp_path, env=dict(os.environ))
    pid = int(pidfile.read_text())
    try:
        assert _gone(pid), "the wrapper's child outlived the probe"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.unit
def test_a_probe_interrupted_by_ctrl_c_leaves_nothing_running(tmp_path):
    found, pidfile = _wrapper_python(tmp_path)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interpreter._probe(found, cwd=tmp_path, env=dict(os.environ))
    finally:
        timer.cancel()
    pid = int(pidfile.read_text())
    try:
        assert _gone(pid), "the wrapper's child outlived the probe"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("version", "3.11\n::warning::v", "version '3.11\\n::warning::v'"),
        ("version", "3.11 beta", "is not a Python version"),
        ("version", "3.11\x1b[31m", "is not a Python version"),
        ("version", "eleven", "is not a Python version"),
        ("platform", "linux\n::error::x", "platform"),
        ("packages", ["x==1\n::error::pwned"], "package 'x==1\\n::error::pwned'"),
        ("packages", ["x==1 2"], "is not `name==version`"),
        ("packages", ["-x==1"], "is not `name==version`"),
        ("packages", ["numpy"], "is not `name==version`"),
    ],
)
def test_an_answer_with_anything_but_versions_and_names_is_refused(tmp_path, field, value, needle):
    answer = {
        "version": "3.12.1",
        "platform": "linux-x86_64",
        "prefix": "/usr",
        "path": [],
        "user_site": None,
        "packages": ["numpy==2.2.6", "scikit-learn==1.9.1rc1+local"],
    }
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps({**answer, field: value})}\nEOF\n")
    fake.chmod(0o755)
    found = interpreter.Found(str(fake), "named by the train command")
    with pytest.raises(InputError) as e:
        interpreter._probe(found, cwd=tmp_path, env=dict(os.environ))
    assert f"the training interpreter {fake} (named by the train command)" in e.value.message
    assert needle in e.value.message
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    assert interpreter._probe(found, cwd=tmp_path, env=dict(os.environ)) == answer


@pytest.mark.parametrize("var", ["$PATH", "${PATH}"])
def test_a_path_assignment_in_front_of_python_names_the_interpreter(
    toy_repo, cli, wheels, tmp_path, monkeypatch, var
):
    """`PATH=/tmp/tenv/bin:$PATH python3 train.py` runs tenv's python3, not the one on the
    PATH lepton-ci got; so a package change in tenv is a miss, not a stale hit."""
    tenv = make_venv(tmp_path / "tenv", wheels["scikit-learn==1.9.1"])
    without_yaml(toy_repo)
    set_model(toy_repo, train=f"PATH={tenv / 'bin'}:{var} python3 train.py")
    commit_all(toy_repo, "build: train in tenv")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(toy_repo).environment
    assert env.interpreter == str(tenv / "bin" / "python3")
    assert env.interpreter_source == "named by the train command"
    assert env.versions() == {"scikit-learn": "1.9.1"}
    pip_install(tenv, wheels["scikit-learn==1.6.1"])
    code, out, err = cli("run")
    assert code == 0 and "run-cache miss" in out, out + err
    assert train_count(toy_repo) == 2
    assert last_record(toy_repo).environment.versions() == {"scikit-learn": "1.6.1"}


def test_a_command_that_cannot_be_followed_is_said_and_not_guessed(toy_repo, cli):
    without_yaml(toy_repo)
    set_model(toy_repo, train="cd . && python3 train.py", evaluate="python3 evaluate.py")
    commit_all(toy_repo, "build: cd first")
    code, out, err = cli("run")
    assert code == 0, out + err
    env = last_record(toy_repo).environment
    assert env.interpreter_source == "python3 on PATH: a command cannot be followed"
    said = " ".join((out + err).split())
    assert "the train command `cd . && python3 train.py` cannot be followed: it changes" in said
    assert "name the training interpreter with `environment.python`" in said


@pytest.mark.unit
@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("PYTHONPATH=src python3 train.py", "it assigns PYTHONPATH"),
        ("env PYTHONHOME=/opt/py python3 train.py", "it assigns PYTHONHOME"),
        ("source .venv/bin/activate && python train.py", "it sources a script"),
        (". .venv/bin/activate; python train.py", "it sources a script"),
        ("conda run -n train python train.py", "it runs through `conda run`"),
        ("uv run python train.py", "it runs through `uv run`"),
        (["poetry", "run", "python", "train.py"], "it runs through `poetry run`"),
        ("PATH=$HOME/bin:$PATH python3 train.py", "expands more than $PATH"),
        ("PATH=`pwd`/bin python3 train.py", "expands more than $PATH"),
    ],
)
def test_what_cannot_be_followed_falls_back_with_a_warning(tmp_path, command, why):
    found = interpreter.resolve(
        {"train": command}, configured=None, root=tmp_path, cwd=tmp_path, env=dict(os.environ)
    )
    assert found.source == "python3 on PATH: a command cannot be followed"
    assert found.guessed is not None and why in found.guessed
    assert "`environment.python`" in found.guessed


@pytest.mark.unit
def test_an_argv_path_assignment_is_taken_as_it_is(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("#!/bin/sh\n")
    (bin_dir / "python3").chmod(0o755)
    found = interpreter.resolve(
        {"train": ["env", f"PATH={bin_dir}", "python3", "train.py"]},
        configured=None,
        root=tmp_path,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert found == interpreter.Found(
        str(bin_dir / "python3"), "named by the train command", path_env=str(bin_dir)
    )


def test_show_prints_the_training_environment(trained_in_venv, cli):
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    env = last_record(trained_in_venv).environment
    code, out, err = cli("show", "toy@v0.1.0")
    assert code == 0, err
    assert f"environment: Python {env.python} ({env.platform}, {env.os})" in out
    assert f"  interpreter: {trained_in_venv}/.venv/bin/python (named by the train command)" in out
    assert "  frameworks: scikit-learn 1.9.1, numpy 2.2.6 (2 packages in all)" in out
