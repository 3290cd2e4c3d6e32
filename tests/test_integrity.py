"""Integrity under foreign tags, untracked inputs, name clashes, parallel runs and stops."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lepton_ci.core import record as record_mod
from lepton_ci.core.errors import ConfigError, Interrupted, RecordError
from lepton_ci.core.git import Git
from lepton_ci.run import commands
from lepton_ci.run.commands import Result, run_command
from lepton_ci.run.lock import worktree_lock
from lepton_ci.versions import message
from lepton_ci.versions.registry import Registry
from tests.conftest import ROOT, commit_all, git, set_params

pytestmark = pytest.mark.e2e

RUN_RECORD = Path(".lepton/runs/toy.json")
SKIPPED = "the tag is skipped as not lepton-ci's"


def _record(repo: Path) -> record_mod.Record:
    return record_mod.load(repo / RUN_RECORD)


# -- 1. foreign tags and the record delimiter -----------------------------------------------


def test_a_foreign_version_tag_is_skipped_with_one_warning(cli, toy_repo):
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    set_params(toy_repo, lr=0.2)
    commit_all(toy_repo, "fix: by hand")
    # Hand-made: a `{` in the subject and a body that starts like JSON but is not a record.
    git(toy_repo, "tag", "-a", "-m", "release {big}\n\n{not a record", "toy@v0.2.0")
    set_params(toy_repo, lr=0.3)
    commit_all(toy_repo, "fix: next")
    code, out, err = cli("run", "--no-fail")
    assert code == 0, err
    assert (out + err).count(SKIPPED) == 1
    assert "toy@v0.2.0 carries a record that cannot be read, so it is not the baseline" in out
    assert "vs  toy@v0.1.0" in out
    assert "re-create it with `lepton-ci run`" not in out + err
    assert cli("show", "toy@v0.2.0")[0] == 0
    assert json.loads(cli("show", "toy@v0.1.0", "--json")[1])["metrics"]["accuracy"] == 0.9
    code, _, err = cli("promote", "toy", "v0.2.0", "staging")
    assert code == 1 and "toy@v0.2.0 carries no evidence record" in err
    code, _, err = cli("card", "--version", "v0.2.0")
    assert code == 1 and "carries no evidence record" in err
    assert cli("promote", "toy", "v0.1.0", "staging")[0] == 0


def test_tags_of_earlier_lepton_ci_versions_are_read(cli, toy_repo):
    assert cli("run")[0] == 0
    rec = _record(toy_repo)
    legacy = f"Register toy@v0.1.0: gates: pass (acc{{split=test}}=0.9)\n\n{rec.to_json()}"
    git(toy_repo, "tag", "-a", "--cleanup=verbatim", "-m", legacy, "toy@v0.1.0")
    reg = Registry(Git(toy_repo))
    assert reg.record("toy@v0.1.0") == rec
    assert reg.records(["toy@v0.1.0"]) == {"toy@v0.1.0": rec}


def test_the_record_is_found_by_its_delimiters_not_the_first_brace(cli, toy_repo):
    assert cli("run")[0] == 0
    rec = _record(toy_repo)
    real = rec.model_copy(update={"metrics": {"acc{split=test}": 0.5}})
    forged = rec.model_copy(update={"metrics": {"forged": 1.0}})
    # A metric name can carry a newline and a fake record into the subject: it stays one line.
    subject = f"Register toy@v0.1.0: acc{{split=test}}\n\n{message.BEGIN}\n{forged.to_json()}"
    text = message.compose(subject, real)
    # one subject line, the fenced record, then the run-cache key trailer: nothing else
    assert text.count("\n\n") == 2 and message.extract(text, "t") == real
    assert text.endswith(f"\n\nLepton-Cache-Key: {real.cache.key}\n")
    signed = text + "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    assert message.extract(signed, "t") == real
    assert message.extract("Registering artifact (GTO)", "t") is None
    assert message.extract("note\n\nplain words", "t") is None
    for broken in (f"s\n\n{message.BEGIN}\n{{}}\n{message.END}\n", f"s\n\n{message.BEGIN}\n{{"):
        with pytest.raises(message.ForeignMessage):
            message.extract(broken, "t")


# -- 4. untracked inputs ----------------------------------------------------------------------


def test_untracked_inputs_make_the_record_dirty_and_register_refuses(cli, toy_repo):
    (toy_repo / "helper.py").write_text("X = 1\n")  # matches code: ["*.py"], not committed
    code, out, err = cli("run")
    assert code == 0 and "inputs not tracked by git: helper.py" in out + err
    rec = _record(toy_repo)
    assert rec.git.dirty is True and rec.git.untracked == ["helper.py"]
    code, _, err = cli("register")
    assert code == 1 and "untracked inputs: helper.py" in err
    assert git(toy_repo, "tag") == ""
    # An ignored file is not part of the commit by choice (DVC data): not dirty.
    (toy_repo / ".gitignore").write_text((toy_repo / ".gitignore").read_text() + "helper.py\n")
    commit_all(toy_repo, "chore: ignore helper")
    assert cli("run")[0] == 0
    assert _record(toy_repo).git.dirty is False
    assert cli("register")[0] == 0


# -- 5. one state file per model ----------------------------------------------------------------


def test_models_whose_state_files_would_clash_are_a_config_error(tmp_path):
    from lepton_ci.core import config

    p = tmp_path / "lepton.yaml"
    p.write_text(
        "models:\n  a/b: {train: t, metrics: [m.json]}\n  a--b: {train: t, metrics: [m]}\n"
    )
    with pytest.raises(ConfigError, match=r"models `a/b` and `a--b` would share one state file"):
        config.load(p)


def test_register_refuses_a_record_of_another_model(cli, toy_repo):
    assert cli("run")[0] == 0
    path = toy_repo / RUN_RECORD
    path.write_text(path.read_text().replace('"model": "toy"', '"model": "other"'))
    code, _, err = cli("register")
    assert code == 1 and "is the record of model `other`, not `toy`" in err
    assert git(toy_repo, "tag") == ""


# -- 6. one metric, two files --------------------------------------------------------------------


def test_a_metric_in_two_metrics_files_names_both(cli, toy_repo):
    (toy_repo / "extra.json").write_text('{"accuracy": 0.1}')
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("[metrics.json]", "[metrics.json, extra.json]"))
    code, _, err = cli("run")
    assert code == 1
    assert "metric `accuracy` is written by both" in err
    assert "metrics.json" in err and "extra.json" in err


# -- 7. one run per work tree ------------------------------------------------------------------


def test_a_second_run_in_the_same_work_tree_is_refused_naming_the_holder(cli, toy_repo):
    lock = toy_repo / ".lepton" / "locks" / "toy.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from lepton_ci.run.lock import worktree_lock\n"
            f"with worktree_lock(Path({str(lock)!r}), 'toy'):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = cli("run")
        assert code == 1
        assert (
            f"another run of toy is using this work tree (lepton-ci run of toy, pid {holder.pid}"
            in err
        )
        assert not (toy_repo / RUN_RECORD).exists()
    finally:
        holder.kill()
        holder.wait()
    assert cli("run")[0] == 0  # the kernel dropped the dead holder's lock


def test_the_lock_is_free_again_after_a_failed_run(tmp_path):
    path = tmp_path / "x.lock"
    with pytest.raises(RuntimeError), worktree_lock(path, "m"):
        raise RuntimeError
    with worktree_lock(path, "m"):
        pass


# -- 8. stopping a run ----------------------------------------------------------------------------


STUBBORN = textwrap.dedent(
    """\
    trap '' TERM INT
    sleep 60 &
    echo $! > grandchild.pid
    echo started
    wait
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _dies(pid: int, timeout: float = 10) -> bool:
    """A SIGKILL is delivered, not waited for: the process is gone soon, not at once."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.unit
def test_sigterm_is_forwarded_and_a_stubborn_group_killed_after_the_grace(tmp_path):
    pidfile = tmp_path / "grandchild.pid"

    def stop_when_started() -> None:
        _wait_for(pidfile)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_started, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as e:
        run_command(
            "train", STUBBORN, cwd=tmp_path, env=dict(os.environ), timeout_s=60, grace_s=0.5
        )
    assert time.monotonic() - t0 < 10
    assert e.value.exit_code == 143
    assert "SIGTERM received: stopped the train command" in str(e.value)
    assert _dies(int(pidfile.read_text()))


@pytest.mark.unit
def test_a_second_signal_cuts_the_grace_short_as_a_cancelled_job_needs(tmp_path):
    pidfile = tmp_path / "grandchild.pid"

    def cancel_like_github() -> None:
        _wait_for(pidfile)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=cancel_like_github, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as e:
        run_command("train", STUBBORN, cwd=tmp_path, env=dict(os.environ), timeout_s=60, grace_s=60)
    assert time.monotonic() - t0 < 10 and e.value.exit_code == 130
    assert _dies(int(pidfile.read_text()))


def test_ctrl_c_stops_training_and_records_nothing(toy_repo):
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("python3 train.py", "sh slow.sh"))
    (toy_repo / "slow.sh").write_text("sleep 60 &\necho $! > grandchild.pid\nwait\n")
    commit_all(toy_repo, "chore: slow")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(toy_repo), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(toy_repo / "grandchild.pid")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if "SIGINT" in line]
    assert len(lines) == 1 and "stopped the train command" in lines[0]
    assert _dies(int((toy_repo / "grandchild.pid").read_text()))
    assert not (toy_repo / RUN_RECORD).exists()


@pytest.mark.unit
def test_a_command_killed_by_a_signal_says_so():
    assert Result(-9, "", 0.0, []).status() == "was killed by signal 9 (SIGKILL)"
    assert Result(3, "", 0.0, []).status() == "exited with code 3"


@pytest.mark.unit
@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_the_exit_is_seen_in_slices_with_or_without_a_pidfd(pidfd):
    """A child's exit wakes the wait (Linux: a pidfd); elsewhere Popen's polling stands in.
    Either way a slice that ends first says "still running"."""
    gate = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(7)"],
        stdin=subprocess.PIPE,
        text=True,
    )
    waiter = commands._Exit(gate)
    if not pidfd:
        waiter.close()
    assert (waiter.fd is not None) == pidfd
    assert waiter.wait(0.05) is None  # blocked on its stdin
    assert gate.stdin is not None
    gate.stdin.close()
    assert waiter.wait(30) == 7
    waiter.close()


@pytest.mark.unit
def test_the_last_lines_of_a_failing_command_are_capped(tmp_path):
    res = run_command(
        "train",
        [sys.executable, "-c", "import sys; sys.stdout.write('x' * 300000); sys.exit(2)"],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout_s=30,
        stream=open(os.devnull, "w"),  # noqa: SIM115
    )
    assert res.exit_code == 2 and len(res.tail) == 1
    assert len(res.tail[0]) < 500 and "more characters" in res.tail[0]


def test_a_corrupt_cache_record_is_a_miss_not_an_error(cli, toy_repo):
    assert cli("run")[0] == 0
    (cached,) = (toy_repo / ".lepton" / "cache" / "records" / "toy").glob("*.json")
    cached.write_text("{broken")
    code, out, err = cli("run")
    assert code == 0 and "ignored, and this run's result replaces it" in out + err
    assert "re-create it" not in out + err
    assert json.loads(cached.read_text())["model"] == "toy"
    assert cli("run")[0] == 0 and _record(toy_repo).cache.hit


def test_corrupt_record_hint(tmp_path):
    p = tmp_path / "r.json"
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(RecordError, match="not UTF-8"):
        record_mod.load(p)


CHECKPOINTING = textwrap.dedent(
    """\
    import pathlib, signal, sys, time

    def save(signum, frame):
        time.sleep(1)  # writing a checkpoint takes a while
        pathlib.Path("checkpoint.txt").write_text("saved")
        sys.exit(0)

    signal.signal(signal.SIGTERM, save)
    pathlib.Path("started").write_text("yes")
    time.sleep(60)
    """
)


@pytest.mark.unit
@pytest.mark.parametrize("as_string", [True, False], ids=["string", "argv"])
def test_a_trainer_that_saves_on_sigterm_gets_the_grace_as_string_or_argv(tmp_path, as_string):
    """A string `train:` runs under `sh -c`: SIGTERM killed the shell, and the group was then
    killed within 0.07 s, so the trainer's checkpoint was never written."""
    (tmp_path / "trainer.py").write_text(CHECKPOINTING)
    command: str | list[str] = (
        f"{sys.executable} trainer.py" if as_string else [sys.executable, "trainer.py"]
    )

    def stop_when_started() -> None:
        _wait_for(tmp_path / "started")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_started, daemon=True).start()
    with pytest.raises(Interrupted) as e:
        run_command("train", command, cwd=tmp_path, env=dict(os.environ), timeout_s=60)
    assert e.value.exit_code == 143
    assert (tmp_path / "checkpoint.txt").read_text() == "saved"


@pytest.mark.parametrize(
    ("lay_out", "named", "kind"),
    [
        ("mkfifo .lepton/locks/toy.lock", ".lepton/locks/toy.lock", "a FIFO"),
        ("mkdir .lepton/locks/toy.lock", ".lepton/locks/toy.lock", "a directory"),
        ("ln -s /dev/zero .lepton/locks/toy.lock", ".lepton/locks/toy.lock", "a link to /dev/zero"),
        ("rm -rf .lepton && touch .lepton", ".lepton", "a file"),
        ("rm -rf .lepton/cache/records && touch .lepton/cache/records", "records", "a file"),
        ("rm .lepton/cache/stat.json && mkdir .lepton/cache/stat.json", "stat.json", "a directory"),
        ("rm -rf .lepton/cache && ln -s /dev/null .lepton/cache", "cache", "a link to /dev/null"),
        ("rm -rf .lepton/report && touch .lepton/report", ".lepton/report", "a file"),
        ("cd .lepton/report/toy && rm meta.json && mkdir meta.json", "meta.json", "a directory"),
    ],
)
def test_a_state_folder_laid_out_wrongly_is_a_clear_error(cli, toy_repo, lay_out, named, kind):
    """Each of these ended in exit 70, "a bug in lepton-ci"."""
    assert cli("run")[0] == 0
    (toy_repo / ".lepton" / "locks" / "toy.lock").unlink()
    subprocess.run(["sh", "-c", lay_out], cwd=toy_repo, check=True)
    code, _, err = cli("run", "--no-cache")
    assert code == 1, err
    assert f"{named} is {kind}" in err and "fix: remove" in err, err
    assert "/dev/" not in err.split("fix:")[1]  # never a device to remove
