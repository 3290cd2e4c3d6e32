"""`lepton-ci init` in repositories shaped like real ones: the seed's `train_model.py`, scripts
in `scripts/` or `src/`, an existing params file, dependencies to install in CI, outputs to
keep out of git, hostile metric names, and directories that are not a work tree."""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton_ci.core import config
from lepton_ci.core.config import ImageConfig
from lepton_ci.core.errors import InputError
from lepton_ci.init import deps, detect, gitignore, scaffold
from lepton_ci.init.scaffold import Answers, config_text, workflow_text
from tests.test_init import lepton

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]

# the seed's shape: train_model.py reads params.yaml, writes the model and its metrics, and
# counts its own runs in a file next to the repository
TRAIN_MODEL = """\
import json
open("../runs.log", "a").write("run\\n")
seed = int(open("params.yaml").read().split(":")[1])
open("model.pth", "w").write(str(seed))
json.dump({"accuracy": 0.5 + seed / 1000, "val_loss": 0.3}, open("metrics.json", "w"))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, files: dict[str, str], ignore: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if ignore:
        (path / ".gitignore").write_text(ignore)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "feat: model")
    return path


def runs(repo: Path) -> int:
    log = repo.parent / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# -- which script -------------------------------------------------------------------------

SCRIPTS = [
    ({"train_model.py": ""}, "python3 train_model.py", []),
    ({"train.py": "", "train_model.py": ""}, "python3 train.py", ["train_model.py"]),
    ({"train_cnn.py": "", "train_utils.py": "", "test_train.py": ""}, "python3 train_cnn.py", []),
    ({"scripts/train.py": "", "README.md": ""}, "python3 scripts/train.py", []),
    (
        {"src/train.py": "", "scripts/train_big.py": ""},
        "python3 scripts/train_big.py",
        ["src/train.py"],
    ),
    (
        {"notebooks/Training.ipynb": "{}", "notebooks/Training.py": ""},
        "python3 notebooks/Training.py",
        [],
    ),
    ({"train.sh": "", "train_gpu.py": ""}, "bash train.sh", ["train_gpu.py"]),
    ({"my train.py": "", "train it.py": ""}, "python3 'train it.py'", []),
]


@pytest.mark.parametrize(("files", "command", "others"), SCRIPTS, ids=lambda v: str(v)[:40])
def test_the_train_script_real_repositories_name(tmp_path, files, command, others):
    repo = make_repo(tmp_path / "repo", files)
    said: list[str] = []
    [a] = scaffold.propose(repo, log=said.append)
    assert a.train == command
    also = [line for line in said if "also found" in line]
    assert bool(also) == bool(others)
    for other in others:
        assert other in also[0]


def test_evaluate_scripts_are_found_likewise(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {"train_model.py": "", "scripts/eval_model.py": "", "evaluation_utils.py": ""},
    )
    [a] = scaffold.propose(repo, log=lambda _: None)
    assert a.evaluate == "python3 scripts/eval_model.py"


def test_a_monorepo_model_is_its_directory_not_its_scripts_folder(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {"models/churn/scripts/train.py": "", "models/fraud/train_model.py": ""},
    )
    models = scaffold.propose(repo, log=lambda _: None)
    assert [(a.path, a.train) for a in models] == [
        ("models/churn", "python3 scripts/train.py"),
        ("models/fraud", "python3 train_model.py"),
    ]


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"README.md": "x"}, "no train script found"),
        ({"notebooks/train.ipynb": "{}"}, "jupyter nbconvert --to script notebooks/train.ipynb"),
    ],
)
def test_no_train_script_is_an_error_that_names_the_key(tmp_path, files, said):
    repo = make_repo(tmp_path / "my-model", files)
    before = sorted(p.name for p in repo.iterdir())
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 1
    assert said in proc.stderr
    assert "`models.my-model.train`" in proc.stderr and "--train" in proc.stderr
    assert sorted(p.name for p in repo.iterdir()) == before  # nothing written


# -- params, train once, .gitignore ------------------------------------------------------


@pytest.mark.e2e
def test_the_seed_shape_trains_once_uses_its_params_and_leaves_git_clean(tmp_path):
    repo = make_repo(
        tmp_path / "seed",
        {"train_model.py": TRAIN_MODEL, "params.yaml": "seed: 1\n", "requirements.txt": "x\n"},
    )
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS" in proc.stdout
    assert runs(repo) == 1, proc.stdout  # init's training is the run's: once, not twice
    model = config.load(repo / "lepton.yaml").config.models["seed"]
    assert model.params == ["params.yaml"]
    assert model.outputs == ["model.pth"]
    ignored = (repo / ".gitignore").read_text().splitlines()
    assert {"/.lepton/", "/model.pth", "/metrics.json"} <= set(ignored)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "chore: lepton-ci")
    assert git(repo, "status", "--porcelain") == ""  # outputs and state are ignored
    proc = lepton(repo, "run")
    assert proc.returncode == 0 and runs(repo) == 1, proc.stdout  # a cache hit
    assert "run-cache hit" in proc.stdout + proc.stderr
    # a seed change is a change of input: it trains again (it was a stale hit before)
    (repo / "params.yaml").write_text("seed: 2\n")
    git(repo, "commit", "-qam", "feat: seed 2")
    proc = lepton(repo, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs(repo) == 2 and "run-cache miss" in proc.stdout + proc.stderr
    assert "seed" in proc.stdout  # the params diff names it


@pytest.mark.parametrize(
    ("name", "text", "found"),
    [
        ("params.yaml", "lr: 0.1\n", "params.yaml"),
        ("params.json", '{"lr": 0.1}', "params.json"),
        ("hparams.yml", "lr: 0.1\n", "hparams.yml"),
        ("config/params.yaml", "lr: 0.1\n", "config/params.yaml"),
        ("params.yaml", "- not a mapping\n", None),
    ],
)
def test_an_existing_params_file_becomes_params(tmp_path, name, text, found):
    repo = make_repo(tmp_path / "repo", {"train.py": "", name: text})
    [a] = scaffold.propose(repo, log=lambda _: None)
    assert a.params == found


def test_gitignore_is_appended_once_and_spares_what_git_already_ignores_or_tracks(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {"train.py": "", "weights.pt": "committed", "data/x.csv": "1"},
        ignore="*.pkl\n.lepton",  # no final newline; `.lepton` already covers `.lepton/`
    )
    wanted = [".lepton/", "model.pkl", "weights.pt", "out dir/", "metrics.json", "#odd!"]
    added = gitignore.update(repo, wanted)
    assert added == ["/out dir/", "/metrics.json", "/#odd!"]
    assert gitignore.update(repo, wanted) == []  # idempotent
    text = (repo / ".gitignore").read_text()
    assert text.startswith("*.pkl\n.lepton\n\n# lepton-ci")
    assert text.count("/metrics.json") == 1
    (repo / "out dir").mkdir()
    (repo / "out dir" / "a").write_text("x")
    (repo / "metrics.json").write_text("{}")
    (repo / "#odd!").write_text("x")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == " M .gitignore\n"


# -- the scaffold reads back ----------------------------------------------------------------


HOSTILE = ["😀score", "a: b", "#x", "- y", "true", "null", "1e3", "~", "x\n  evil: 1", "'q'"]


@pytest.mark.e2e
def test_hostile_metric_names_round_trip_through_init_yes(tmp_path):
    metrics = ", ".join(f'"{n}": {i}' for i, n in enumerate(HOSTILE)).replace("\n", "\\n")
    repo = make_repo(
        tmp_path / "repo",
        {"train.py": f"import json\njson.dump({{{metrics}}}, open('metrics.json', 'w'))\n"},
    )
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gates = config.load(repo / "lepton.yaml").config.models["repo"].gates
    assert list(gates) == HOSTILE


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True))
def test_any_metric_name_reads_back(tmp_path_factory, names):
    where = tmp_path_factory.mktemp("cfg")
    text = config_text(
        [Answers(model="m1", train="python3 train.py", metric_names=names, key_metric=names[0])],
        where,
    )
    (where / "lepton.yaml").write_text(text, encoding="utf-8")
    assert list(config.load(where / "lepton.yaml").config.models["m1"].gates) == names


def test_the_image_and_the_commented_deploy_read_back(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {"train.py": "", "serve.py": "", "requirements-serve.txt": "torch==2.13.0\n"},
    )
    git(repo, "remote", "add", "origin", "git@github.com:Acme/Vision.git")
    [a] = scaffold.propose(repo, log=lambda _: None)
    text = config_text([a], repo)
    (repo / "lepton.yaml").write_text(text)
    image = config.load(repo / "lepton.yaml").config.models["repo"].image
    assert image is not None
    assert (image.name, image.entrypoint, image.kind) == (
        "ghcr.io/acme/repo",
        ["python3", "serve.py"],
        "layers",
    )
    requirements = "requirements: requirements-serve.txt"
    if "requirements" in ImageConfig.model_fields:  # the dependency layer has landed
        assert getattr(image, "requirements") == "requirements-serve.txt"  # noqa: B009
    else:
        assert f"      # {requirements}" in text
    # uncommented, the deploy block is a valid deploy: section
    uncommented = re.sub(r"^    # ", "    ", text, flags=re.M)
    (repo / "lepton.yaml").write_text(uncommented)
    deploy = config.load(repo / "lepton.yaml").config.models["repo"].deploy
    assert deploy is not None and deploy.environments["staging"].host_port == 8080


# -- training dependencies in the workflows -----------------------------------------------

PYPROJECT = """\
[project]
name = "vision"
version = "0.1.0"
dependencies = ["torch==2.13.0"]
[project.optional-dependencies]
train = ["torchvision"]
"""
DEPS = {
    "requirements": ({"requirements.txt": "torch==2.13.0\n"}, "pip install -r requirements.txt"),
    "train requirements": (
        {"requirements.txt": "", "requirements-train.txt": ""},
        "pip install -r requirements-train.txt",
    ),
    "pyproject extra": ({"pyproject.toml": PYPROJECT}, "pip install -e '.[train]'"),
    "uv": ({"pyproject.toml": PYPROJECT, "uv.lock": ""}, "uv sync --frozen --project ."),
    "poetry": ({"pyproject.toml": PYPROJECT, "poetry.lock": ""}, "poetry install"),
    "monorepo": (
        {"models/a b/requirements.txt": "", "models/c/requirements.txt": ""},
        "pip install -r models/c/requirements.txt",
    ),
}
LINTERS = shutil.which("zizmor", path=str(Path(sys.executable).parent)) and shutil.which(
    "actionlint", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(not LINTERS, reason="zizmor and actionlint come with the test extra")
@pytest.mark.parametrize("shape", list(DEPS))
def test_workflows_install_the_training_dependencies_before_run_and_pass_the_linters(
    tmp_path, shape
):
    files, expected = DEPS[shape]
    train = (
        {"train.py": ""}
        if shape != "monorepo"
        else {"models/a b/train.py": "", "models/c/train.py": ""}
    )
    repo = make_repo(tmp_path / "repo", {**files, **train})
    proc = lepton(repo, "init", "--no-run")
    assert proc.returncode == 0, proc.stderr
    wf_dir = repo / ".github" / "workflows"
    for name in ("model-pr.yml", "model-main.yml"):
        wf = yaml.safe_load((wf_dir / name).read_text())
        steps = wf["jobs"]["run"]["steps"]
        names = [s.get("name", "") + s.get("uses", "") for s in steps]
        install = next(i for i, n in enumerate(names) if "training dependencies" in n)
        run = next(i for i, n in enumerate(names) if "actions/run@" in n)
        assert install < run
        script = steps[install]["run"]
        assert expected in script and "${{" not in script
        assert 'echo "$RUNNER_TEMP/train-venv/bin" >> "$GITHUB_PATH"' in script
    if shape == "monorepo":  # a path with a space is not written into a script
        assert "models/a b/requirements.txt: install it in the workflows yourself" in proc.stdout
    bin_dir = Path(sys.executable).parent
    files_ = sorted(str(p) for p in wf_dir.glob("*.yml"))
    for cmd in (
        [str(bin_dir / "zizmor"), "--offline", "--config", str(ROOT / ".github/zizmor.yml")],
        [
            str(bin_dir / "zizmor"),
            "--offline",
            "--persona",
            "pedantic",
            "--config",
            str(ROOT / ".github/zizmor.yml"),
        ],
        [str(bin_dir / "actionlint")],
    ):
        lint = subprocess.run([*cmd, *files_], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_shipped_workflows_mark_where_the_install_step_goes():
    for name in ("model-pr.yml", "model-main.yml"):
        text = (ROOT / "templates" / "workflows" / name).read_text()
        assert text.count(scaffold.DEPS_MARKER) == 1
        assert workflow_text(name, "m") == text.replace("model: digits", "model: m")


def _wheel(dest: Path, name: str) -> Path:
    """A pure-Python wheel made by hand, so the install step runs with no index."""
    dist = f"{name}-0.1"
    files = {
        f"{name}/__init__.py": b"OK = True\n",
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode()
        ),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
        f"{len(d)}"
        for p, d in files.items()
    ]
    files[f"{dist}.dist-info/RECORD"] = (
        "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    ).encode()
    path = dest / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return path


@pytest.mark.e2e
def test_the_install_step_puts_a_python_with_the_dependencies_first_on_path(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "leptondep")
    repo = make_repo(tmp_path / "repo", {"train.py": "", "requirements.txt": "leptondep==0.1\n"})
    [install] = deps.training(repo, [repo])
    text = deps.step_text([install], "")
    script = yaml.safe_load(text)[0]["run"]
    runner_temp, github_path = tmp_path / "runner", tmp_path / "github_path"
    runner_temp.mkdir()
    env = {
        **os.environ,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_PATH": str(github_path),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
    }
    subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, check=True, timeout=300)
    [bin_dir] = github_path.read_text().splitlines()
    python3 = Path(bin_dir) / "python3"
    out = subprocess.run(
        [str(python3), "-c", "import leptondep; print(leptondep.OK)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"
    assert not (repo / ".venv").exists() and git(repo, "status", "--porcelain") == ""


# -- not a work tree --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["bare", "git dir", "git subdir"])
def test_a_bare_repository_or_a_git_dir_is_refused(tmp_path, where):
    if where == "bare":
        target = tmp_path / "r.git"
        subprocess.run(["git", "init", "-q", "--bare", str(target)], check=True)
        (target / "train.py").write_text("open('ran', 'w')\n")  # even with a train script
    else:
        repo = make_repo(tmp_path / "repo", {"train.py": "open('ran', 'w')\n"})
        target = repo / ".git" if where == "git dir" else repo / ".git" / "refs"
    before = sorted(str(p) for p in target.rglob("*"))
    proc = lepton(target, "init", "--yes", "--train", "python3 train.py")
    assert proc.returncode == 1, proc.stdout
    assert "no work tree" in proc.stderr and "git clone" in proc.stderr
    assert sorted(str(p) for p in target.rglob("*")) == before


def test_detect_params_files_are_what_run_reads():
    assert all(name.endswith((".yaml", ".yml", ".json")) for name in detect.PARAMS_FILES)


# -- what the review found: stale cache keys, half-written files, names, odd file names ------

# a training driven by a shell script and a Hydra-style config: both are inputs of the model
FIT = """\
import json
open("../runs.log", "a").write("run\\n")
lr = float(open("conf/config.yaml").read().split(":")[1])
open("model.pkl", "w").write(str(lr))
json.dump({"accuracy": 0.5 + lr}, open("metrics.json", "w"))
"""


@pytest.mark.e2e
def test_the_train_script_and_the_config_it_reads_are_inputs_and_its_venv_is_named(tmp_path):
    repo = make_repo(
        tmp_path / "sh",
        {"train.sh": ".venv/bin/python fit.py\n", "fit.py": FIT, "conf/config.yaml": "lr: 0.1\n"},
        ignore=".venv/\n",
    )
    # a venv without pip is enough: fit.py needs the standard library only
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", repo / ".venv"], check=True)
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS" in proc.stdout and runs(repo) == 1
    assert "must be listed in lepton.yaml's `code:`, `data:` or `params:`" in proc.stdout
    cfg = config.load(repo / "lepton.yaml").config
    assert cfg.models["sh"].code == ["**/*.py", "train.sh", "conf"]
    assert cfg.environment.python == ".venv/bin/python"
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "chore: lepton-ci")
    assert lepton(repo, "run").returncode == 0 and runs(repo) == 1  # a cache hit
    for path, text in (
        ("conf/config.yaml", "lr: 0.2\n"),
        ("train.sh", "set -e\n.venv/bin/python fit.py\n"),
    ):
        (repo / path).write_text(text)
        git(repo, "commit", "-qam", f"feat: change {path}")
        before = runs(repo)
        proc = lepton(repo, "run")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert runs(repo) == before + 1, f"{path}: a stale hit\n{proc.stdout}{proc.stderr}"


def test_a_venv_that_is_only_there_is_a_commented_suggestion(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train.py": "", "configs/a/b.json": "{}"})
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(sys.executable)
    [a] = scaffold.propose(repo, log=lambda _: None)
    text = config_text([a], repo)
    assert "\n# environment:" in text and '\n#   python: ".venv/bin/python"' in text
    (repo / "lepton.yaml").write_text(text)
    cfg = config.load(repo / "lepton.yaml").config
    assert cfg.environment.python is None
    assert cfg.models["repo"].code == ["**/*.py", "configs"]
    # a script naming a venv that is not there (yet) is a guess too
    (repo / "train.sh").write_text("venv/bin/python3.12 train.py\n")
    shutil.rmtree(repo / ".venv")
    a.train = "bash train.sh"
    assert "\n#   python: venv/bin/python3.12" in config_text([a], repo)


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda r: (r / ".gitignore").mkdir(), ".gitignore is not a file"),
        (lambda r: (r / ".github").write_text("x"), ".github is not a directory"),
        (
            lambda r: (r / ".github").mkdir() or (r / ".github/workflows").write_text("x"),
            "workflows is not a directory",
        ),
    ],
)
def test_a_path_init_cannot_write_is_refused_before_anything_is_written(tmp_path, make, where):
    repo = make_repo(tmp_path / "repo", {"train.py": "open('ran', 'w').write('x')\n"})
    make(repo)
    before = sorted(p.name for p in repo.iterdir())
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert where in proc.stderr and "move" in proc.stderr
    assert sorted(p.name for p in repo.iterdir()) == before  # nothing ran, nothing written


def test_a_write_that_fails_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"train.py": ""}, ignore="mine\n")
    a = Answers(model="m1", train="python3 train.py", outputs=["model.pkl"])

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(
        gitignore, "update", lambda root, paths: (root / ".gitignore").write_text("half") and fail()
    )
    with pytest.raises(InputError, match="No space left on device; nothing was written"):
        scaffold.write(repo, [a], log=lambda _: None)
    assert not (repo / "lepton.yaml").exists() and not (repo / ".github").exists()
    assert (repo / ".gitignore").read_text() == "mine\n"
    monkeypatch.undo()
    written = scaffold.write(repo, [a], log=lambda _: None)  # the second try finds it clean
    assert repo / "lepton.yaml" in written


@pytest.mark.parametrize(
    ("dirs", "names"),
    [
        (["models/2d_unet", "models/3d_unet"], ["2d-unet", "3d-unet"]),
        (["models/a", "models/b"], ["a", "b"]),
        (["team/unet", "other/unet"], ["other-unet", "team-unet"]),
        (["models/Unet", "models/unet"], ["models-unet", "models-unet-2"]),
        (["models/__", "models/x"], ["model", "x"]),
    ],
)
def test_monorepo_models_get_distinct_names_lepton_yaml_takes(tmp_path, dirs, names):
    repo = make_repo(tmp_path / "mono", {f"{d}/train.py": "" for d in dirs})
    models = scaffold.propose(repo, log=lambda _: None)
    assert [a.model for a in models] == names
    proc = lepton(repo, "init", "--no-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(config.load(repo / "lepton.yaml").config.models) == names


def test_model_is_refused_with_a_hint_that_works_in_a_monorepo(tmp_path):
    repo = make_repo(tmp_path / "m", {"models/2d_unet/train.py": "", "models/3d_unet/train.py": ""})
    proc = lepton(repo, "init", "--no-run", "--model", "unet2d")
    assert proc.returncode == 1 and not (repo / "lepton.yaml").exists()
    assert "2d-unet (models/2d_unet), 3d-unet (models/3d_unet)" in proc.stderr
    assert "without --model" in proc.stderr
    proc = lepton(repo, "init", "--no-run")  # what the hint says
    assert proc.returncode == 0, proc.stderr
    # one model in a directory with a one-letter name: that name, not `model`
    single = make_repo(tmp_path / "r", {"train.py": ""})
    assert [a.model for a in scaffold.propose(single, log=lambda _: None)] == ["r"]


ODD_TRAIN = """\
import json
open("[ab].bin", "w").write("x")
open("sp.bin ", "w").write("x")
json.dump({"a\\nb": 1, "val/loss": 0.5}, open("metrics.json", "w"))
"""


@pytest.mark.e2e
def test_odd_file_and_metric_names_run_and_leave_git_clean(tmp_path):
    repo = make_repo(tmp_path / "odd", {"train.py": ODD_TRAIN})
    proc = lepton(repo, "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS" in proc.stdout
    model = config.load(repo / "lepton.yaml").config.models["odd"]
    assert model.outputs == ["[[]ab].bin", "sp.bin "]  # globs that match exactly those files
    assert model.gates["val/loss"].direction == "lower" and model.gates["val/loss"].key
    assert '"a\\nb"' in proc.stdout  # the table prints the name on its line, quoted
    assert not any(
        line.split() == ["b", "—", "1", "new", "info"] for line in proc.stdout.splitlines()
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "chore: lepton-ci")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_a_metric_name_with_a_newline_is_quoted_in_the_to_do(tmp_path):
    a = Answers(model="m1", train="python3 train.py", metric_names=["a\nb", "custom"])
    [line] = scaffold.todo(tmp_path, a)
    assert "\n" not in line and '"a\\nb", custom' in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("val/loss", "lower"),
        ("test/accuracy", "higher"),
        ("eval.f1", "higher"),
        ("a/b_ms", "lower"),
    ],
)
def test_slash_and_dot_separate_a_metric_name(name, expected):
    assert detect.direction(name) == expected
