import io
from pathlib import Path

import pytest

from lepton_ci.core.errors import LeptonError
from lepton_ci.core.gha import Runtime, escape_data
from tests.conftest import parse_outputs

pytestmark = pytest.mark.unit


def test_annotation_cannot_forge_a_second_command():
    s = io.StringIO()
    Runtime({"GITHUB_ACTIONS": "true"}, s).error("bad\n::add-mask::x 100%", title="t:1,2")
    line = s.getvalue()
    assert line.count("\n") == 1
    assert line == "::error title=t%3A1%2C2::bad%0A::add-mask::x 100%25\n"
    assert escape_data("a\r\nb") == "a%0Ab"  # one line break, as the log shows it


def test_outputs_single_and_multiline_with_random_delimiter(tmp_path):
    out = tmp_path / "out"
    rt = Runtime({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out)}, io.StringIO())
    rt.set_output("verdict", "pass")
    rt.set_output("body", "line1\nEOF\nline3")
    rt.set_output("body2", "x\ny")
    text = out.read_text()
    assert parse_outputs(text) == {"verdict": "pass", "body": "line1\nEOF\nline3", "body2": "x\ny"}
    delims = [ln.split("<<")[1] for ln in text.splitlines() if "<<" in ln]
    assert len(set(delims)) == 2 and all(len(d) > 20 for d in delims)


def test_required_outputs_refuse_to_write(tmp_path):
    out = tmp_path / "out"
    rt = Runtime({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out)}, io.StringIO())
    with pytest.raises(RuntimeError, match="required outputs missing: digest"):
        rt.set_outputs({"version": "1", "digest": ""}, required=("version", "digest"))
    assert not out.exists() or out.read_text() == ""


def test_outside_actions_prints_readably():
    s = io.StringIO()
    rt = Runtime({}, s)
    rt.error("boom", file="lepton.yaml")
    with rt.group("train"):
        pass
    rt.mask("secret")
    assert s.getvalue() == "error: lepton.yaml: boom\n── train\n"


def test_mask_each_line():
    s = io.StringIO()
    Runtime({"GITHUB_ACTIONS": "true"}, s).mask("a\nb")
    assert s.getvalue() == "::add-mask::a\n::add-mask::b\n"


def test_no_github_output_in_actions_is_a_notice_and_no_outputs(capsys):
    rt = Runtime({"GITHUB_ACTIONS": "true"}, io.StringIO())
    rt.set_outputs({"verdict": "pass", "record": "r.json"})  # once a RuntimeError: exit 70
    rt.set_output("card", "c.md")
    err = capsys.readouterr().err
    assert err == "::notice::GITHUB_OUTPUT is not set: this step's outputs are not written\n"


@pytest.mark.parametrize("where", ["dir", "missing/out", "full"])
def test_an_unwritable_github_output_is_an_error_naming_it(tmp_path, where):
    path = tmp_path / where
    if where == "dir":
        path.mkdir()
    elif where == "full":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        path.symlink_to("/dev/full")
    rt = Runtime({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(path)}, io.StringIO())
    with pytest.raises(LeptonError) as e:
        rt.set_outputs({"verdict": "pass"})
    assert f"GITHUB_OUTPUT {path}" in str(e.value)
    assert "work is done and stands" in str(e.value) and e.value.exit_code == 1


def test_an_unwritable_step_summary_is_a_warning(tmp_path, capsys):
    Runtime({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path)}).summary("# x")
    assert f"::warning::cannot write the step summary to {tmp_path}" in capsys.readouterr().err
