"""The deployer's decisions with a scripted target and the real file store: what is recorded,
what is reverted to, under which budget, and what is left serving when things fail.

The targets themselves are exercised against podman (test_deploy.py) and the Kubernetes
emulator (test_k8s_target.py); these tests are fast enough to run once per mutant."""

import pytest

from lepton_ci.core.config import DeployConfig
from lepton_ci.deploy.contract import RolloutFailed
from lepton_ci.deploy.deployer import Deployer, DeployFailed, DeployOutcome
from lepton_ci.deploy.health import Report
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.releases import DeployError, FileStore, Probe

pytestmark = pytest.mark.unit


def image(n):
    return f"r/digits@sha256:{n:064x}"


class ScriptedTarget:
    """Serves the image of the last manifests applied; images in `broken` never roll out,
    images in `sick` roll out and fail their health check."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.serving: str | None = None
        self.broken: set[str] = set()
        self.sick: set[str] = set()

    def apply(self, name, text):
        self.serving = next(i for i in map(image, range(1, 50)) if i in text)
        self.calls.append(("apply", self.serving))
        return []

    def wait(self, text, budget, ready_url):
        self.calls.append(("wait", budget))
        if self.serving in self.broken:
            raise RolloutFailed("crash loop")
        return 0.0

    def remove(self, name):
        self.calls.append(("remove", name))
        self.serving = None

    def scale_to_zero(self, name):
        self.calls.append(("scale-to-zero", name))
        self.serving = None

    def check(self, checks, url):
        sick = self.serving in self.sick
        probes = [Probe(check="POST /predict", ok=not sick, detail=f"served by {self.serving}")]
        return Report(not sick, probes, "500 on /predict" if sick else "2 probes passed")


@pytest.fixture
def world(tmp_path):
    target = ScriptedTarget()
    logs: list[str] = []

    def make(**env):
        cfg = DeployConfig.model_validate(
            {
                "target": "kubernetes",
                "lock_timeout": 0.5,
                "environments": {
                    "prod": {
                        "namespace": "ns",
                        "url": "http://127.0.0.1:1",
                        "rollout_timeout": 7,
                        "rollback_timeout": 3,
                        **env,
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
        )

    return make, target, logs


def release(n):
    return Release("digits", f"v0.1.{n}", image(n), f"d{n}", 0)


def table(d):
    return [(r.number, r.status, r.version, r.rollback_of) for r in d.history()]


def test_a_good_release_supersedes_the_one_before(world):
    make, target, _ = world
    d = make()
    out = d.deploy(release(1))
    assert out.revision.status == "deployed" and out.reverted_to is None and not out.removed
    d.deploy(release(2))
    assert table(d) == [(1, "superseded", "v0.1.1", None), (2, "deployed", "v0.1.2", None)]
    assert target.calls == [("apply", image(1)), ("wait", 7), ("apply", image(2)), ("wait", 7)]
    assert d.history()[1].description == "deploy v0.1.2" and d.history()[1].finished_at


@pytest.mark.parametrize(
    ("fault", "why"), [("broken", "rollout failed: crash loop"), ("sick", "health check failed")]
)
def test_a_failing_release_is_reverted_to_the_previous_as_a_new_revision(world, fault, why):
    make, target, logs = world
    d = make()
    d.deploy(release(1))
    getattr(target, fault).add(image(2))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(2))
    assert table(d) == [
        (1, "superseded", "v0.1.1", None),
        (2, "failed", "v0.1.2", None),
        (3, "deployed", "v0.1.1", 1),
    ]
    assert d.history()[1].reason.startswith(why)
    assert d.history()[2].description == "rollback to 1"
    assert target.serving == image(1)
    assert target.calls[-4:] == [("apply", image(2)), ("wait", 7), ("apply", image(1)), ("wait", 3)]
    out = e.value.outcome
    assert out.reverted_to is not None and out.reverted_to.number == 3
    assert "revision 3 serves v0.1.1 again" in str(e.value)
    assert logs[-1].startswith(why) and logs[-1].endswith("reverting to revision 1 (v0.1.1)")


def test_a_revert_that_fails_too_says_nothing_healthy_serves(world):
    make, target, _ = world
    d = make()
    d.deploy(release(1))
    target.broken |= {image(1), image(2)}
    with pytest.raises(DeployError, match=r"reverting to revision 1 \(v0.1.1\) also failed") as e:
        d.deploy(release(2))
    assert "Nothing healthy is serving" in str(e.value)
    first, _, again = d.history()
    assert [r.status for r in d.history()] == ["deployed", "failed", "failed"]
    # the revert never reached its checks: it records none, not the copied revision's
    assert first.probes and again.probes == []


@pytest.mark.parametrize(
    ("setting", "done", "call"),
    [("remove", "removed", "remove"), ("scale-to-zero", "scaled to zero", "scale-to-zero")],
)
def test_a_failing_first_release_leaves_nothing_serving(world, setting, done, call):
    make, target, _ = world
    d = make(on_first_failure=setting)
    target.broken.add(image(1))
    with pytest.raises(DeployError, match=f"so it was {done}; nothing serves"):
        d.deploy(release(1))
    assert table(d) == [(1, "failed", "v0.1.1", None)]
    assert target.calls[-1] == (call, "digits-prod") and target.serving is None


def test_dry_run_renders_and_changes_nothing(world):
    make, target, _ = world
    d = make()
    out = d.deploy(release(1), dry_run=True)
    assert out.revision.number == 1 and image(1) in out.revision.manifests
    assert target.calls == [] and d.history() == []


def test_an_interrupted_deploy_is_repaired_by_the_next_command(world):
    make, target, logs = world
    d = make()
    d.deploy(release(1))
    d.deploy(release(2))
    pending = d.history()[1].model_copy(update={"number": 3, "version": "v0.1.3"})
    pending.status = "pending"
    d.store.save(pending)
    out = d.deploy(release(4))
    assert table(d) == [
        (1, "superseded", "v0.1.1", None),
        (2, "superseded", "v0.1.2", None),
        (3, "failed", "v0.1.3", None),
        (4, "superseded", "v0.1.2", 2),
        (5, "deployed", "v0.1.4", None),
    ]
    assert d.history()[2].reason.startswith("interrupted")
    assert out.notes == ["repaired: restored revision 2 as 4"]
    assert "restoring revision 2 (v0.1.2)" in logs[0]
    assert ("wait", 3) in target.calls  # the repair runs under the rollback budget


def test_an_interrupted_first_deploy_is_removed(world):
    make, target, logs = world
    d = make()
    d.deploy(release(1))
    rev = d.history()[0]
    rev.status = "pending"
    d.store.save(rev)
    out = DeployOutcome(revision=None)  # type: ignore[arg-type]
    assert d.repair(out) is None and out.removed
    assert [r.status for r in d.history()] == ["failed"]
    assert ("remove", "digits-prod") in target.calls
    assert "nothing healthy came before it" in logs[0]


def test_rollback_goes_to_the_newest_earlier_revision_of_another_image(world):
    make, _, _ = world
    d = make()
    for n in (1, 2, 3):
        d.deploy(release(n))
    out = d.rollback()
    assert (out.revision.number, out.revision.version, out.revision.rollback_of) == (4, "v0.1.2", 2)
    assert [r.status for r in d.history()] == [
        "superseded",
        "superseded",
        "rolled-back",
        "deployed",
    ]
    # again: 4 serves v0.1.2, so 2 is no candidate (same image); the rolled-back 3 is
    assert d.rollback().revision.version == "v0.1.3"


def test_rollback_to_a_named_revision_only_if_it_was_healthy(world):
    make, target, _ = world
    d = make()
    d.deploy(release(1))
    target.broken.add(image(2))
    with pytest.raises(DeployFailed):
        d.deploy(release(2))
    with pytest.raises(DeployError, match="revision 2 is not a healthy revision"):
        d.rollback(to=2)
    with pytest.raises(DeployError, match="revision 9 is not a healthy revision"):
        d.rollback(to=9)
    assert d.rollback(to=1).revision.rollback_of == 1


def test_rollback_with_nothing_earlier_is_refused(world):
    make, _, _ = world
    d = make()
    with pytest.raises(DeployError, match="no earlier healthy revision"):
        d.rollback()
    d.deploy(release(1))
    with pytest.raises(DeployError, match="no earlier healthy revision"):
        d.rollback()


def test_revert_puts_the_previous_back_under_the_rollback_budget(world):
    make, target, _ = world
    d = make()
    d.deploy(release(1))
    d.deploy(release(2))
    with pytest.raises(DeployError, match=r"revision 1 no longer serves \(revision 2 does\)"):
        d.revert(1, "errors breached")
    out = d.revert(2, "errors breached")
    assert out.revision.description == "rollback to 1 (watch)"
    assert out.reverted_to is out.revision
    assert table(d) == [
        (1, "superseded", "v0.1.1", None),
        (2, "failed", "v0.1.2", None),
        (3, "deployed", "v0.1.1", 1),
    ]
    assert d.history()[1].reason == "errors breached"
    assert target.calls[-1] == ("wait", 3)
    # seconds from the verdict to a healthy revert: the revert's own rollout is part of them
    assert out.timings["verdict_to_healthy_s"] >= out.timings["revert_s"] >= 0


def test_revert_when_nothing_serves_is_refused(world):
    make, _, _ = world
    with pytest.raises(DeployError, match=r"revision 1 no longer serves \(nothing does\)"):
        make().revert(1, "x")


def test_an_unknown_environment_is_refused(world, tmp_path):
    make, target, _ = world
    d = make()
    with pytest.raises(DeployError, match="no deploy environment `qa`; declared: prod"):
        Deployer("digits", "qa", d.config, tmp_path, target=target, store=d.store)


def test_rollback_when_nothing_serves_takes_the_newest_healthy(world):
    make, target, _ = world
    d = make()
    d.deploy(release(1))
    d.deploy(release(2))
    gone = d.history()[1]
    gone.status = "failed"  # e.g. marked by hand after an outage: nothing is deployed
    d.store.save(gone)
    out = d.rollback()
    assert (out.revision.version, out.revision.rollback_of) == ("v0.1.1", 1)
    assert target.serving == image(1)


def test_timings_are_the_seconds_each_step_took(world):
    make, target, _ = world
    d = make()
    out = d.deploy(release(1))
    assert 0 <= out.timings["rollout_s"] < 60
    target.sick.add(image(2))
    with pytest.raises(DeployFailed) as e:
        d.deploy(release(2))
    t = e.value.outcome.timings
    assert all(0 <= t[k] < 60 for k in ("rollout_s", "revert_s", "verdict_to_healthy_s"))


def test_a_deploy_waits_for_the_one_running_and_says_so(world, tmp_path):
    """The release lock is the queue of the workflows a person starts (no GitHub concurrency
    group, where a newer waiting job replaces the older): a second deploy or rollback waits
    for the running one and says whom it waits for, rather than failing at once."""
    import threading

    make, _, logs = world
    d = make()
    d.config = d.config.model_copy(update={"lock_timeout": 120})
    d.deploy(release(1))
    d.deploy(release(2))
    held, release_it = threading.Event(), threading.Event()

    def other_deploy():
        with FileStore(tmp_path / "state").lock(0):
            held.set()
            release_it.wait()

    other = threading.Thread(target=other_deploy)
    other.start()
    held.wait()

    def log(text):
        logs.append(text)
        release_it.set()  # the other deploy ends once this one waits for it

    d.log = log
    try:
        out = d.rollback()
    finally:
        release_it.set()
        other.join()
    (waited,) = [x for x in logs if "waiting up to" in x]
    assert "another deploy or rollback of this environment is running (lepton-ci deploy, pid" in (
        waited
    )
    assert "waiting up to 120 s for it (`deploy.lock_timeout`)" in waited
    assert out.revision.version == "v0.1.1" and out.revision.status == "deployed"


def test_the_default_wait_covers_a_deploy_and_its_revert():
    """60 s was shorter than one rollout budget, so a queued rollback failed instead."""
    cfg = DeployConfig.model_validate({"environments": {"prod": {"url": "http://x"}}})
    env = cfg.environments["prod"]
    assert cfg.lock_timeout >= env.rollout_timeout + env.rollback_timeout + 60
