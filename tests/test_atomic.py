"""A path a user names for output (`card --out`) is written, or written through, never replaced
by something else; lepton-ci's own state files keep their own rules."""

import os
import socket
import stat
from pathlib import Path

import pytest

from lepton_ci.core import atomic
from lepton_ci.core.errors import InputError

pytestmark = pytest.mark.unit


def refused(path: Path, **kw) -> str:
    with pytest.raises(InputError) as e:
        atomic.write_output(path, "card\n", option="--out", **kw)
    text = str(e.value)
    assert "rm -rf" not in text  # the state-file hint never reaches a user's path
    return text


def test_a_file_is_written_and_replaced(tmp_path):
    out = tmp_path / "card.md"
    assert atomic.write_output(out, "one\n", option="--out") is False
    assert atomic.write_output(out, "two\n", option="--out") is False
    assert out.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]  # no temporary file left


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "card.md"
    target.write_text("old\n")
    link = tmp_path / "card.md"
    link.symlink_to(Path("real") / "card.md")
    atomic.write_output(link, "new\n", option="--out")
    assert link.is_symlink() and os.readlink(link) == "real/card.md"
    assert target.read_text() == "new\n"
    dangling = tmp_path / "later.md"
    dangling.symlink_to(tmp_path / "real" / "later.md")
    atomic.write_output(dangling, "made\n", option="--out")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.md").read_text() == "made\n"


def test_a_character_device_is_written_through_never_replaced(tmp_path):
    null = tmp_path / "null"
    null.symlink_to("/dev/null")
    assert atomic.write_output(null, "card\n", option="--out") is True
    assert null.is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_device_that_refuses_the_write_is_a_clear_error(tmp_path):
    full = tmp_path / "full"
    full.symlink_to("/dev/full")
    assert "No space left on device" in refused(full)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_fifo_is_written_through_to_its_reader(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, as `>(cat)` has one
    try:
        assert atomic.write_output(fifo, "card\n", option="--out") is True
        assert os.read(reader, 100) == b"card\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "a FIFO nobody reads" in refused(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_directory_is_refused_and_left_alone(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep").write_text("x")
    text = refused(home)
    assert f"--out {home} is a directory, not a file" in text
    assert f"--out {home / 'card.md'}" in text  # the fix
    assert (home / "keep").read_text() == "x"
    monkeypatch.chdir(home)
    assert "--out . is a directory" in refused(Path("."))  # once a ValueError, exit 70
    link = tmp_path / "to-home"
    link.symlink_to(home)
    assert "a directory (through a link)" in refused(link)


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert "is a socket, not a file" in refused(path)
        assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_a_missing_folder_is_an_error_naming_it_and_nothing_is_made(tmp_path):
    out = tmp_path / "no" / "such" / "card.md"
    text = refused(out)
    assert f"the folder {tmp_path / 'no' / 'such'} does not exist" in text
    assert "mkdir -p" in text
    assert not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("x")
    assert f"{tmp_path / 'file'} is a file, not a folder" in refused(tmp_path / "file" / "c.md")


def test_lepton_yaml_paths_get_their_folders(tmp_path):
    out = tmp_path / "model_cards" / "toy" / "v1.0.0.md"
    atomic.write_output(out, "card\n", option="card.path", make_parents=True)
    assert out.read_text() == "card\n"
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in refused(tmp_path / "file" / "a" / "c.md", make_parents=True)
