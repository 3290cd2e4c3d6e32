"""Version registry in git tags: register, promote, read, refuse cleanly."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lepton_ci.core.errors import RegistryError
from lepton_ci.core.git import Git
from lepton_ci.core.semver import Version
from lepton_ci.versions import model_view
from lepton_ci.versions.grammar import Action
from lepton_ci.versions.registry import Registry
from tests.conftest import commit_all, git, set_params

pytestmark = pytest.mark.e2e


def registered(cli, repo, message="fix: change", **params):
    if params:
        set_params(repo, **params)
        commit_all(repo, message)
    assert cli("run", "--no-fail")[0] == 0
    code, out, err = cli("register", "--allow-failed")
    assert code == 0, err
    return out


def test_a_failed_run_is_not_registered_unless_asked_and_then_logged(cli, toy_repo):
    set_params(toy_repo, accuracy=0.4)
    commit_all(toy_repo, "fix: worse")
    assert cli("run", "--no-fail")[0] == 0
    code, _, err = cli("register")
    assert code == 1 and "failed its gates (accuracy); a failed run is not registered" in err
    assert "--allow-failed" in err
    assert git(toy_repo, "tag") == ""
    code, out, err = cli("register", "--allow-failed")
    assert code == 0 and "(fail)" in out
    assert "registering toy although its gates failed (accuracy)" in out + err
    assert git(toy_repo, "tag") == "toy@v0.1.0"


def test_register_creates_annotated_tag_with_record(cli, toy_repo):
    out = registered(cli, toy_repo)
    assert "registered toy@v0.1.0" in out
    assert git(toy_repo, "cat-file", "-t", "toy@v0.1.0") == "tag"
    msg = git(toy_repo, "tag", "-l", "--format=%(contents)", "toy@v0.1.0")
    subject, _, body = msg.partition("\n\n")
    assert subject == "Register toy@v0.1.0: gates: pass (accuracy=0.9)"
    fenced, _, trailer = body.rpartition("\n\n")
    begin, *lines, end = fenced.strip("\n").split("\n")
    assert (begin, end) == ("-----BEGIN LEPTON-CI RECORD-----", "-----END LEPTON-CI RECORD-----")
    rec = json.loads("\n".join(lines))
    assert rec["candidate_version"] == "v0.1.0" and rec["metrics"]["accuracy"] == 0.9
    # The run-cache key as a git trailer, readable without parsing the record.
    assert trailer.strip() == f"Lepton-Cache-Key: {rec['cache']['key']}"
    key = git(toy_repo, "tag", "-l", "--format=%(trailers:key=Lepton-Cache-Key,valueonly)")
    assert key.strip() == rec["cache"]["key"]
    assert Registry(Git(toy_repo)).record("toy@v0.1.0").metrics["accuracy"] == 0.9


def test_bumps_from_conventional_commits_and_flags(cli, toy_repo):
    registered(cli, toy_repo)
    registered(cli, toy_repo, "fix: tweak", lr=0.2)
    registered(cli, toy_repo, "feat: new feature", lr=0.3)
    registered(cli, toy_repo, "feat!: breaking", lr=0.4)
    set_params(toy_repo, lr=0.5)
    commit_all(toy_repo, "chore: x")
    cli("run")
    assert cli("register", "--bump", "minor")[0] == 0
    set_params(toy_repo, lr=0.6)
    commit_all(toy_repo, "chore: y")
    cli("run")
    assert cli("register", "--version", "7.0.0-rc.1")[0] == 0
    _code, out, _ = cli("versions", "toy", "--json")
    assert [r["version"] for r in json.loads(out)] == [
        "v7.0.0-rc.1",
        "v1.1.0",
        "v1.0.0",
        "v0.2.0",
        "v0.1.1",
        "v0.1.0",
    ]


def test_refusals_leave_no_tag(cli, toy_repo):
    registered(cli, toy_repo)
    tags_before = git(toy_repo, "tag")
    code, _, err = cli("register")
    assert code == 1 and "HEAD is already registered as toy@v0.1.0" in err
    set_params(toy_repo, lr=0.2)
    commit_all(toy_repo, "fix: x")
    cli("run")
    code, _, err = cli("register", "--version", "0.1.0")
    assert code == 1 and "toy@v0.1.0 already exists" in err
    code, _, err = cli("register", "--version", "1.2")
    assert code == 1 and "not a semantic version" in err and "MAJOR.MINOR.PATCH" in err
    (toy_repo / "params.yaml").write_text((toy_repo / "params.yaml").read_text() + "# edit\n")
    code, _, err = cli("register")
    assert code == 1 and "uncommitted changes" in err
    git(toy_repo, "checkout", "params.yaml")
    (toy_repo / "x.txt").write_text("x")
    commit_all(toy_repo, "docs: x")
    code, _, err = cli("register")
    assert code == 1 and "the last run of toy was for" in err and "run `lepton-ci run" in err
    assert git(toy_repo, "tag") == tags_before


def test_register_without_any_run_says_what_to_do(cli, toy_repo):
    code, _, err = cli("register")
    assert code == 1 and "no evidence record" in err and "lepton-ci run" in err


def test_concurrent_register_one_wins_cleanly(cli, toy_repo):
    cli("run")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lepton_ci", "-C", str(toy_repo), "register"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(30), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "toy@v0.1.0 already exists" in loser[2] or "already registered" in loser[2]
    assert git(toy_repo, "tag") == "toy@v0.1.0"
    assert git(toy_repo, "cat-file", "-t", "toy@v0.1.0") == "tag"


def test_concurrent_register_across_clones_push_refused_removes_local_tag(
    cli, toy_repo, tmp_path, capsys, monkeypatch
):
    from tests.conftest import Cli

    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(toy_repo), str(remote))
    git(toy_repo, "remote", "add", "origin", str(remote))
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    other_cli = Cli(other, capsys)
    # Two CI jobs: each run's record names its own run. (Byte-identical evidence would make the
    # same tag object, and pushing it twice is no conflict.)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    monkeypatch.setenv("GITHUB_RUN_ID", "101")
    assert cli("run")[0] == 0  # both clones run the same commit before either registers
    monkeypatch.setenv("GITHUB_RUN_ID", "102")
    assert other_cli("run")[0] == 0
    assert other_cli("register", "--push")[0] == 0
    code, _, err = cli("register", "--push")
    assert code == 1
    assert "push of toy@v0.1.0 to origin was refused; the local tag was removed again" in err
    assert git(toy_repo, "tag") == ""
    assert git(remote, "tag") == "toy@v0.1.0"


def test_promote_flow_with_policy(cli, toy_repo):
    registered(cli, toy_repo)
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1 and "must be in stage `staging` before `prod`" in err
    code, _, err = cli("promote", "toy", "v0.1.0", "qa")
    assert code == 1 and "stage `qa` is not declared" in err and "declared: staging, prod" in err
    code, out, _ = cli("promote", "toy", "v0.1.0", "staging", "--json")
    assert code == 0 and json.loads(out)["tag"] == "toy#staging#1"
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1 and "already the current `staging` version" in err
    assert cli("promote", "toy", "0.1.0", "prod")[0] == 0
    assert git(toy_repo, "tag", "-l", "toy#*").split() == ["toy#prod#2", "toy#staging#1"]
    code, out, _ = cli("versions", "toy", "--json")
    assert json.loads(out)[0]["stages"] == ["prod", "staging"]
    code, _, err = cli("promote", "toy", "v9.9.9", "staging")
    assert code == 1 and "toy@v9.9.9 is not registered" in err


def test_promoting_a_version_that_failed_its_gates_is_refused(cli, toy_repo):
    registered(cli, toy_repo)
    registered(cli, toy_repo, "fix: worse", accuracy=0.5)
    code, out, _ = cli("versions", "toy", "--json")
    assert [(r["version"], r["verdict"]) for r in json.loads(out)] == [
        ("v0.1.1", "fail"),
        ("v0.1.0", "pass"),
    ]
    code, _, err = cli("promote", "toy", "v0.1.1", "staging")
    assert code == 1 and "failed its gates (accuracy, loss)" in err
    assert git(toy_repo, "tag", "-l", "toy#*") == ""


def test_reads_gto_cancellations_and_deprecation(cli, toy_repo):
    registered(cli, toy_repo)
    registered(cli, toy_repo, "fix: b", lr=0.3)
    cli("promote", "toy", "v0.1.1", "staging")
    # GTO writes these forms; lepton-ci must read them. Events are ordered by tag time, and
    # lepton-ci dates a new tag after the model's last event (several in one second can be a
    # second or two ahead of the clock): these hand-made tags come after it, as GTO's would.
    last = Registry(Git(toy_repo)).read("toy").last_time("toy")
    after = {"GIT_COMMITTER_DATE": f"{last + 1} +0000"}
    git(toy_repo, "tag", "-a", "-m", "deregister", "toy@v0.1.1!#2", "toy@v0.1.1", env=after)
    git(toy_repo, "tag", "-a", "-m", "unassign", "toy#staging!#3", "toy@v0.1.1", env=after)
    state = Registry(Git(toy_repo)).read()
    assert [str(v.version) for v in state.versions("toy")] == ["v0.1.0"]
    assert [str(v.version) for v in state.versions("toy", include_deregistered=True)] == [
        "v0.1.1",
        "v0.1.0",
    ]
    assert state.stages("toy") == {}
    assert state.next_counter("toy") == 4
    after = {"GIT_COMMITTER_DATE": f"{state.last_time('toy') + 1} +0000"}
    git(toy_repo, "tag", "-a", "-m", "deprecate", "toy@deprecated#4", "HEAD", env=after)
    state = Registry(Git(toy_repo)).read("toy")
    assert state.deprecated("toy")
    actions = [e.action for e in state.history("toy")]
    assert actions.count(Action.DEREGISTER) == 1 and actions.count(Action.UNASSIGN) == 1
    code, out, _ = cli("history", "toy")
    assert "deregister" in out and "unassign" in out and "Test User" in out
    code, _, err = cli("promote", "toy", "v0.1.1", "staging")
    assert code == 1 and "was deregistered" in err


def test_foreign_tags_and_lightweight_tags_are_ignored(cli, toy_repo):
    git(toy_repo, "tag", "v1.0.0")
    git(toy_repo, "tag", "release-candidate")
    git(toy_repo, "tag", "-a", "-m", "hand-made", "toy@v0.5.0")
    git(toy_repo, "tag", "toy@v3.0.0")  # lightweight: GTO skips it, so do we
    state = Registry(Git(toy_repo)).read()
    assert [str(v.version) for v in state.versions("toy")] == ["v0.5.0"]
    assert state.versions("toy")[0].who == "Test User"


def test_show_and_history_json(cli, toy_repo):
    registered(cli, toy_repo)
    cli("promote", "toy", "v0.1.0", "staging")
    code, out, _ = cli("show", "toy@v0.1.0", "--json")
    assert code == 0 and json.loads(out)["metrics"]["accuracy"] == 0.9
    code, out, _ = cli("show", "toy")
    assert "toy@v0.1.0" in out and "stages: staging" in out and "artifact: model.bin" in out
    code, out, _ = cli("history", "toy", "--json")
    events = json.loads(out)
    assert [(e["action"], e["stage"]) for e in events] == [
        ("register", None),
        ("assign", "staging"),
    ]
    assert all(e["who"] == "Test User" for e in events)


def test_registry_reads_all_tags_with_one_git_call(toy_repo, monkeypatch):
    g = Git(toy_repo)
    calls = []
    real = g.run
    monkeypatch.setattr(g, "run", lambda args, **kw: (calls.append(args), real(args, **kw))[1])
    for i in range(30):
        git(toy_repo, "tag", "-a", "-m", "x", f"toy@v0.0.{i}")
    state = Registry(g).read()
    assert len(state.versions("toy")) == 30
    reads = [c for c in calls if c[0] == "for-each-ref"]
    assert len(reads) == 2  # names and objects, then what the tag objects say (none known)


def _reads(repo, monkeypatch):
    """A fresh Git (as a new command has) whose for-each-ref calls are recorded."""
    g = Git(repo)
    calls: list[list[str]] = []
    real = g.run
    monkeypatch.setattr(g, "run", lambda args, **kw: (calls.append(args), real(args, **kw))[1])
    return g, calls


def test_tag_index_asks_git_only_about_tag_objects_it_has_not_seen(toy_repo, monkeypatch):
    for i in range(30):
        git(toy_repo, "tag", "-a", "-m", f"Register toy@v0.0.{i}: gates: pass", f"toy@v0.0.{i}")
    Registry(Git(toy_repo)).read()  # a first command builds the index
    g, calls = _reads(toy_repo, monkeypatch)
    assert len(Registry(g).read().versions("toy")) == 30
    assert [c[1] for c in calls if c[0] == "for-each-ref"] == [
        "--format=%(objectname) %(refname:strip=2)"  # the listing only: no tag object opened
    ]
    # a new tag, and a tag deleted and made again under the same name (a new object)
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.1.0: gates: pass", "toy@v0.1.0")
    git(toy_repo, "tag", "-d", "toy@v0.0.3")
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.3: gates: fail", "toy@v0.0.3")
    g, calls = _reads(toy_repo, monkeypatch)
    state = Registry(g).read()
    detail = [c for c in calls if c[0] == "for-each-ref"][1]
    assert sorted(detail[2:]) == ["refs/tags/toy@v0.0.3", "refs/tags/toy@v0.1.0"]
    assert state.find("toy", "v0.0.3").verdict == "fail"
    assert state.latest("toy").version == Version.parse("v0.1.0")


def test_tag_index_that_is_damaged_or_lies_about_its_shape_is_rebuilt(toy_repo):
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    Registry(Git(toy_repo)).read()
    index = toy_repo / ".git" / "lepton-ci" / "tags.json"
    assert index.is_file()
    data = json.loads(index.read_text())
    for damage in ("{not json", '{"version": 2, "tags": []}', '{"tags": {"x": 1}}'):
        index.write_text(damage)
        assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "pass"
    # entries that do not make sense (another shape, an unknown action, too many fields):
    # the index is dropped and the tags are read again, not trusted
    (obj, (name, (annotated, fields))) = next(iter(data["tags"].items()))
    for entry in (
        "only a string",
        [name, [annotated, ["toy", "no-such-action", *fields[2:]]]],
        [name, [annotated, [*fields, "one too many"]]],
        [name, [annotated, 42]],
        [name],  # cut short: no entry after the name
        [],
    ):
        index.write_text(json.dumps({**data, "tags": {obj: entry}}))
        assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "pass"
    # what this lepton-ci wrote is trusted (the index is a cache in .git); what another
    # release wrote is not: its entries were derived by other code
    lie = [name, [annotated, [*fields[:5], "fail", *fields[6:]]]]
    index.write_text(json.dumps({**data, "tags": {obj: lie}}))
    assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "fail"
    index.write_text(json.dumps({**data, "version": "3/lepton-ci 0.0.1", "tags": {obj: lie}}))
    assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "pass"
    # an index that cannot be written (here its directory is a file) does not stop a read
    index.unlink()
    index.parent.rmdir()
    index.parent.write_text("in the way")
    assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "pass"


def test_tag_index_entries_of_the_wrong_types_are_rebuilt_not_trusted(toy_repo):
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    Registry(Git(toy_repo)).read()
    index = toy_repo / ".git" / "lepton-ci" / "tags.json"
    data = json.loads(index.read_text())
    (obj, (name, (annotated, fields))) = next(iter(data["tags"].items()))
    # the right shape, a value of the wrong type: a version, verdict or model that is a number,
    # a time that is a string or a boolean (which isinstance would take for an int)
    for at, value in ((6, 1), (5, 42), (0, 7), (3, "noon"), (3, True), (10, ["x"])):
        lie = [*fields[:at], value, *fields[at + 1 :]]
        index.write_text(json.dumps({**data, "tags": {obj: [name, [annotated, lie]]}}))
        state = Registry(Git(toy_repo)).read("toy")
        assert [(str(v.version), v.verdict) for v in state.versions("toy")] == [("v0.0.1", "pass")]
    # JSON nested deeper than Python's parser recurses
    index.write_text('{"version": 2, "tags": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert Registry(Git(toy_repo)).read().find("toy", "v0.0.1").verdict == "pass"


@pytest.mark.parametrize("odd", ["\u2028", "\x1c", "\x85", "\r", "\x0b"])
def test_a_subject_with_a_line_break_python_knows_does_not_hide_the_tag(toy_repo, odd):
    message = toy_repo.parent / "message"
    message.write_bytes(f"Register toy@v0.0.1:{odd}gates: pass\n\nbody\n".encode())
    git(toy_repo, "tag", "-a", "--cleanup=verbatim", "-F", str(message), "toy@v0.0.1")
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.2: gates: fail", "toy@v0.0.2")
    for _ in range(2):  # no index yet, then from the index
        state = Registry(Git(toy_repo)).read()
        assert [(str(v.version), v.verdict) for v in state.versions("toy")] == [
            ("v0.0.2", "fail"),
            ("v0.0.1", "pass"),
        ]


def test_a_tag_of_a_tag_peels_to_the_same_commit_in_every_read(toy_repo):
    """The inner tag may be no model's (or deleted): a read of one model does not list it."""
    first = git(toy_repo, "rev-parse", "HEAD")
    git(toy_repo, "tag", "-a", "-m", "a release", "release-1")
    git(toy_repo, "commit", "-q", "--allow-empty", "-m", "fix: later")
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1", "toy@v0.0.1", "release-1")
    git(toy_repo, "tag", "-a", "-m", "promote", "toy#prod#1", "release-1")
    for model in (None, "toy", None):
        state = Registry(Git(toy_repo)).read(model)
        assert state.find("toy", "v0.0.1").sha == first
        assert state.assignments("toy")["prod"].sha == first
    git(toy_repo, "tag", "-d", "release-1")
    for model in (None, "toy"):
        state = Registry(Git(toy_repo)).read(model)
        assert state.find("toy", "v0.0.1").sha == first


def test_a_stage_whose_name_holds_a_slash_is_read_for_one_model_as_for_all(toy_repo):
    """GTO's names may hold `/` (`toy#eu/prod#2`), where for-each-ref's `*` stops: a read of
    one model sees the stage as a read of every tag does, and the kept view sees it change."""
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    git(toy_repo, "tag", "-a", "-m", "promote", "toy#eu/prod#2", "toy@v0.0.1")
    for model in (None, "toy", "toy"):  # every tag; one model, derived; one model, its view
        state = Registry(Git(toy_repo)).read(model)
        assert set(state.stages("toy")) == {"eu/prod"} and state.next_counter("toy") == 3
    git(toy_repo, "tag", "-a", "-m", "unassign", "toy#eu/prod!#3", "toy@v0.0.1")
    for model in (None, "toy", "toy"):
        state = Registry(Git(toy_repo)).read(model)
        assert state.stages("toy") == {} and state.next_counter("toy") == 4


def test_runner_without_git_identity_tags_as_actions_actor(cli, toy_repo, monkeypatch, tmp_path):
    cli("run")
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GITHUB_ACTOR", "octo-bot")
    assert cli("register")[0] == 0
    assert git(toy_repo, "tag", "-l", "--format=%(taggername)", "toy@v0.1.0") == "octo-bot"


def test_monorepo_two_models_are_independent(tmp_path, capsys):
    from tests.conftest import Cli, two_model_repo

    repo = two_model_repo(tmp_path / "mono")
    c = Cli(repo, capsys)
    code, out, err = c("run")
    assert code == 0, err
    assert (repo / "alpha" / "model.bin").exists() and (repo / "beta" / "model.bin").exists()
    code, _, err = c("register")
    assert code == 1 and "choose one with --model" in err
    assert c("register", "--model", "alpha")[0] == 0
    set_params(repo / "beta", accuracy=0.95)
    commit_all(repo, "feat: better beta")
    assert c("run", "--model", "beta")[0] == 0
    assert c("register", "--model", "beta")[0] == 0
    code, out, _ = c("versions", "--json")
    assert [(r["model"], r["version"]) for r in json.loads(out)] == [
        ("alpha", "v0.1.0"),
        ("beta", "v0.1.0"),
    ]
    rec = json.loads((repo / ".lepton" / "runs" / "beta.json").read_text())
    assert rec["baseline"] is None  # alpha's tag is not beta's baseline
    assert Path(repo / "alpha" / "train_count.txt").read_text() == "1"


def test_a_registered_commit_is_its_own_candidate_version(cli, toy_repo):
    registered(cli, toy_repo)
    registered(cli, toy_repo, "fix: b", lr=0.3)
    git(toy_repo, "checkout", "-q", "toy@v0.1.0")
    assert cli("run")[0] == 0
    rec = json.loads((toy_repo / ".lepton" / "runs" / "toy.json").read_text())
    assert rec["candidate_version"] == "v0.1.0"
    git(toy_repo, "checkout", "-q", "main")
    (toy_repo / "x").write_text("x")
    commit_all(toy_repo, "docs: x")
    cli("run")
    rec = json.loads((toy_repo / ".lepton" / "runs" / "toy.json").read_text())
    assert rec["candidate_version"] == "v0.1.2"


def test_push_without_the_remote_says_so_and_leaves_no_tag(cli, toy_repo):
    cli("run")
    code, _, err = cli("register", "--push")
    assert code == 1
    assert "this repository has no remote `origin`; the local tag was removed again" in err
    assert git(toy_repo, "tag") == ""


def many_versions(cli, repo, n):
    """One real registered version, then n more made from its record, each on its own commit
    with its own cache key and accuracy: history without n slow training runs."""
    registered(cli, repo)
    msg = git(repo, "tag", "-l", "--format=%(contents)", "toy@v0.1.0")
    fenced = msg.partition("\n\n")[2].rpartition("\n\n")[0]
    record = json.loads("\n".join(fenced.strip("\n").split("\n")[1:-1]))
    from lepton_ci.core.record import Record
    from lepton_ci.versions import message

    for i in range(1, n + 1):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"chore: {i}")
        rec = Record.model_validate(
            {
                **record,
                "candidate_version": f"v0.1.{i}",
                "metrics": {**record["metrics"], "accuracy": 0.8 + i / 1000},
                "cache": {**record["cache"], "key": f"blake3:{i:064x}"},
            }
        )
        name = f"toy@v0.1.{i}"
        subprocess.run(
            ["git", "tag", "-a", "--cleanup=verbatim", "-F", "-", name],
            cwd=repo,
            input=message.compose(f"Register {name}: gates: pass", rec),
            text=True,
            check=True,
        )
    return record


def count_parses(monkeypatch):
    from lepton_ci.core import record as record_mod

    calls = []
    real = record_mod.parse
    monkeypatch.setattr(record_mod, "parse", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_the_chart_reads_only_the_records_it_shows(cli, toy_repo, monkeypatch):
    from lepton_ci.core import record as record_mod
    from lepton_ci.report import comment

    many_versions(cli, toy_repo, 14)
    rec = record_mod.load(toy_repo / ".lepton" / "runs" / "toy.json")
    rec = rec.model_copy(update={"git": rec.git.model_copy(update={"sha": "0" * 40})})
    parses = count_parses(monkeypatch)
    points = comment.history(Registry(Git(toy_repo)), rec)
    assert [p.label for p in points][-3:] == ["v0.1.13", "v0.1.14", "this PR"]
    assert len(points) == comment.CHART_POINTS
    assert len(parses) == comment.CHART_POINTS - 1  # not one per version


def test_a_cache_hit_from_tags_parses_only_the_matching_record(cli, toy_repo, monkeypatch):
    from lepton_ci.report.comment import CHART_POINTS

    many_versions(cli, toy_repo, 16)
    git(toy_repo, "checkout", "-q", "toy@v0.1.0")
    (toy_repo / ".lepton" / "cache").rename(toy_repo / "old-cache")  # a fresh clone's state
    parses = count_parses(monkeypatch)
    code, out, _ = cli("run")
    assert code == 0 and "run-cache hit" in out and "(tag toy@v0.1.0)" in out
    tag_parses = [a for a in parses if "tag " in str(a[1:])]
    # the hit's record and the chart's, not all 17 (parsing every record did both)
    assert len(tag_parses) <= 1 + CHART_POINTS, len(tag_parses)


def test_the_registry_is_read_once_per_command_until_refs_change(toy_repo):
    g = Git(toy_repo)
    calls = []
    real = g.run

    def counting(args, **kw):
        calls.append(list(args))
        return real(args, **kw)

    g.run = counting
    reg = Registry(g)
    first = reg.read("toy")
    assert Registry(g).read("toy") is first
    listings = lambda: sum(a[0] == "for-each-ref" and "%(objectname) " in a[1] for a in calls)  # noqa: E731
    assert listings() == 1
    reg.create_tag("toy@v9.9.9", git(toy_repo, "rev-parse", "HEAD"), "Register toy@v9.9.9\n")
    assert [v.tag for v in Registry(g).read("toy").versions("toy")] == ["toy@v9.9.9"]
    assert listings() == 2


def test_reads_pause_the_garbage_collector_and_always_resume_it(toy_repo):
    import gc

    from lepton_ci.core.gcpause import gc_paused

    seen = []

    @gc_paused
    def inner(fail: bool) -> None:
        seen.append(gc.isenabled())
        if fail:
            raise RuntimeError("boom")

    assert gc.isenabled()
    inner(False)
    with pytest.raises(RuntimeError):
        inner(True)
    assert seen == [False, False] and gc.isenabled()
    gc.disable()  # a caller that paused it keeps it paused
    try:
        inner(False)
        assert not gc.isenabled()
    finally:
        gc.enable()
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    assert Registry(Git(toy_repo)).read().versions("toy") and gc.isenabled()


def _answers(state, model, shas):
    """Everything a command may ask a model's state, as plain values."""

    def info(v):
        return None if v is None else (v.tag, str(v.version), v.sha, v.time, v.who, v.verdict,
                                       v.deregistered, sorted(v.stages))  # fmt: skip

    def found(version):
        try:
            return info(state.find(model, version))
        except RegistryError as e:
            return str(e)

    return {
        "models": state.models(),
        "listed": state.models(include_deprecated=False),
        "versions": [info(v) for v in state.versions(model)],
        "all": [info(v) for v in state.versions(model, include_deregistered=True)],
        "newest two": [info(v) for v in state.versions(model)[:2]],
        "latest": info(state.latest(model)),
        "newest ever": info(state.newest_ever(model)),
        "find": {v: found(v) for v in ("v0.1.0", "v0.2.0", "v0.3.0", "v9.9.9")},
        "stages": {s: info(v) for s, v in state.stages(model).items()},
        "assignments": {
            s: (a.sha, info(a.version), a.event, a.label)
            for s, a in state.assignments(model).items()
        },
        "on": {sha: [info(v) for v in state.on_commit(model, sha)] for sha in shas},
        "deprecated": state.deprecated(model),
        "last_time": state.last_time(model),
        "next_counter": state.next_counter(model),
        "history": state.history(model),
        "rows": state.history_rows(model),
        "keyed": {k: state.tags_with_cache_key(model, k) for k in ("blake3:a", "blake3:b", "x")},
        "staging": state.stage_history(model, "staging"),
        "at": {sha: state.version_at(model, sha) for sha in shas},
    }


@pytest.mark.parametrize("head_rows", [1, 64], ids=["rows past the head", "all in the head"])
def test_a_kept_view_answers_as_the_tags_do(toy_repo, monkeypatch, head_rows):
    """The view a read keeps (by its listing's digest) answers every question as the state
    derived from the tags: versions, deregistered ones, stages on versions and on commits
    never registered, unassignments, deprecation, counters; and a new tag is seen at once.
    With a head of one row, every answer past the newest version reads the rows part."""
    monkeypatch.setattr(model_view, "HEAD_ROWS", head_rows)
    shas = []
    t = 1_700_000_000

    def tag(name, message, rev="HEAD"):
        nonlocal t
        t += 10
        git(toy_repo, "tag", "-a", "-m", message, name, rev,
            env={"GIT_COMMITTER_DATE": f"{t} +0000"})  # fmt: skip

    for i, verdict in enumerate(["pass", "fail", "pass"]):
        (toy_repo / "note.txt").write_text(str(i))
        commit_all(toy_repo, f"fix: {i}")
        shas.append(git(toy_repo, "rev-parse", "HEAD").strip())
        key = "blake3:a" if i < 2 else "blake3:b"  # two runs of the same inputs, then another
        trailer = f"Lepton-Cache-Key: {key}"
        tag(f"toy@v0.{i + 1}.0", f"Register toy@v0.{i + 1}.0: gates: {verdict}\n\n{trailer}")
    tag("toy#staging#1", "Promote", "toy@v0.1.0")
    tag("toy#prod#2", "Promote", "toy@v0.1.0")
    tag("toy#staging#3", "Promote", "toy@v0.3.0")
    tag("toy@v0.3.0!#4", "deregister", "toy@v0.3.0")
    tag("toy#dev#5", "Promote a commit never registered", f"{shas[0]}~1")
    tag("toy#prod!#6", "unassign", "toy@v0.1.0")
    tag("other@v1.0.0", "Register other@v1.0.0: gates: pass")
    shas += [git(toy_repo, "rev-parse", f"{shas[0]}~1").strip(), "0" * 40]

    def both(model):
        derived = Registry(Git(toy_repo)).read(model)  # derives, and keeps the view
        kept = Registry(Git(toy_repo)).read(model)
        assert type(derived).__name__ == "RegistryState" and type(kept).__name__ == "ViewState"
        return _answers(derived, model, shas), _answers(kept, model, shas)

    derived, kept = both("toy")
    assert kept == derived
    assert derived["versions"][0][:2] == ("toy@v0.2.0", "v0.2.0")  # v0.3.0 was deregistered
    assert derived["keyed"]["blake3:a"] == ["toy@v0.1.0", "toy@v0.2.0"]
    assert [r.label for r in derived["rows"]][:4] == ["v0.1.0", "v0.2.0", "v0.3.0", "v0.1.0"]
    assert set(derived["stages"]) == {"staging"} and derived["assignments"]["dev"][1] is None
    # deprecated, and a new version seen by the next read (the listing changed)
    tag("toy@deprecated#7", "deprecate")
    derived, kept = both("toy")
    assert kept == derived and derived["deprecated"] and derived["listed"] == []
    tag("toy@v0.4.0", "Register toy@v0.4.0: gates: pass")
    derived, kept = both("toy")
    assert kept == derived and derived["latest"][1] == "v0.4.0" and not derived["deprecated"]
    # a model with no tags at all, and another model's view beside this one's
    derived, kept = both("other")
    assert kept == derived
    # a model with no tags is answered at once, and nothing is kept for it
    views = sorted((toy_repo / ".git" / "lepton-ci" / "views").iterdir())
    nothing = Registry(Git(toy_repo)).read("nothing")
    assert type(nothing).__name__ == "RegistryState"
    assert _answers(nothing, "nothing", shas)["versions"] == []
    assert sorted((toy_repo / ".git" / "lepton-ci" / "views").iterdir()) == views


def test_a_kept_view_names_a_commit_as_the_tags_do_when_two_versions_sort_alike(toy_repo):
    """Build metadata does not order versions: v0.1.0 and v0.1.0+b on one commit sort alike,
    and the view picks the one the derived state picks."""
    sha = git(toy_repo, "rev-parse", "HEAD")
    for i, name in enumerate(["toy@v0.1.0+b", "toy@v0.1.0", "toy@v0.1.0+a"]):
        git(toy_repo, "tag", "-a", "-m", "Register: gates: pass", name,
            env={"GIT_COMMITTER_DATE": f"{1_700_000_000 + i} +0000"})  # fmt: skip
    derived = Registry(Git(toy_repo)).read("toy")
    kept = Registry(Git(toy_repo)).read("toy")
    assert type(kept).__name__ == "ViewState"
    assert _answers(kept, "toy", [sha]) == _answers(derived, "toy", [sha])


def test_a_view_that_is_damaged_or_foreign_is_derived_again(toy_repo):
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    Registry(Git(toy_repo)).read("toy")
    views = toy_repo / ".git" / "lepton-ci" / "views"
    # the main view and all its rows; the other parts wait until a command needs one
    assert sorted(p.name.split(".", 1)[1] for p in views.iterdir()) == ["json", "rows.json"]
    (path,) = [p for p in views.iterdir() if p.suffixes == [".json"]]
    Registry(Git(toy_repo)).read("toy").history_rows("toy")
    assert sorted(p.name.split(".", 1)[1] for p in views.iterdir()) == [
        "history.json",
        "json",
        "keys.json",
        "rows.json",
    ]
    for part, damage in (("history", [[1, 2]]), ("keys", {"blake3:x": [7]}), ("keys", [])):
        kept = path.with_suffix(f".{part}.json")
        good_part = kept.read_text()
        kept.write_text(json.dumps({**json.loads(good_part), part: damage}))
        state = Registry(Git(toy_repo)).read("toy")
        assert type(state).__name__ == "ViewState"  # the main view stands; the part is derived
        assert [r.tag for r in state.history_rows("toy")] == ["toy@v0.0.1"]
        assert state.tags_with_cache_key("toy", "blake3:x") == []
        kept.write_text(good_part)
    good = json.loads(path.read_text())
    row = good["head"][0]
    for damage in (
        "{not json",
        json.dumps({**good, "head": [[*row[:7], "noon", *row[8:]]]}),  # a time as text
        json.dumps({**good, "head": [[*row[:10], 1, row[11]]]}),  # deregistered as 1
        json.dumps({**good, "head": [[*row[:11], [3]]]}),  # a stage that is a number
        json.dumps({**good, "head": [[*row[:10], True, row[11]]]}),  # count says none
        json.dumps({**good, "count": 2}),  # more versions than the commits column holds
        json.dumps({**good, "shas": "\n" + "0" * 40 + "\n"}),  # not the head's commit
        json.dumps({**good, "assigned": [["prod", row[6], [*row[:7], "noon", *row[8:]], []]]}),
        json.dumps({**good, "assigned": [["prod", row[6], None, []]]}),  # an event of nothing
        json.dumps({**good, "writer": "1/lepton-ci 0.0.1", "head": []}),  # another release
        json.dumps({**good, "model": "other", "head": []}),
        json.dumps({**good, "listing": "0" * 32, "head": []}),  # another set of tags
    ):
        path.write_text(damage)
        state = Registry(Git(toy_repo)).read("toy")
        assert type(state).__name__ == "RegistryState", damage[:60]
        assert [(v.tag, v.verdict) for v in state.versions("toy")] == [("toy@v0.0.1", "pass")]
    assert json.loads(path.read_text()) == good  # and kept again as it should be
    # a view that cannot be written (its directory is a file) does not stop a read
    shutil.rmtree(views)
    views.write_text("in the way")
    assert Registry(Git(toy_repo)).read("toy").find("toy", "v0.0.1").verdict == "pass"


def test_no_view_is_kept_when_the_tags_changed_during_the_read(toy_repo, monkeypatch):
    """A tag deleted between the listing and opening the tag objects: the state is not the
    listing's, so nothing is kept under the listing's digest."""
    from lepton_ci.versions.tag_index import TagIndex

    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.2: gates: pass", "toy@v0.0.2")
    real = TagIndex.listing

    def then_delete(self, patterns):
        listing = real(self, patterns)
        git(toy_repo, "tag", "-d", "toy@v0.0.2")
        return listing

    monkeypatch.setattr(TagIndex, "listing", then_delete)
    state = Registry(Git(toy_repo)).read("toy")
    assert [v.tag for v in state.versions("toy")] == ["toy@v0.0.1"]
    assert not (toy_repo / ".git" / "lepton-ci" / "views").exists()


def test_a_fifo_in_place_of_a_cache_file_does_not_block_a_read(toy_repo):
    """Whoever can write .git/lepton-ci could put a FIFO where the index or a view goes; a
    read that opened it would wait for a writer for ever. Such a file is not read."""
    git(toy_repo, "tag", "-a", "-m", "Register toy@v0.0.1: gates: pass", "toy@v0.0.1")
    Registry(Git(toy_repo)).read("toy")
    base = toy_repo / ".git" / "lepton-ci"
    for path in (*(base / "views").iterdir(), base / "tags.json"):
        path.unlink()
        os.mkfifo(path)
    code = (
        "from pathlib import Path\nfrom lepton_ci.core.git import Git\n"
        "from lepton_ci.versions.registry import Registry\n"
        f"s = Registry(Git(Path({str(toy_repo)!r}))).read('toy')\n"
        "print([v.tag for v in s.versions('toy')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "['toy@v0.0.1']"


def test_a_rows_part_that_is_lost_or_damaged_is_derived_again(toy_repo, monkeypatch):
    """Past the newest rows (here: one) a view reads its rows part; one that is missing, cut
    short, of the wrong types or not these versions is replaced by what the tags say."""
    monkeypatch.setattr(model_view, "HEAD_ROWS", 1)
    for i in range(3):
        (toy_repo / "note.txt").write_text(str(i))
        commit_all(toy_repo, f"fix: {i}")
        git(toy_repo, "tag", "-a", "-m", "Register: gates: pass", f"toy@v0.0.{i}")
    want = [v.tag for v in Registry(Git(toy_repo)).read("toy").versions("toy")]
    assert want == ["toy@v0.0.2", "toy@v0.0.1", "toy@v0.0.0"]
    views = toy_repo / ".git" / "lepton-ci" / "views"
    (rows_part,) = views.glob("*.rows.json")
    good = json.loads(rows_part.read_text())
    rows = good["rows"]
    for damage in (
        None,  # lost
        {**good, "rows": rows[:2]},
        {**good, "rows": [rows[0], [*rows[1][:7], "noon", *rows[1][8:]], rows[2]]},
        {**good, "rows": [rows[0], rows[2], rows[1]]},  # not the commits column's order
        {**good, "rows": [rows[0], rows[1], [*rows[2][:10], True, rows[2][11]]]},
    ):
        if damage is None:
            rows_part.unlink()
        else:
            rows_part.write_text(json.dumps(damage))
        state = Registry(Git(toy_repo)).read("toy")
        assert type(state).__name__ == "ViewState"
        assert [v.tag for v in state.versions("toy")] == want, damage
        assert state.find("toy", "v0.0.0").tag == "toy@v0.0.0"


@pytest.mark.parametrize("include_all", [False, True])
def test_every_model_read_through_its_view_lists_as_one_read_of_all_tags(
    toy_repo, monkeypatch, include_all
):
    """`versions` and `history` without a model split one listing of every tag by model and
    read each through its kept view: the same tables as the state derived from all the tags
    (models, deprecated ones, stages with a slash, odd names GTO ignores, same-second events
    across models ordered by counter)."""
    from lepton_ci.core.printer import to_json
    from lepton_ci.versions import queries

    t = 1_700_000_000

    def tag(name, message="Register: gates: pass", rev="HEAD", at=None):
        nonlocal t
        t += 10
        git(toy_repo, "tag", "-a", "-m", message, name, rev,
            env={"GIT_COMMITTER_DATE": f"{at or t} +0000"})  # fmt: skip

    tag("toy@v0.1.0")
    tag("other@v1.0.0")
    tag("toy#eu/prod#1", "Promote", "toy@v0.1.0")
    tag("other#prod#2", "Promote", "other@v1.0.0", at=t)  # the same second as the one before
    tag("other#staging#1", "Promote", "other@v1.0.0", at=t)
    tag("gone@v0.1.0")
    tag("gone@deprecated#1", "deprecate")
    tag("dir=sub@v0.2.0")  # a model in a directory (`dir:sub`)
    for odd in ("toy@v1/x", "toy@notaversion", "v1.0.0", "release", "@v1.0.0", "#x"):
        tag(odd, "not GTO's")

    def tables():
        v = queries.versions(Git(toy_repo), None, include_all=include_all)
        h = queries.history(Git(toy_repo), None)
        return v.text(), to_json(v.records), queries.history_text(h), to_json(h.records)

    got = tables()  # derives and keeps each model's view
    assert got == tables()  # ... and reads them
    assert "dir:sub" in got[0] and "eu/prod" in got[0] and ("gone" in got[0]) == include_all
    # the views are the ones a read of one model keeps and finds (the same listing)
    for model in ("toy", "other", "gone", "dir:sub"):
        assert type(Registry(Git(toy_repo)).read(model)).__name__ == "ViewState", model
    full = Registry(Git(toy_repo)).read()  # every tag, as one derived state
    order = [(r.tag, r.label) for r in full.history_rows(None)]
    assert [(e["tag"], e["version"]) for e in json.loads(got[3])] == order

    monkeypatch.setattr(Registry, "read_models", lambda self: dict.fromkeys(full.models(), full))
    assert got == tables()


def test_register_push_interrupted_leaves_no_local_only_tag(cli, toy_repo, tmp_path):
    """SIGTERM during the push left a local tag that the remote never got, and a retry refused
    with "HEAD is already registered"."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(toy_repo), str(remote))
    git(toy_repo, "remote", "add", "origin", str(remote))
    started = tmp_path / "push-started"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {started}\nsleep 5\nexit 1\n")  # a push that hangs
    hook.chmod(0o755)
    assert cli("run")[0] == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton_ci", "-C", str(toy_repo), "register", "--push"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert git(toy_repo, "tag") == ""
    hook.unlink()
    code, _, err = cli("register", "--push")
    assert code == 0, err
    assert git(remote, "tag") == "toy@v0.1.0"


def test_a_version_equal_in_precedence_to_an_existing_one_is_refused(cli, toy_repo):
    """`5.0.0+a` and `5.0.0+b` rank equal (build metadata is no part of precedence): both were
    registered, and which one is "the newest" was a coin toss."""
    assert cli("run")[0] == 0
    assert cli("register", "--version", "5.0.0+a")[0] == 0
    set_params(toy_repo, lr=0.2)
    commit_all(toy_repo, "fix: b")
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--version", "5.0.0+b")
    assert code == 1 and "toy@v5.0.0+a" in err and "ranks equal" in err, err
    code, _, err = cli("register", "--version", "5.0.\u0661")
    assert code == 1 and "not a semantic version" in err
    assert git(toy_repo, "tag") == "toy@v5.0.0+a"
