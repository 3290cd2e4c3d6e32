"""`lepton-ci run` end to end on real git repositories with the toy model."""

import json
import shutil
from pathlib import Path

import pytest

from lepton_ci.core import record as record_mod
from tests.conftest import commit_all, git, parse_outputs, set_params

pytestmark = pytest.mark.e2e


def load_record(repo: Path, model: str = "toy") -> record_mod.Record:
    return record_mod.load(repo / ".lepton" / "runs" / f"{model}.json")


def train_count(repo: Path) -> int:
    return int((repo / "train_count.txt").read_text())


def test_first_run_records_full_lineage(cli, toy_repo):
    code, out, _ = cli("run")
    assert code == 0, out
    rec = load_record(toy_repo)
    head = git(toy_repo, "rev-parse", "HEAD")
    assert rec.git.sha == head and rec.git.branch == "main" and rec.git.dirty is False
    assert rec.metrics == {"accuracy": 0.9, "loss": 0.1, "speed.p95_ms": 12.5}
    assert rec.params == {"accuracy": 0.9, "lr": 0.1}
    assert set(rec.lineage.code) == {"train.py", "evaluate.py"}
    assert set(rec.lineage.data) == {"data.csv"}
    assert rec.lineage.params_files["params.yaml"].hash.startswith("blake3:")
    assert set(rec.outputs) == {"model.bin"}
    assert [s.name for s in rec.steps] == ["train", "evaluate"]
    assert all(s.exit_code == 0 and not s.skipped for s in rec.steps)
    assert rec.environment.python.count(".") == 2
    assert rec.baseline is None and rec.verdict == "pass"
    assert rec.candidate_version == "v0.1.0"
    assert "no baseline (first version)" in out


def test_record_matches_shipped_schema(cli, toy_repo):
    shipped = json.loads(record_mod.shipped_schema_path().read_text())
    assert shipped == record_mod.schema(), "run `lepton-ci schema record > lepton_ci/schemas/...`"
    code, out, _ = cli("schema", "record")
    assert code == 0 and json.loads(out)["title"] == "Record"


def test_cache_hit_skips_training_and_says_why(cli, toy_repo):
    assert cli("run")[0] == 0
    code, out, _ = cli("run")
    assert code == 0
    assert train_count(toy_repo) == 1
    assert "run-cache hit, training skipped" in out
    assert "same code, data, params, commands and environment" in out
    rec = load_record(toy_repo)
    assert rec.cache.hit and rec.cache.source == "local cache"
    assert all(s.skipped for s in rec.steps)
    code, out, _ = cli("run", "--no-cache")
    assert code == 0 and train_count(toy_repo) == 2
    assert "--no-cache was given" in out


def test_cached_only_never_trains_and_says_where_to(cli, toy_repo):
    """A job whose token can push runs --cached-only: a miss is an error, nothing trains."""
    code, _, err = cli("run", "--cached-only")
    assert code == 1 and "toy: run-cache miss" in err and "--cached-only forbids training" in err
    assert not (toy_repo / "train_count.txt").exists()
    assert not (toy_repo / ".lepton" / "runs" / "toy.json").exists()
    assert cli("run")[0] == 0 and train_count(toy_repo) == 1
    code, _, err = cli("run", "--cached-only")
    assert code == 0, err
    assert train_count(toy_repo) == 1


def test_a_trusted_job_never_trains(cli, toy_repo, monkeypatch):
    """A job that says it runs no untrusted code (its caches are the trusted side's) may only
    reuse a run: `run` without --cached-only (or with --no-cache) is refused before anything
    runs; with it, a hit is reused."""
    assert cli("run")[0] == 0 and train_count(toy_repo) == 1
    monkeypatch.setenv("LEPTON_TRUSTED_JOB", "true")
    for args in (("run",), ("run", "--cached-only", "--no-cache")):
        code, _, err = cli(*args)
        assert code == 1 and "this job says it runs no untrusted code" in err
        assert "pass `cached-only: true`" in err
    assert train_count(toy_repo) == 1
    code, _, err = cli("run", "--cached-only")
    assert code == 0, err
    assert train_count(toy_repo) == 1


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda r: (r / "data.csv").write_text("x,y\n9,9\n"), "data"),
        (lambda r: (r / "train.py").write_text((r / "train.py").read_text() + "\n# c\n"), "code"),
        (lambda r: set_params(r, lr=0.2), "params"),
    ],
)
def test_any_input_change_misses_the_cache(cli, toy_repo, change, what):
    assert cli("run")[0] == 0
    change(toy_repo)
    code, out, _ = cli("run")
    assert code == 0, what
    assert train_count(toy_repo) == 2, f"a {what} change must retrain"
    assert "run-cache miss" in out


def test_cache_restores_deleted_artifacts(cli, toy_repo):
    assert cli("run")[0] == 0
    blob = (toy_repo / "model.bin").read_bytes()
    (toy_repo / "model.bin").unlink()
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1
    assert "restored model.bin from the cache" in out
    assert (toy_repo / "model.bin").read_bytes() == blob


def test_cache_from_version_tag_when_local_cache_is_gone(cli, toy_repo):
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0
    shutil.rmtree(toy_repo / ".lepton" / "cache")
    (toy_repo / "README").write_text("docs only\n")
    commit_all(toy_repo, "docs: readme")
    code, _out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1
    assert load_record(toy_repo).cache.source == "tag toy@v0.1.0"


def test_cache_miss_when_artifact_is_nowhere(cli, toy_repo):
    assert cli("run")[0] == 0
    shutil.rmtree(toy_repo / ".lepton" / "cache" / "blobs")
    (toy_repo / "model.bin").unlink()
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 2
    assert "artifact model.bin is neither in the work tree nor in the cache" in out


def test_regression_fails_the_gate_with_reasons(cli, toy_repo, gh_files):
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0
    set_params(toy_repo, accuracy=0.7)
    commit_all(toy_repo, "fix: worse")
    code, out, err = cli("run")
    assert code == 1
    assert "::error title=toy gate::accuracy: regressed by 0.2, more than the allowed 0.05" in out
    assert "quality gate failed: toy.accuracy, toy.loss" in err
    outputs = parse_outputs(gh_files["output"].read_text())
    assert outputs["verdict"] == "fail"
    assert outputs["baseline"] == "toy@v0.1.0"
    assert outputs["cache-hit"] == "false"
    report_dir = toy_repo / ".lepton" / "report" / "toy"
    assert outputs["report"] == str(report_dir) and (report_dir / "record.json").is_file()
    summary = gh_files["summary"].read_text()
    assert "| accuracy | 0.9 | 0.7 |" in summary and "❌ fail" in summary
    rec = load_record(toy_repo)
    assert rec.verdict == "fail" and rec.baseline and rec.baseline.tag == "toy@v0.1.0"
    code, out, _ = cli("run", "--no-fail")
    assert code == 0


def test_failing_train_reports_exit_code_and_last_lines_and_writes_no_record(cli, toy_repo):
    set_params(toy_repo, fail_train=True)
    code, _, err = cli("run")
    assert code == 1
    assert "train command exited with code 3" in err
    assert "Traceback: something broke in training" in err
    assert "loading data..." in err
    assert not (toy_repo / ".lepton" / "runs" / "toy.json").exists()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"accuracy": "NaN"}, "NaN and infinity cannot be gated"),
        ({"accuracy": "high"}, "'high', not a number"),
    ],
)
def test_bad_metric_values_stop_the_run(cli, toy_repo, override, needle):
    value = float("nan") if override["accuracy"] == "NaN" else override["accuracy"]
    set_params(toy_repo, metrics_override={"accuracy": value})
    code, _, err = cli("run")
    assert code == 1 and needle in err and "metrics.json" in err


def test_missing_output_and_metrics_files(cli, toy_repo):
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("outputs: [model.bin]", "outputs: [model.pt]"))
    code, _, err = cli("run")
    assert code == 1 and "outputs pattern `model.pt` matches no file" in err
    cfg.write_text(
        cfg.read_text()
        .replace("outputs: [model.pt]", "outputs: [model.bin]")
        .replace("metrics: [metrics.json]", "metrics: [scores.json]")
    )
    code, _, err = cli("run")
    assert code == 1 and "scores.json: metrics file not found" in err


def test_missing_data_file_is_a_clear_error(cli, toy_repo):
    (toy_repo / "data.csv").unlink()
    code, _, err = cli("run")
    assert code == 1 and "data pattern `data.csv` matches no file" in err


def test_bad_config_exits_non_zero_with_fix(cli, toy_repo):
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("gates:", "gaets:"))
    code, _, err = cli("run")
    assert code == 1
    assert "`models.toy.gaets`: unknown key; did you mean `gates`?" in err


def test_cache_stores_and_restores_artifacts_without_sharing_them(cli, toy_repo):
    code, out, _ = cli("run")
    assert code == 0
    assert "run-cache stored 1 artifact(s) by copy" in out or "by reflink" in out
    assert "the cache holds 1 records, 1 artifacts" in out
    model = toy_repo / "model.bin"
    assert model.stat().st_nlink == 1  # a reflink shares extents copy-on-write, never the file
    model.unlink()
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1
    assert "restored model.bin from the cache" in out
    assert model.stat().st_nlink == 1


def test_training_again_never_rewrites_a_cached_artifact(cli, toy_repo):
    """The toy trainer truncates model.bin in place, as pickle/torch.save do."""
    assert cli("run")[0] == 0
    first = (toy_repo / "model.bin").read_bytes()
    set_params(toy_repo, accuracy=0.91, lr=0.2)
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 2
    assert (toy_repo / "model.bin").read_bytes() != first
    set_params(toy_repo, accuracy=0.9, lr=0.1)  # back to the first run's inputs
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 2, out
    assert (toy_repo / "model.bin").read_bytes() == first


@pytest.mark.parametrize("keep_stat", [False, True], ids=["rewrite", "rewrite-keeping-mtime"])
def test_a_write_outside_run_never_reaches_the_cached_copy(cli, toy_repo, keep_stat):
    """`python3 train.py` by hand or `cp other model.bin` writes the work tree's file in place:
    the cache keeps the registered bytes, and the next run restores them, even when the write
    kept the file's size and mtime."""
    import os

    assert cli("run")[0] == 0
    model = toy_repo / "model.bin"
    first = model.read_bytes()
    st = model.stat()
    with model.open("r+b") as f:  # in place, same size, as `cp` onto an existing file does
        f.write(b"X" * len(first))
    if keep_stat:
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    blobs = [p for p in (toy_repo / ".lepton/cache/blobs").glob("*/*") if p.suffix != ".stat"]
    assert [b.read_bytes() for b in blobs] == [first]
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1, out
    assert "restored model.bin from the cache" in out
    assert model.read_bytes() == first


def test_an_old_caches_hard_link_is_broken_before_it_can_be_written(cli, toy_repo):
    """A cache written by an older lepton-ci shares the work tree's file by hard link."""
    import os

    assert cli("run")[0] == 0
    model = toy_repo / "model.bin"
    blob = next(p for p in (toy_repo / ".lepton/cache/blobs").glob("*/*") if p.suffix != ".stat")
    model.unlink()
    os.link(blob, model)
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1, out
    assert model.stat().st_nlink == 1 and not model.samefile(blob)


def test_a_cached_artifact_changed_after_it_was_stored_is_not_served(cli, toy_repo):
    assert cli("run")[0] == 0
    blob = next(p for p in (toy_repo / ".lepton/cache/blobs").glob("*/*") if p.suffix != ".stat")
    (toy_repo / "model.bin").unlink()
    with blob.open("r+b") as f:  # same size, other bytes, written after the store
        f.write(b"X")
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 2
    assert "the cached model.bin was changed after it was stored" in out


@pytest.mark.unit
def test_place_reflinks_or_copies_and_never_links(tmp_path):
    from lepton_ci.run.cache import place

    src = tmp_path / "a.bin"
    src.write_bytes(b"weights" * 1000)
    assert place(src, tmp_path / "sub" / "b.bin") in ("reflink", "copy")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == src.read_bytes()
    assert src.stat().st_nlink == 1
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to copy across")
    other = shm / f"lepton-test-{tmp_path.name}.bin"
    try:
        assert place(src, other) == "copy"
        assert other.read_bytes() == src.read_bytes() and other.stat().st_nlink == 1
    finally:
        other.unlink(missing_ok=True)


def test_a_cache_restored_from_a_tarball_is_still_served(cli, toy_repo):
    """actions/cache restores mtimes only to the second: same bytes, other stat, still a hit."""
    import os

    assert cli("run")[0] == 0
    blob = next(p for p in (toy_repo / ".lepton/cache/blobs").glob("*/*") if p.suffix != ".stat")
    (toy_repo / "model.bin").unlink()
    st = blob.stat()
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns // 10**9 * 10**9 - 10**9))
    code, out, _ = cli("run")
    assert code == 0 and train_count(toy_repo) == 1, out
    assert "restored model.bin from the cache" in out


def test_a_build_after_a_hand_written_model_uses_the_cached_bytes_or_says_the_truth(
    cli, toy_repo, tmp_path
):
    """`python3 train.py` by hand after `register` must not make the version unbuildable; and
    when the cache truly lost the bytes, the hint must not promise a run-cache hit."""
    from lepton_ci.core.errors import RecordError
    from lepton_ci.core.hashing import StatCache
    from lepton_ci.image.source import _link_artifacts
    from lepton_ci.run.cache import RunCache

    assert cli("run")[0] == 0 and cli("register")[0] == 0
    rec = load_record(toy_repo)
    first = (toy_repo / "model.bin").read_bytes()
    (toy_repo / "model.bin").write_bytes(b"retrained by hand, other weights")
    cache = RunCache(toy_repo / ".lepton" / "cache")
    _link_artifacts(rec, tmp_path / "ctx", toy_repo, cache, StatCache(None))
    assert (tmp_path / "ctx" / "model.bin").read_bytes() == first
    shutil.rmtree(toy_repo / ".lepton" / "cache" / "blobs")
    with pytest.raises(RecordError) as e:
        _link_artifacts(rec, tmp_path / "ctx2", toy_repo, cache, StatCache(None))
    assert "the run-cache" in e.value.message and "does not hold it" in e.value.message
    assert "run-cache hit" not in (e.value.hint or "")
    assert "only if training reproduces the same bytes" in (e.value.hint or "")


def test_absolute_data_is_hashed_under_its_absolute_path(cli, toy_repo, tmp_path):
    # once NotImplementedError (exit 70): `data: [/mnt/datasets/x]` is a mounted dataset
    dataset = tmp_path / "datasets" / "x"
    dataset.mkdir(parents=True)
    (dataset / "part-0.csv").write_text("x,y\n1,2\n")
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("data: [data.csv]", f"data: [data.csv, {dataset}]"))
    commit_all(toy_repo, "chore: a mounted dataset")
    code, out, err = cli("run")
    assert code == 0, out + err
    rec = load_record(toy_repo)
    assert set(rec.lineage.data) == {"data.csv", (dataset / "part-0.csv").as_posix()}
    (dataset / "part-0.csv").write_text("x,y\n1,3\n")
    assert cli("run")[0] == 0
    assert load_record(toy_repo).lineage.data_digest != rec.lineage.data_digest  # no stale hit
    shutil.rmtree(dataset)
    code, _, err = cli("run")
    assert code == 1 and f"data pattern `{dataset}` matches no file" in err


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('code: ["*.py"]', "code: [/srv/x.py]", "`models.toy.code`"),
        ("outputs: [model.bin]", "outputs: [/tmp/model.bin]", "`models.toy.outputs`"),
        ("data: [data.csv]", "data: [../data.csv]", "`models.toy.data`"),
    ],
)
def test_patterns_outside_the_model_folder_are_config_errors(cli, toy_repo, old, new, needle):
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace(old, new))
    code, _, err = cli("run")
    assert code == 1, err
    assert needle in err and "unexpected error" not in err


def test_run_in_actions_without_github_output_keeps_its_record(cli, toy_repo, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    code, _, err = cli("run")  # once RuntimeError, exit 70, after the work was done
    assert code == 0, err
    assert "GITHUB_OUTPUT is not set" in err and load_record(toy_repo).verdict == "pass"
