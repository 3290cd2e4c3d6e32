"""Hostile input: alias bombs, duplicate keys, smuggled workflow commands, bad bytes, floods."""

import json
import shutil
from pathlib import Path

import pytest

from lepton_ci.core import config
from lepton_ci.core.errors import ConfigError, InputError
from lepton_ci.run.metrics import read_metrics, read_params
from tests.conftest import FIXTURES, Cli, commit_all, git, parse_outputs, set_params

pytestmark = pytest.mark.unit

# 9 levels of 9 aliases each: about 400 bytes that PyYAML expands to 387 million strings.
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
MODEL = "models:\n  mm: {train: t, metrics: [m.json]}\n"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


# -- 9. alias bombs ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["config", "params", "metrics"])
def test_alias_bombs_are_refused_before_they_expand(tmp_path, where):
    if where == "config":
        with pytest.raises(ConfigError, match="expand it by more than 100,000 values"):
            config.load(_write(tmp_path, "lepton.yaml", MODEL + BOMB))
    elif where == "params":
        with pytest.raises(InputError, match="aliases in the params file expand it"):
            read_params([_write(tmp_path, "params.yaml", BOMB)])
    else:
        with pytest.raises(InputError, match="aliases in the metrics file expand it"):
            read_metrics([_write(tmp_path, "metrics.yaml", BOMB)])


def test_the_bound_is_on_what_aliases_add_not_on_what_the_file_spells_out(tmp_path, monkeypatch):
    from lepton_ci.core import yamlfile

    monkeypatch.setattr(yamlfile, "MAX_NODES", 50)
    literal = "big: [" + ", ".join(["0"] * 200) + "]\n"
    assert len(read_params([_write(tmp_path, "p.yaml", literal)])["big"]) == 200
    aliased = "a: &a [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\nb: [" + ", ".join(["*a"] * 6) + "]\n"
    with pytest.raises(InputError, match="expand it by more than 50 values"):
        read_params([_write(tmp_path, "q.yaml", aliased)])


def test_many_aliases_and_recursive_ones_are_refused(tmp_path):
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
    with pytest.raises(InputError, match="more than 1,000 YAML aliases"):
        read_params([_write(tmp_path, "p.yaml", many)])
    with pytest.raises(InputError, match="includes itself"):
        read_params([_write(tmp_path, "q.yaml", "a: &a [1, *a]\n")])


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path):
    text = "models:\n  mm:\n    train: t\n    metrics: [m.json]\n    gates:\n"
    text += "      acc: &gate {direction: higher, min: 0.5}\n      f1: {<<: *gate, min: 0.6}\n"
    gates = config.load(_write(tmp_path, "lepton.yaml", text)).config.models["mm"].gates
    assert gates["acc"].min == 0.5 and gates["f1"].min == 0.6


# -- 10. duplicate keys ---------------------------------------------------------------------------


def test_a_second_models_key_is_an_error_naming_both_lines(tmp_path):
    text = MODEL + "stages: [prod]\nmodels:\n  other: {train: t, metrics: [m.json]}\n"
    with pytest.raises(ConfigError) as e:
        config.load(_write(tmp_path, "lepton.yaml", text))
    assert "lepton.yaml:4: key `models` appears twice" in str(e.value)
    assert "first at line 1" in str(e.value)


def test_duplicate_keys_in_params_and_metrics_files(tmp_path):
    with pytest.raises(InputError, match=r"p.yaml:2: key `lr` appears twice .*first at line 1"):
        read_params([_write(tmp_path, "p.yaml", "lr: 0.1\nlr: 0.2\n")])
    with pytest.raises(InputError, match="key `acc` appears twice"):
        read_metrics([_write(tmp_path, "m.json", '{"acc": 0.1, "acc": 0.9}')])
    with pytest.raises(InputError, match="written twice"):
        read_metrics([_write(tmp_path, "n.json", '{"a.b": 0.1, "a": {"b": 0.9}}')])


# -- 12. bytes and numbers that used to be internal errors -------------------------------------


def test_non_utf8_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at offset 9\)"):
        config.load(_write(tmp_path, "lepton.yaml", b"models:\n \xff"))
    with pytest.raises(InputError, match=r"not UTF-8 text .* the metrics file must be UTF-8"):
        read_metrics([_write(tmp_path, "m.json", b'{"acc": "\xe9"}')])


@pytest.mark.parametrize(
    "text", ['{"acc": 1' + "0" * 400 + "}", "acc: 1" + "0" * 400, "acc: 1" + "0" * 5000]
)
def test_integers_beyond_float_range_are_clear_errors(tmp_path, text):
    name = "m.json" if text.startswith("{") else "m.yaml"
    with pytest.raises(InputError) as e:
        read_metrics([_write(tmp_path, name, text)])
    assert "m." in str(e.value) and len(str(e.value)) < 400


# -- 13. floods -----------------------------------------------------------------------------------


def test_thousands_of_unknown_keys_print_twenty_errors_and_a_count(tmp_path):
    keys = "".join(f"    k{i}: 1\n" for i in range(30_000))
    text = f"models:\n  mm:\n    train: t\n    metrics: [m.json]\n{keys}"
    with pytest.raises(ConfigError) as e:
        config.load(_write(tmp_path, "lepton.yaml", text))
    lines = str(e.value).splitlines()
    assert len(lines) <= 22 and "... and 29980 more errors" in str(e.value)
    # 300,000 of them (4.6 MB) are refused by size before anything is parsed.
    with pytest.raises(ConfigError, match=r"more than the 1,048,576 a config file may have"):
        config.load(_write(tmp_path, "lepton.yaml", text * 10))


# -- 14. stage cycles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "cycle"),
    [
        ("{prod: {requires: prod}}", "prod -> prod"),
        ("{qa: {requires: dev}, dev: {requires: qa}}", "qa -> dev -> qa"),
        (
            "{xx: {}, qa: {requires: dev}, dev: {requires: ci}, ci: {requires: qa}}",
            "qa -> dev -> ci -> qa",
        ),
    ],
)
def test_stage_cycles_are_config_errors(tmp_path, stages, cycle):
    with pytest.raises(ConfigError, match=f"cycle \\({cycle}\\)"):
        config.load(_write(tmp_path, "lepton.yaml", f"{MODEL}stages: {stages}\n"))


# -- 11 and 15 through the command line -------------------------------------------------------


EVIL = "acc\n::add-mask::x\n::error::forged ```\n# heading \u202eevil"


@pytest.mark.e2e
def test_names_cannot_smuggle_workflow_commands_or_break_the_summary(cli, toy_repo, gh_files):
    set_params(toy_repo, metrics_override={"accuracy": 0.9, "loss": 0.1, EVIL: 1.0})
    commit_all(toy_repo, "feat: evil metric name")
    code, out, err = cli("run")
    assert code == 0, err
    for line in (out + err).splitlines():
        assert not line.lstrip().startswith(("::add-mask::", "::error::forged")), line
        assert "\u202e" not in line
    summary = gh_files["summary"].read_text()
    assert "\u202e" not in summary and "```" not in summary.replace("\\`\\`\\`", "")
    assert parse_outputs(gh_files["output"].read_text())["verdict"] == "pass"
    # The same name in a failing command's error: the fence of the summary holds.
    cfg = toy_repo / "lepton.yaml"
    bad_gate = 'gates:\n      "x```\\n::error::y": {direction: sideways}'
    cfg.write_text(cfg.read_text().replace("gates:", bad_gate))
    code, out, err = cli("run")
    assert code == 1
    assert not any(line.startswith("::error::y") for line in (out + err).splitlines())
    fences = [ln for ln in gh_files["summary"].read_text().splitlines() if ln.startswith("```")]
    assert len(fences) == 2 and fences[0] == fences[1] and len(fences[0]) > 3


@pytest.mark.e2e
def test_no_repository_is_not_called_a_repository_without_commits(tmp_path, capsys):
    repo = tmp_path / "plain"
    shutil.copytree(FIXTURES / "toy", repo)
    code, _, err = Cli(repo, capsys)("run")
    assert code == 1
    assert "is not inside a git repository" in err and "no commits yet" not in err


@pytest.mark.e2e
def test_register_version_below_the_newest_is_refused(cli, toy_repo):
    assert cli("run")[0] == 0 and cli("register", "--version", "1.0.0")[0] == 0
    set_params(toy_repo, lr=0.2)
    commit_all(toy_repo, "fix: x")
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--version", "0.9.0")
    assert code == 1 and "--version v0.9.0 is below the newest version of toy, v1.0.0" in err
    assert git(toy_repo, "tag") == "toy@v1.0.0"


@pytest.mark.e2e
def test_json_output_stays_valid_with_hostile_names(cli, toy_repo):
    set_params(toy_repo, metrics_override={"accuracy": 0.9, "loss": 0.1, EVIL: 1.0})
    commit_all(toy_repo, "feat: evil")
    code, out, _ = cli("run", "--format", "json")
    assert code == 0
    document = out[out.index("\n{\n") :]  # after the run's notices
    assert any(m["metric"] == EVIL for m in json.loads(document)["metrics"])


@pytest.mark.e2e
def test_a_tag_message_that_is_not_utf8_does_not_stop_anything(cli, toy_repo):
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    (toy_repo / "msg").write_bytes(b"caf\xe9 release by hand\n")
    git(toy_repo, "tag", "-a", "-F", "msg", "toy@v0.2.0")  # git keeps tag messages as bytes
    (toy_repo / "msg").unlink()
    code, out, err = cli("versions", "toy")
    assert code == 0 and "v0.2.0" in out, err
    set_params(toy_repo, lr=0.3)
    commit_all(toy_repo, "fix: next")
    code, out, err = cli("run")
    assert code == 0, err  # v0.2.0 has no record and no metrics file: v0.1.0 is the bar
    assert "toy@v0.2.0 has no record and no metrics at" in out and "vs  toy@v0.1.0" in out


def test_ctrl_c_outside_a_command_says_what_stopped(monkeypatch, capsys):
    import lepton_ci.cli as cli_mod

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "cmd_versions", interrupted)
    assert cli_mod.main(["versions"]) == 130
    assert "lepton-ci versions: stopped by SIGINT (Ctrl-C)" in capsys.readouterr().err
