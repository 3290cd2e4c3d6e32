import json
import subprocess
import sys

import pytest

from lepton_ci import __version__
from lepton_ci import cli as cli_mod
from tests.conftest import commit_all, set_params

COMMANDS = ["run", "diff", "register", "promote", "versions", "show", "history", "schema"]


@pytest.mark.unit
def test_help_lists_every_command_with_a_purpose(capsys):
    with pytest.raises(SystemExit):
        cli_mod.main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, name


@pytest.mark.unit
def test_version_does_not_import_heavy_modules():
    code = (
        "import sys\nfrom lepton_ci.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('pydantic', 'yaml', 'docker', 'kubernetes', 'jinja2', 'requests',"
        " 'blake3') if m in sys.modules]\nprint('HEAVY=' + ','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"lepton-ci {__version__}\n" in out.stdout
    assert "HEAVY=\n" in out.stdout, out.stdout


@pytest.mark.unit
def test_importing_the_models_builds_no_validator():
    """Config and Record build their validators when they first validate: built at import
    (a default instance, or defer_build dropped) they cost 70-90 ms of every command's start."""
    code = (
        "from lepton_ci.core import config, record\n"
        "print([c.__name__ for c in (config.Config, config.ModelConfig, config.DeployConfig,"
        " record.Record) if c.__pydantic_complete__])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.e2e
def test_diff_formats(cli, toy_repo):
    cli("run")
    cli("register")
    set_params(toy_repo, accuracy=0.88, lr=0.5)
    commit_all(toy_repo, "fix: x")
    cli("run")
    code, out, _ = cli("diff", "--json")
    data = json.loads(out)
    assert data["baseline"] == "toy@v0.1.0" and data["verdict"] == "pass"
    acc = next(m for m in data["metrics"] if m["metric"] == "accuracy")
    assert acc["delta"] == pytest.approx(-0.02) and acc["status"] == "regressed"
    assert data["params"] == [
        {"name": "accuracy", "baseline": 0.9, "candidate": 0.88, "status": "changed"},
        {"name": "lr", "baseline": 0.1, "candidate": 0.5, "status": "changed"},
    ]
    code, out, _ = cli("diff", "--format", "markdown")
    assert "| accuracy | 0.9 | 0.88 | ▼ -0.02 (-2.22%) worse | ✅ pass |" in out
    code, out, _ = cli("diff")
    assert "toy v0.1.1  vs  toy@v0.1.0   verdict: PASS" in out
    code, out, _ = cli("diff", "--baseline", "none")
    assert code == 0 and "no baseline" in out


@pytest.mark.e2e
def test_hostile_metric_and_param_names_are_escaped_in_markdown(cli, toy_repo):
    evil = "acc|<img src=x onerror=alert(1)>\n@admin #1 `x`"
    set_params(toy_repo, metrics_override={evil: 0.5, "accuracy": 0.9, "loss": 0.1})
    commit_all(toy_repo, "feat: x")
    cli("run")
    _code, out, _ = cli("diff", "--format", "markdown")
    row = next(ln for ln in out.splitlines() if "onerror" in ln)
    assert row.count(" | ") == 4  # the pipe in the name did not add a column
    assert "<img" not in row and "&lt;img" in row
    assert "@\u200badmin" in row and "#\u200b1" in row and "\n" not in row


@pytest.mark.e2e
def test_unexpected_error_says_how_to_report(cli, monkeypatch):
    def boom(args):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli_mod, "cmd_versions", boom)
    code, _, err = cli("versions")
    assert code == 70
    assert "unexpected error: ZeroDivisionError: oops" in err
    assert "please report it" in err and "Traceback" not in err


@pytest.mark.e2e
def test_debug_shows_traceback_for_unexpected_errors(cli, monkeypatch, capsys):
    monkeypatch.setattr(cli_mod, "cmd_versions", lambda a: 1 / 0)
    code = cli_mod.main(["--debug", "-C", str(cli.repo), "versions"])
    assert code == 70
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.e2e
def test_error_in_actions_becomes_annotation_and_summary(cli, toy_repo, gh_files):
    (toy_repo / "lepton.yaml").write_text("models: [1]\n")
    code, _, err = cli("run")
    assert code == 1
    assert err.startswith(f"::error file={toy_repo / 'lepton.yaml'},line=1,title=lepton-ci run::")
    assert "%0A" in err or "models" in err
    assert "lepton-ci run failed" in gh_files["summary"].read_text()


@pytest.mark.e2e
def test_closed_pipe_exits_quietly(toy_repo):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(toy_repo), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line, as `| head -1` does
    proc.wait(60)
    assert "run-cache miss" in first
    err = proc.stderr.read()
    assert "unexpected error" not in err
    assert proc.returncode == 141


@pytest.mark.e2e
def test_relative_and_absolute_dash_c_reach_the_same_repository(cli, toy_repo, monkeypatch, capsys):
    cli("run")
    cli("register")
    monkeypatch.chdir(toy_repo.parent)
    for directory in (toy_repo.name, str(toy_repo)):
        for args in (["versions", "--json"], ["show", "toy", "--json"], ["history", "toy"]):
            code = cli_mod.main(["-C", directory, *args])
            out, err = capsys.readouterr()
            assert code == 0, (directory, args, err)
            assert "v0.1.0" in out, (directory, args, out)


@pytest.mark.unit
def test_missing_dash_c_directory_is_named_not_blamed_on_git(tmp_path, capsys):
    code = cli_mod.main(["-C", str(tmp_path / "nope"), "versions"])
    err = capsys.readouterr().err
    assert code == 1
    assert "nope" in err and "git is not installed" not in err


@pytest.mark.unit
def test_git_in_a_vanished_directory_says_so(tmp_path):
    from lepton_ci.core.errors import GitError
    from lepton_ci.core.git import Git

    with pytest.raises(GitError, match="no such directory"):
        Git(tmp_path / "gone").run(["status"])


def test_a_missing_optional_extra_names_its_install_command():
    from lepton_ci.core.errors import MissingExtra

    err = MissingExtra.of(ModuleNotFoundError("No module named 'docker'", name="docker.errors"))
    assert err is not None and err.hint == f"pip install 'lepton-ci[image]=={__version__}'"
    assert MissingExtra.of(ModuleNotFoundError("x", name="yaml")) is None  # a real bug: exit 70


@pytest.mark.e2e
def test_registry_listings_do_not_import_pydantic(cli, toy_repo):
    """`versions` and `history MODEL` answer from tags: validating lepton.yaml (pydantic,
    0.1-0.15 s to import) is left to commands that need it."""
    cli("run")
    cli("register")
    code = (
        "import sys\nfrom lepton_ci.cli import main\n"
        "for args in (['versions', 'toy'], ['history', 'toy'], ['history']):\n"
        "    assert main(args) == 0\n"
        "print('PYDANTIC=' + str('pydantic' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=toy_repo, capture_output=True, text=True, check=True
    )
    assert "toy@v0.1.0" in out.stdout and "PYDANTIC=False" in out.stdout, out.stdout
    # `show` parses a record (pydantic), but builds no config models for it
    code = (
        "import sys\nfrom lepton_ci.cli import main\nassert main(['show', 'toy']) == 0\n"
        "print('CONFIG=' + str('lepton_ci.core.config' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=toy_repo, capture_output=True, text=True, check=True
    )
    assert "CONFIG=False" in out.stdout, out.stdout
