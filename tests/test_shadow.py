"""Shadow rollouts: the comparator's arithmetic on known answers, its answering at once, its
bounded queue, the verdict, and the result kept in git as the gate a later deploy requires."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lepton_ci.core import shadows
from lepton_ci.core.config import DeployConfig, DeployEnvironment
from lepton_ci.core.context import Context
from lepton_ci.core.git import Git
from lepton_ci.core.shadows import ShadowError, ShadowResult
from lepton_ci.deploy import shadowing as shadow_gate
from lepton_ci.deploy.deployer import Deployer
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import FileStore, Revision
from lepton_ci.rollout.comparator import Answer, Comparator, Mirrored, Tally, compare
from lepton_ci.rollout.shadow import judge
from tests.support.answers import ModelServer, label, servers

pytestmark = pytest.mark.unit


def ok(preds: list[object]) -> Answer:
    return Answer(200, json.dumps({"predictions": preds}).encode())


# -- compare: one request's two answers -----------------------------------------------------


def test_classification_counts_equal_labels_element_by_element() -> None:
    o = compare(ok([1, 2, 3, 4]), ok([1, 2, 9, 4]), regression=False)
    assert (o.judged, o.predictions, o.agreed, o.candidate_error) == (True, 4, 3, False)
    o = compare(ok(["cat", "dog"]), ok(["cat", "dog"]), regression=False)
    assert (o.predictions, o.agreed) == (2, 2)
    # labels as JSON has them: `true` and `1.0` are not the label `1` a client reads
    o = compare(ok([1, 2, {"k": 0}]), ok([True, 2.0, {"k": 0}]), regression=False)
    assert (o.predictions, o.agreed) == (3, 1)


def test_regression_measures_the_absolute_error_per_prediction() -> None:
    o = compare(ok([1.0, 2.0, [3.0, 5.0]]), ok([1.5, 1.0, [3.0, 4.0]]), regression=True)
    assert o.judged and not o.candidate_error
    assert o.abs_errors == pytest.approx((0.5, 1.0, 0.5))  # a vector: the mean of its leaves


@pytest.mark.parametrize(
    ("candidate", "why"),
    [
        (Answer(500, b'{"error": "boom"}'), "candidate: HTTP 500"),
        (Answer(None, error="timed out"), "candidate: no answer (timed out)"),
        (Answer(200, b"<html>"), "candidate: not JSON"),
        (Answer(200, b'{"labels": [1]}'), "candidate: no `predictions` list"),
        (ok([1]), "candidate: 1 predictions for 2"),
    ],
)
def test_a_candidate_error_or_another_shape_is_a_disagreement(candidate: Answer, why: str) -> None:
    o = compare(ok([1, 2]), candidate, regression=False)
    assert (o.judged, o.candidate_error, o.predictions, o.agreed, o.why) == (True, True, 2, 0, why)


@pytest.mark.parametrize(
    ("serving", "why"),
    [
        (Answer(503, b""), "serving: HTTP 503"),
        (Answer(200, b'{"status": "ok"}'), "serving: no `predictions` list"),
        (ok([]), "serving: empty `predictions`"),
    ],
)
def test_what_the_serving_revision_did_not_answer_is_not_comparable(
    serving: Answer, why: str
) -> None:
    o = compare(serving, ok([1]), regression=False)
    assert (o.judged, o.why) == (False, why)


def test_regression_refuses_labels_on_either_side() -> None:
    assert not compare(ok(["a"]), ok([1.0]), regression=True).judged
    o = compare(ok([1.0]), ok(["a"]), regression=True)
    assert o.judged and o.candidate_error


# -- the comparator against real model servers on loopback -----------------------------------


def mirror(address: str, instances: list[list[float]], path: str = "/predict") -> int:
    """POST as nginx's mirror does (HTTP/1.0, connection closed); returns the status."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps({"instances": instances}),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def inputs(n: int) -> list[list[float]]:
    return [[float(i), 1.0, 2.0] for i in range(n)]


def run_comparator(
    serving: ModelServer, candidate: ModelServer, requests: list[list[list[float]]], **kw: object
) -> Tally:
    comp = Comparator(candidate.url, serving.url, **{"pace": None, **kw})  # type: ignore[arg-type]
    address = comp.start()
    try:
        for instances in requests:
            assert mirror(address, instances) == 204
        assert comp.wait(20)
        return comp.snapshot()
    finally:
        comp.stop()


def test_agreement_is_computed_from_the_answers_both_tracks_give() -> None:
    # The candidate answers differently for every input whose first value is a multiple of 5:
    # 4 of the 20 single-instance requests, so agreement is exactly 16/20.
    def candidate_answer(xs: list[list[float]]) -> list[int]:
        return [label(x) if int(x[0]) % 5 else (label(x) + 1) % 10 for x in xs]

    with servers(ModelServer(), ModelServer(candidate_answer)) as (stable, cand):
        tally = run_comparator(stable, cand, [[x] for x in inputs(20)], wanted=20)
    assert (tally.seen, tally.compared, tally.predictions, tally.agreed) == (20, 20, 20, 16)
    assert tally.agreement == pytest.approx(0.8)
    assert len(tally.examples) == 4 and "1 of 1 differ" in tally.examples[0]
    assert (stable.received, cand.received) == (20, 20)


def test_a_disagreement_s_example_keeps_no_query_string_a_secret_may_be_in() -> None:
    # Examples are kept in git and shown in the PR comment and on the site: a client's
    # `?api_key=` must not travel there with them.
    comp = Comparator("http://127.0.0.1:1", "http://127.0.0.1:1", wanted=1, pace=None)
    comp._queued = 1
    req = Mirrored("POST", "/predict?api_key=s3cr3t-token&x=1", (), b"{}")
    comp._count(req, compare(ok([1]), ok([2]), regression=False))
    assert comp.snapshot().examples == ["POST /predict (query not kept): 1 of 1 differ"]


def test_batched_requests_are_compared_prediction_by_prediction() -> None:
    def candidate_answer(xs: list[list[float]]) -> list[int]:
        return [label(x) if i else 7 - label(x) % 7 + 10 for i, x in enumerate(xs)]

    with servers(ModelServer(), ModelServer(candidate_answer)) as (stable, cand):
        tally = run_comparator(stable, cand, [inputs(4) for _ in range(5)], wanted=5)
    assert (tally.compared, tally.predictions, tally.agreed) == (5, 20, 15)


def test_regression_error_is_the_mean_absolute_difference() -> None:
    def stable_answer(xs: list[list[float]]) -> list[float]:
        return [sum(x) for x in xs]

    def candidate_answer(xs: list[list[float]]) -> list[float]:
        return [sum(x) + (0.5 if int(x[0]) % 2 else -0.25) for x in xs]

    with servers(ModelServer(stable_answer), ModelServer(candidate_answer)) as (stable, cand):
        tally = run_comparator(stable, cand, [inputs(2)] * 10, wanted=10, regression=True)
    assert tally.compared == 10 and tally.candidate_errors == 0
    assert tally.mean_abs_error == pytest.approx(0.375)  # (0.25 + 0.5) / 2
    assert tally.max_abs_error == pytest.approx(0.5)


def test_a_candidate_answering_garbage_disagrees_and_is_counted() -> None:
    garbage = ModelServer(raw=lambda body: (200, b"\x00not json at all"))
    with servers(ModelServer(), garbage) as (stable, cand):
        tally = run_comparator(stable, cand, [[x] for x in inputs(6)], wanted=6)
    assert (tally.compared, tally.candidate_errors, tally.agreed) == (6, 6, 0)
    assert tally.agreement == 0.0


def test_requests_the_serving_revision_cannot_answer_are_counted_apart() -> None:
    with servers(ModelServer(), ModelServer()) as (stable, cand):
        comp = Comparator(cand.url, stable.url, wanted=3, pace=None)
        address = comp.start()
        try:
            assert mirror(address, [[1.0]], path="/metrics") == 204  # GET-like, no predictions
            for x in inputs(3):
                mirror(address, [x])
            assert comp.wait(20)
            tally = comp.snapshot()
        finally:
            comp.stop()
    assert tally.compared == 3 and tally.agreement == 1.0
    assert sum(tally.incomparable.values()) == 1


def test_the_mirror_is_answered_before_the_candidate_answers() -> None:
    """nginx holds a connection's next request until the mirror subrequest is answered: the
    comparator answers while the candidate still holds its answer back."""
    held = threading.Event()
    with servers(ModelServer(), ModelServer(gate=held)) as (stable, cand):
        comp = Comparator(cand.url, stable.url, wanted=3, pace=None)
        address = comp.start()
        try:
            for x in inputs(3):
                assert mirror(address, [x]) == 204
            assert comp.snapshot().compared == 0  # nothing compared: the candidate is held
            held.set()
            assert comp.wait(20)
            assert comp.snapshot().compared == 3
        finally:
            comp.stop()


def test_the_queue_is_bounded_and_what_overflows_is_dropped_and_counted() -> None:
    held = threading.Event()
    with servers(ModelServer(), ModelServer(gate=held)) as (stable, cand):
        comp = Comparator(cand.url, stable.url, wanted=100, queue_size=4, workers=1, pace=None)
        address = comp.start()
        try:
            mirror(address, [[0.0]])
            deadline = time.monotonic() + 10
            while cand.received == 0 and time.monotonic() < deadline:  # the worker holds one
                time.sleep(0.01)
            for x in inputs(10):
                mirror(address, [x])
            t = comp.snapshot()
            assert (t.seen, t.dropped, comp.queue.qsize()) == (11, 6, 4)
        finally:
            held.set()
            comp.stop()


def test_the_pace_bounds_what_the_serving_revision_is_asked_again() -> None:
    with servers(ModelServer(), ModelServer()) as (stable, cand):
        comp = Comparator(cand.url, stable.url, wanted=5, pace=0.01)  # one per 100 s
        address = comp.start()
        try:
            for x in inputs(5):
                assert mirror(address, [x]) == 204
            assert not comp.wait(0.5)
            t = comp.snapshot()
        finally:
            comp.stop()
    assert (t.seen, t.compared, t.dropped) == (5, 1, 4)
    assert (stable.received, cand.received) == (1, 1)


def test_it_stops_asking_once_enough_requests_are_compared() -> None:
    with servers(ModelServer(), ModelServer()) as (stable, cand):
        comp = Comparator(cand.url, stable.url, wanted=5, pace=None)
        address = comp.start()
        try:
            for x in inputs(5):
                mirror(address, [x])
            assert comp.wait(20)
            for x in inputs(5):
                assert mirror(address, [x]) == 204  # still answered at once
            t = comp.snapshot()
        finally:
            comp.stop()
    assert (t.seen, t.compared) == (10, 5)
    assert (stable.received, cand.received) == (5, 5)  # the serving revision asked no more


# -- the verdict ------------------------------------------------------------------------------


def env(**rollout: object) -> DeployEnvironment:
    return DeployEnvironment(host_port=18080, rollout={"strategy": "shadow", **rollout})  # type: ignore[arg-type]


def test_the_verdict_holds_the_agreement_to_its_bound() -> None:
    e = env(requests=20, min_agreement=0.9)
    assert judge(Tally(seen=20, compared=20, predictions=20, agreed=18), e, finished=True) == (
        True,
        "agreement 0.9000 at or above min_agreement 0.9",
    )
    passed, why = judge(Tally(seen=20, compared=20, predictions=20, agreed=17), e, finished=True)
    assert not passed and why == "agreement 0.8500 below min_agreement 0.9"


def test_the_verdict_holds_the_regression_error_to_its_bound_and_fails_candidate_errors() -> None:
    e = env(requests=4, max_error=0.3)
    t = Tally(seen=4, compared=4, predictions=4, abs_error_sum=1.0)
    assert judge(t, e, finished=True)[0] is True
    t.abs_error_sum = 1.6
    assert judge(t, e, finished=True) == (False, "mean absolute error 0.4 above max_error 0.3")
    t.abs_error_sum, t.candidate_errors = 0.0, 1
    assert "the candidate failed 1 of 4" in judge(t, e, finished=True)[1]


def test_too_few_requests_within_the_timeout_is_a_fail_that_says_how_many() -> None:
    e = env(requests=500, timeout=30)
    t = Tally(seen=120, compared=90, predictions=90, agreed=90, incomparable={"serving: x": 30})
    passed, why = judge(t, e, finished=False)
    assert not passed
    assert why == (
        "only 90 of 500 requests compared within 30 s (120 mirrored, 30 not comparable "
        "(serving: x))"
    )
    # what nothing could be compared for is said, the commonest why first
    t = Tally(seen=9, incomparable={"serving: HTTP 404": 8, "serving: not JSON": 1})
    assert "9 not comparable (serving: HTTP 404)" in judge(t, e, finished=True)[1]


# -- the result in git, and the gate a later deploy meets -------------------------------------

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def result(env_name: str = "staging", verdict: str = "pass", **kw: object) -> ShadowResult:
    base: dict[str, object] = {
        "model": "digits",
        "env": env_name,
        "version": "1.1.0",
        "record_digest": DIGEST,
        "serving_version": "1.0.0",
        "kind": "classification",
        "verdict": verdict,
        "reason": "agreement 0.9900 at or above min_agreement 0.98"
        if verdict == "pass"
        else "agreement 0.5000 below min_agreement 0.98",
        "wanted": 100,
        "seen": 104,
        "compared": 100,
        "predictions": 100,
        "agreed": 99 if verdict == "pass" else 50,
        "agreement": 0.99 if verdict == "pass" else 0.5,
        "min_agreement": 0.98,
    }
    return ShadowResult(**{**base, **kw})  # type: ignore[arg-type]


def test_results_are_kept_per_environment_under_the_record_s_ref_with_their_history(
    toy_repo: Path,
) -> None:
    g = Git(toy_repo)
    assert shadows.read(g, DIGEST) == {}
    ref = shadows.write(g, result(verdict="fail"))
    assert ref == "refs/lepton-ci/shadow/sha256-" + "ab" * 32
    shadows.write(g, result())
    shadows.write(g, result("qa"))
    found = shadows.read(g, DIGEST)
    assert sorted(found) == ["qa", "staging"] and found["staging"].passed
    log = g.run(["log", "--format=%s", ref]).stdout.splitlines()
    assert log == [
        "Shadow of digits 1.1.0 in qa: pass",
        "Shadow of digits 1.1.0 in staging: pass",
        "Shadow of digits 1.1.0 in staging: fail",
    ]
    assert shadows.recorded(g) == {DIGEST}
    assert shadows.read(g, OTHER) == {}


def test_a_clone_fetches_the_result_the_shadow_pushed(toy_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    g = Git(toy_repo)
    g.run(["remote", "add", "origin", str(remote)])
    shadows.write(g, result())
    assert shadows.push(g, DIGEST) is None
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    assert shadows.read(Git(clone), DIGEST, remote=None) == {}  # not fetched by a clone
    assert shadows.read(Git(clone), DIGEST)["staging"].passed  # fetched on demand
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    assert shadows.recorded(Git(other)) == set()
    assert shadows.fetch(Git(other)) is None  # all of them at once, as the site does
    assert shadows.recorded(Git(other)) == {DIGEST}
    assert shadows.fetch(Git(toy_repo), "sha256-" + "ef" * 32) is None  # none there: no error


def test_a_clone_with_an_older_result_reads_the_remote_s_newer_one(
    toy_repo: Path, tmp_path: Path
) -> None:
    # A persistent runner kept the failed shadow; the pass since pushed from elsewhere is the
    # verdict. A result kept here and not pushed (newer than the remote's) stays.
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    g = Git(toy_repo)
    g.run(["remote", "add", "origin", str(remote)])
    shadows.write(g, result(verdict="fail"))
    assert shadows.push(g, DIGEST) is None
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    assert not shadows.read(Git(clone), DIGEST)["staging"].passed
    shadows.write(g, result())
    assert shadows.push(g, DIGEST) is None
    assert shadows.read(Git(clone), DIGEST)["staging"].passed
    shadows.write(Git(clone), result(verdict="fail", seen=7))  # not pushed
    assert shadows.read(Git(clone), DIGEST)["staging"].seen == 7


def test_a_result_that_names_another_record_or_environment_is_not_taken(toy_repo: Path) -> None:
    g = Git(toy_repo)
    forged = result(record_digest=OTHER)  # kept under DIGEST's ref by hand, naming OTHER
    blob = g.run(["hash-object", "-w", "--stdin"], input=forged.model_dump_json()).stdout.strip()
    tree = g.run(["mktree"], input=f"100644 blob {blob}\tstaging.json\n").stdout.strip()
    commit = g.run(["commit-tree", tree, "-m", "x"]).stdout.strip()
    g.run(["update-ref", shadows.ref_of(DIGEST), commit])
    assert shadows.read(g, DIGEST) == {}


def gate_world(tmp_path: Path, strategy: str = "shadow") -> tuple[Deployer, Release]:
    deploy = DeployConfig(
        environments={"staging": {"host_port": 18080, "rollout": {"strategy": strategy}}}  # type: ignore[dict-item]
    )
    store = FileStore(tmp_path / "s")
    d = Deployer("digits", "staging", deploy, tmp_path, target=None, store=store)  # type: ignore[arg-type]
    rel = Release("digits", "1.1.0", "r/d@sha256:" + "1" * 64, DIGEST, 0)
    return d, rel


def serving(d: Deployer, digest: str = OTHER) -> None:
    d.store.save(
        Revision(
            number=1,
            env="staging",
            model="digits",
            version="1.0.0",
            image="r/d@sha256:" + "0" * 64,
            record_digest=digest,
            manifests="",
            status="deployed",
        )
    )


def test_a_deploy_without_a_passing_shadow_is_refused_with_the_command_that_runs_it(
    toy_repo: Path, tmp_path: Path
) -> None:
    ctx = Context.load(cwd=toy_repo)
    d, rel = gate_world(tmp_path)
    shadow_gate.require(ctx, d, rel)  # nothing serves: a first release has nothing to compare
    serving(d)
    with pytest.raises(ShadowError) as e:
        shadow_gate.require(ctx, d, rel)
    assert "requires a passing shadow rollout of this version in staging" in e.value.message
    assert "no shadow result of it is recorded" in e.value.message
    assert "lepton-ci deploy staging --model digits --version 1.1.0 --shadow" in e.value.hint
    shadows.write(ctx.git, result(verdict="fail"))
    with pytest.raises(ShadowError, match=r"its last shadow failed \(agreement 0.5000 below") as e:
        shadow_gate.require(ctx, d, rel)
    assert "register a new version" in e.value.hint and "run the shadow first" not in e.value.hint
    shadows.write(ctx.git, result("qa"))  # a pass elsewhere does not count here
    with pytest.raises(ShadowError):
        shadow_gate.require(ctx, d, rel)
    shadows.write(ctx.git, result(revision=2))
    with pytest.raises(ShadowError, match="names shadow revision 2, which staging's history"):
        shadow_gate.require(ctx, d, rel)  # a pass pushed by hand: this history never ran it
    shadowed(d, 2)
    shadow_gate.require(ctx, d, rel)  # allowed


def shadowed(d: Deployer, number: int, digest: str = DIGEST, status: str = "shadowed") -> None:
    d.store.save(
        Revision(
            number=number,
            env="staging",
            model="digits",
            version="1.1.0",
            image="r/d@sha256:" + "1" * 64,
            record_digest=digest,
            manifests="",
            status=status,  # type: ignore[arg-type]
        )
    )


def test_a_forged_pass_is_not_believed_without_the_shadow_revision_it_names(
    toy_repo: Path, tmp_path: Path
) -> None:
    # What a writer of refs/lepton-ci/shadow/... (not of the target) can forge: a pass naming
    # a revision that does not exist, one of another record, or one that failed.
    ctx = Context.load(cwd=toy_repo)
    d, rel = gate_world(tmp_path)
    serving(d)
    shadowed(d, 2, digest=OTHER)
    for number in (None, 2, 7):
        shadows.write(ctx.git, result(revision=number))
        with pytest.raises(ShadowError, match="not believed"):
            shadow_gate.require(ctx, d, rel)
    shadowed(d, 3, status="failed")
    shadows.write(ctx.git, result(revision=3))
    with pytest.raises(ShadowError, match="not believed"):
        shadow_gate.require(ctx, d, rel)
    shadowed(d, 4)
    shadows.write(ctx.git, result(revision=4))
    shadow_gate.require(ctx, d, rel)  # the one it ran


def test_the_gate_is_only_for_the_shadow_strategy_and_not_for_what_already_serves(
    toy_repo: Path, tmp_path: Path
) -> None:
    ctx = Context.load(cwd=toy_repo)
    d, rel = gate_world(tmp_path / "a", strategy="all-at-once")
    serving(d)
    shadow_gate.require(ctx, d, rel)
    d, rel = gate_world(tmp_path / "b")
    serving(d, digest=DIGEST)  # a redeploy of the version serving
    shadow_gate.require(ctx, d, rel)


def test_the_shadow_strategy_on_kubernetes_is_refused_before_the_first_release(
    toy_repo: Path, tmp_path: Path
) -> None:
    # `deploy --shadow` cannot run there: a gate that could never be earned would let the
    # first release out and refuse every later one.
    rollout = {"strategy": "shadow", "traffic": "gateway", "gateway": {"name": "edge"}}
    prod = {"url": "https://digits.example.com", "rollout": rollout}
    deploy = DeployConfig(target="kubernetes", environments={"prod": prod})  # type: ignore[arg-type,dict-item]
    store = FileStore(tmp_path / "s")
    d = Deployer("digits", "prod", deploy, tmp_path, target=None, store=store)  # type: ignore[arg-type]
    rel = Release("digits", "1.1.0", "r/d@sha256:" + "1" * 64, DIGEST, 0)
    with pytest.raises(ShadowError, match="can never be passed") as e:
        shadow_gate.require(Context.load(cwd=toy_repo), d, rel)
    assert "strategy: canary" in e.value.hint


# -- shown beside the offline metrics: the PR comment and the site, escaped --------------------

HOSTILE = '<img src=x onerror=alert("shadow")> @admin #1 | `x`'


def hostile_result(digest: str) -> ShadowResult:
    return result(
        record_digest=digest,
        serving_version=HOSTILE,
        reason=HOSTILE,
        examples=[f"POST /predict?{HOSTILE}: 1 of 1 differ"],
        agreement=0.9875,
        verdict="fail",
    )


def test_the_pr_comment_shows_the_shadow_beside_the_metrics_escaped(toy_repo: Path) -> None:
    from lepton_ci.core.gha import Runtime
    from lepton_ci.report import comment, publish
    from tests.support.site_repo import record

    rec = record("v0.2.0", "a" * 40, {"accuracy": 0.93}, None)
    g = Git(toy_repo)
    meta = comment.BundleMeta(model="toy", workflow="ci", head_sha="a" * 40)
    assert "Shadow rollouts" not in comment.render(rec, meta).body
    shadows.write(g, hostile_result(rec.digest()))
    shadows.write(g, result("qa", record_digest=rec.digest()))
    found = publish.shadow_results(g, rec, Runtime({}))
    body = comment.render(rec, meta, shadows=found).body
    table = body[body.index("**Shadow rollouts**") :]
    assert table.index("| qa | ✅ pass |") < table.index("| staging | ❌ fail |")
    assert "agreement 0.9875 (min 0.98) | 100/100 | 0 | 0 |" in table
    assert "<img" not in body and "&lt;img src=x" in body  # the version beside, as text
    assert "@admin" not in body  # no mention
    # the metrics table comes first: the shadow sits beside the offline evidence
    assert body.index("| metric | baseline |") < body.index("**Shadow rollouts**")


def test_the_site_version_page_shows_the_shadow_escaped(tmp_path: Path) -> None:
    from lepton_ci.cli import main
    from lepton_ci.versions.registry import Registry
    from tests.support import site_repo
    from tests.test_site import parse

    root = tmp_path / "repo"
    site_repo.make(root, deploys=False)
    g = Git(root)
    rec = Registry(g).record("toy@v0.2.0")
    assert rec is not None
    shadows.write(g, hostile_result(rec.digest()))
    assert main(["-C", str(root), "site", "--out", str(root / "_site")]) == 0
    toy = root / "_site" / "models" / "toy"
    page = parse(toy / "v0.2.0.html")
    assert "img" not in page.tags and not any(k.startswith("on") for k, _ in page.attrs)
    html = (toy / "v0.2.0.html").read_text()
    section = html[html.index("<h2>Shadow rollouts</h2>") :]
    assert "agreement 0.9875 (min 0.98)" in section
    assert "&lt;img src=x onerror=alert(&#34;shadow&#34;)&gt;" in section
    assert "Shadow rollouts" not in (toy / "v0.1.0.html").read_text()


def test_a_target_that_cannot_mirror_to_the_comparator_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    class ClusterLike:  # applies and waits, splits by weight, but cannot mirror to lepton-ci
        def apply(self, name: str, text: str) -> list[str]:
            raise AssertionError("nothing may be applied")

    d, rel = gate_world(tmp_path)
    d.target = ClusterLike()  # type: ignore[assignment]
    serving(d)
    with pytest.raises(ShadowError, match="cannot mirror requests to lepton-ci's comparator") as e:
        d.shadow(rel)
    assert "how-to/shadow-rollouts/#kubernetes" in e.value.hint
    assert [r.status for r in d.store.list()] == ["deployed"]  # nothing recorded either
