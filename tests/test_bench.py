"""The benches measure what real users have: their registries are what `register` and
`promote` write, read back by the real reader, and their GitHub exchanges are GitHub's.

A bench that wrote another tag format (the bare JSON of older tags) timed a reader path no
registry takes any more; one whose comments GitHub would never send stopped running at all."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from lepton_ci.cli import main
from lepton_ci.core.git import Git
from lepton_ci.versions.registry import Registry

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """Import a bench script as the benches import each other (from their own folder)."""
    monkeypatch.syspath_prepend(str(BENCH))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def read_back(root: Path, model: str) -> tuple[Registry, dict]:
    reg = Registry(Git(root))
    state = reg.read(model)
    tags = [v.tag for v in state.versions(model)]
    records = reg.records(tags)
    assert sorted(records) == sorted(tags) and not reg.skipped  # every record read, none skipped
    for e in state.history(model):
        if e.version is not None:  # the run-cache key comes from the trailer, not the record
            assert e.cache_key == records[e.tag].cache.key and e.verdict == "pass", e
    return reg, records


def versions_json(root: Path, model: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["-C", str(root), "versions", model, "--json"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err, err  # no tag taken for a foreign one
    return out


@pytest.mark.unit
def test_registry_read_writes_the_tags_register_writes(bench, tmp_path, capsys):
    bench("registry_read").make_repo(tmp_path, 3)
    _, records = read_back(tmp_path, "digits")
    assert sorted(records) == ["digits@v0.0.0", "digits@v0.1.0", "digits@v0.2.0"]
    assert versions_json(tmp_path, "digits", capsys).count('"version"') == 3


@pytest.mark.unit
def test_site_build_writes_the_tags_register_and_promote_write(bench, tmp_path, capsys):
    root = tmp_path / "repo"
    root.mkdir()
    bench("site_build").make_repo(root, ["alpha", "beta"], 12)
    for model in ("alpha", "beta"):
        reg, records = read_back(root, model)
        assert len(records) == 12
        state = reg.read(model)
        assert {s: str(v.version) for s, v in state.stages(model).items()} == {
            "staging": "v0.10.0",
            "prod": "v0.0.0",
        }
        promotions = [e for e in state.history(model) if e.stage is not None]
        assert [e.counter for e in promotions] == [1, 2, 3]  # numbered as `promote` numbers
        assert {e.actor for e in promotions} == {"rel-ease"}  # the Promoted-by trailer
        assert versions_json(root, model, capsys).count('"version"') == 12


@pytest.mark.e2e
def test_comment_calls_runs_against_a_stand_in_that_checks_github_s_description(bench):
    """The stand-in fails the bench when a request or answer is not GitHub's; the hand-made
    comments of other users were not, so the bench stopped at its second measure."""
    calls = bench("comment_calls").measure(2, 3)
    assert calls == (3, 2, 0)  # calls to update, calls when unchanged, edits when unchanged


@pytest.mark.e2e
@pytest.mark.parametrize("signed", [False, True])
def test_pull_speed_pulls_what_build_pushed_and_prints_the_ratio(bench, capsys, signed):
    """Small: a 16 MiB model, one run each; the numbers of the issue come from 1 GiB."""
    res = bench("pull_speed").measure(16, 1, signed=signed)
    out = capsys.readouterr().out
    assert "weights.bin pulled: 16 MiB; " + ("signed" if signed else "not signed") in out
    assert f"ratio {res['ratio']:.2f}" in out and "peak RSS" in out
    assert res["pull_s"] > 0 and res["skopeo_s"] > 0 and res["pull_rss_mb"] > 10


def test_shadow_latency_loads_the_real_splitter_with_and_without_the_comparator(bench):
    """Small: one second per scenario. What is checked is that each scenario ran as it says
    (wrk answered without errors, the comparator compared while mirrored to), not the times."""
    m = bench("shadow_latency")
    res = m.measure(seconds=1, runs=1, connections=2)
    assert list(res) == [m.NO_SHADOW, m.SHADOW, m.SHADOW_SLOW, m.NO_SHADOW_AGAIN, m.DIRECT_SLOW]
    for r in res.values():
        assert r["errors"] == 0 and r["requests"] > 0 and r["p95_ms"] > 0
    for name in (m.SHADOW, m.SHADOW_SLOW):
        assert res[name]["compared"] > 0
        assert res[name]["seen"] >= res[name]["compared"] + res[name]["dropped"]


@pytest.mark.e2e
@pytest.mark.slow  # trains, builds and deploys the example twice: .ci/slow (tests/test_canary.py
# aborts a broken canary on real pods in .ci/run)
def test_canary_abort_measures_a_real_abort(bench, tmp_path, monkeypatch):
    """Small: a 1 s interval. Real podman, the nginx splitter and a steady client; the bench
    reads the abort time from the deployer and the share from the splitter's counters."""
    for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        monkeypatch.setenv(k, "")  # the bench points podman at its own; undone after
    m = bench("canary_abort").measure(tmp_path, interval=1.0)
    assert m["aborted_at"] == 10 and m["serving_after"]
    assert 0 < m["canary"] < m["total"]
    assert m["client_5xx"] > 0  # the broken candidate did answer some: the share is real
    assert m["to_stable_s"] >= 1.0  # the step served its interval before it was judged
