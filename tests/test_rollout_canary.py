"""The canary loop and the deployer's canary decisions, with a scripted two-track target, a
fake clock and the real file store: what each step records, when it aborts, what is left
serving. The podman tracks themselves are in test_canary.py (real pods and nginx)."""

import pytest

from lepton_ci.core.config import DeployConfig
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.deploy.deployer import Deployer, DeployFailed
from lepton_ci.deploy.health import Report
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import FileStore, Probe, history_text
from lepton_ci.rollout.canary import SloResult

pytestmark = pytest.mark.unit
CANARY_URL = "http://127.0.0.1:2"


def image(n):
    return f"r/digits@sha256:{n:064x}"


class TwoTracks:
    """A stable track serving the image last applied, a canary track, and a weight; requests
    are counted as a splitter would (100 per step, split by the weight)."""

    def __init__(self, clock):
        self.clock = clock
        self.stable: str | None = None
        self.canary: str | None = None
        self.weight = 0
        self.counts = {"stable": 0, "canary": 0}
        self.calls: list[tuple] = []
        self.sick: set[str] = set()
        self.broken: set[str] = set()
        self.fail_on_weight: int | None = None
        self.refuse_canary = False
        self.weight_error: int | None = None

    def _image(self, text):
        return next(i for i in map(image, range(1, 50)) if i in text)

    def apply(self, name, text):
        self.stable = self._image(text)
        self.calls.append(("apply", self.stable))
        return []

    def wait(self, text, budget, ready_url):
        if self._image(text) in self.broken:
            raise RolloutFailed("crash loop")
        return 0.0

    def remove(self, name):
        self.stable = None

    def scale_to_zero(self, name):
        self.stable = None

    def apply_canary(self, name, text):
        assert "-canary" in text and "dev.lepton-ci/track: canary" in text
        if self.refuse_canary:
            raise RolloutFailed("a canary needs a revision serving through the splitter")
        self.canary = self._image(text)
        self.counts = {"stable": 0, "canary": 0}
        self.calls.append(("apply_canary", self.canary))
        return []

    def set_weight(self, name, percent, *, mirror=False):
        if percent == self.fail_on_weight:
            raise KeyboardInterrupt
        if percent == self.weight_error:
            raise RolloutFailed("nginx: [emerg] could not reload")
        self.weight = percent
        self.calls.append(("weight", percent))
        return percent

    def canary_url(self, name):
        return CANARY_URL if self.canary else None

    def served(self, name):
        return dict(self.counts)

    def remove_canary(self, name):
        self.calls.append(("remove_canary",))
        self.weight, self.canary = 0, None

    def pass_time(self, seconds):
        self.clock.now += seconds
        self.counts["canary"] += self.weight
        self.counts["stable"] += 100 - self.weight

    def check(self, checks, url):
        who = self.canary if url == CANARY_URL else self.stable
        sick = who in self.sick
        probe = Probe(check="golden /predict", ok=not sick, detail=f"answered by {who}")
        return Report(not sick, [probe], "wrong answer" if sick else "5 probes passed")


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    target = TwoTracks(clock)
    logs: list[str] = []
    judged: list[tuple[str, str]] = []
    breach: dict[str, float] = {}

    def judge(canary, stable):
        judged.append((canary, stable))
        value = breach.get(canary, 0.001)
        return [
            SloResult(
                slo="predict-errors",
                status="breach" if value > 0.01 else "ok",
                canary=value,
                stable=0.001,
                bound="<= 0.01",
            )
        ]

    def make(steps=(10, 50, 100)):
        cfg = DeployConfig.model_validate(
            {
                "target": "kubernetes",
                "lock_timeout": 0.5,
                "environments": {
                    "prod": {
                        "url": "http://127.0.0.1:1",
                        # kubernetes: a split needs a Gateway, or replica counts
                        "rollout": {
                            "strategy": "canary",
                            "steps": list(steps),
                            "interval": 30,
                            "traffic": "replicas",
                        },
                    }
                },
            }
        )
        return Deployer(
            "digits",
            "prod",
            cfg,
            tmp_path,
            target=target,
            store=FileStore(tmp_path / "state"),
            checker=target.check,
            log=logs.append,
            judge=judge,
            sleep=target.pass_time,
            clock=clock,
        )

    return make, target, logs, judged, breach


def release(n):
    return Release("digits", f"v0.1.{n}", image(n), f"d{n}", 0)


def test_the_first_release_has_nothing_to_compare_with(world):
    make, target, _logs, judged, _ = world
    out = make().deploy(release(1))
    assert out.revision.status == "deployed" and out.revision.steps == []
    assert "canary skipped (nothing serves yet to compare with)" in out.notes[0]
    assert target.calls == [("apply", image(1))] and judged == []


def test_a_good_canary_passes_every_step_and_the_stable_track_takes_it(world):
    make, target, _, judged, _ = world
    d = make()
    d.deploy(release(1))
    out = d.deploy(release(2))
    rev = out.revision
    assert rev.status == "deployed" and rev.strategy == "canary"
    assert [(s.effective, s.verdict, s.share) for s in rev.steps] == [
        (10, "passed", 0.1),
        (50, "passed", 0.5),
        (100, "passed", 1.0),
    ]
    assert next(s.served for s in rev.steps) == {"stable": 90, "canary": 10}
    assert judged == [("2", "1")] * 3  # the revision labels the pods carry
    assert target.calls[1:] == [
        ("apply_canary", image(2)),
        ("weight", 10),
        ("weight", 50),
        ("weight", 100),
        ("apply", image(2)),  # the stable track takes it while the canary serves everything
        ("remove_canary",),
    ]
    assert [r.status for r in d.history()] == ["superseded", "deployed"]
    assert "canary 10/50/100% passed" in rev.reason


def test_a_failing_check_aborts_and_the_serving_revision_never_changed(world):
    make, target, _, _, _ = world
    d = make()
    d.deploy(release(1))
    target.sick.add(image(2))
    target.clock.now = 100.0
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(2))
    assert "canary aborted at step 10%: deploy checks against the canary failed" in str(e.value)
    assert "Revision 1 (v0.1.1) serves every request again" in str(e.value)
    assert "Since it started, the canary answered 10 of the 100 requests" in str(e.value)
    assert target.stable == image(1) and target.canary is None and target.weight == 0
    assert ("weight", 50) not in target.calls
    assert target.calls[-2:] == [("weight", 0), ("remove_canary",)]  # no share, then gone
    revs = d.history()
    assert [(r.number, r.status) for r in revs] == [(1, "deployed"), (2, "failed")]
    (step,) = revs[1].steps
    assert step.checks_ok is False and step.verdict == "aborted" and step.share == 0.1
    assert revs[1].probes[0].detail == f"answered by {image(2)}"
    assert e.value.outcome.timings["step_start_to_stable_s"] == 30.0
    assert "step 10%: aborted after 30.0s, canary answered 10.0% of 100 requests" in (
        history_text("prod", revs)
    )


def test_an_slo_breach_per_revision_aborts_with_both_values(world):
    make, _target, _, _, breach = world
    d = make()
    d.deploy(release(1))
    breach["2"] = 0.25
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(2))
    msg = str(e.value)
    assert "step 10%: SLO predict-errors breach: canary 0.25 vs stable 0.001" in msg
    (step,) = d.history()[1].steps
    assert step.checks_ok is True
    assert step.slos[0].canary == 0.25 and step.slos[0].stable == 0.001


def test_a_canary_that_does_not_start_is_removed(world):
    make, target, _, _, _ = world
    d = make()
    d.deploy(release(1))
    target.broken.add(image(2))
    with pytest.raises(DeployFailed, match="canary failed: crash loop"):
        d.deploy(release(2))
    assert target.calls[-1] == ("remove_canary",)
    assert [r.status for r in d.history()] == ["deployed", "failed"]


def test_an_interrupted_canary_is_repaired_before_the_interrupt_is_raised(world):
    make, target, _logs, _, _ = world
    d = make()
    d.deploy(release(1))
    target.fail_on_weight = 50  # Ctrl-C during the second step
    with pytest.raises(KeyboardInterrupt):
        d.deploy(release(2))
    assert target.canary is None and target.weight == 0 and target.stable == image(1)
    revs = d.history()
    assert revs[1].status == "failed" and revs[1].reason.startswith("interrupted")
    # the step that ran before the interruption stays on the record
    assert [(s.effective, s.verdict) for s in revs[1].steps] == [(10, "passed")]
    assert revs[-1].status == "deployed" and revs[-1].version == "v0.1.1"


def test_a_canary_the_target_refuses_fails_the_revision_and_touches_no_weight(world):
    make, target, _, _, _ = world
    d = make()
    d.deploy(release(1))
    target.refuse_canary = True
    with pytest.raises(DeployFailed, match="canary failed: a canary needs a revision serving"):
        d.deploy(release(2))
    assert not any(c[0] == "weight" for c in target.calls)
    assert [r.status for r in d.history()] == ["deployed", "failed"]


def test_a_step_whose_weight_cannot_be_set_fails_the_revision_and_takes_the_canary_away(world):
    """The splitter refusing a step's weight (nginx will not reload) is an abort like any
    other: it used to escape the loop and leave the revision pending, the canary serving."""
    make, target, _, _, _ = world
    d = make()
    d.deploy(release(1))
    target.weight_error = 50
    with pytest.raises(DeployFailed, match=r"could not set the canary's weight to 50%.*reload"):
        d.deploy(release(2))
    assert target.canary is None and target.weight == 0 and target.stable == image(1)
    assert [r.status for r in d.history()] == ["deployed", "failed"]


def test_a_step_says_which_slos_it_could_not_judge():
    """Prometheus down at every step: the how-to says it is said, not silently passed."""
    from lepton_ci.core.revisions import DRIFT_LATER, Step

    down = "Prometheus at http://127.0.0.1:9090 did not answer after 3 tries"
    step = Step(
        weight=10,
        effective=10,
        started_at="",
        seconds=60.0,
        served={"stable": 90, "canary": 10},
        share=0.1,
        slos=[
            SloResult(slo="predict-errors", status="error", bound="<= 0.01", detail=down),
            SloResult(slo="p95", status="ok", canary=0.1, stable=0.1, bound="<= 0.2"),
            SloResult(slo="class-drift", status="no-data", detail=DRIFT_LATER),  # by design
        ],
    )
    assert step.text() == (
        "step 10%: passed after 60.0s, canary answered 10.0% of 100 requests; "
        f"SLO not judged: predict-errors error: {down}"
    )
