"""Promotion that looks at what happened: `stages.prod.requires: {stage, soak, no_breach,
min_requests}` judged from the staging environment's revision history.

Real git repositories with a bare origin (the rule is read from origin/main), histories
written through the real FileStore (and the kmock-backed ConfigMap store), the real deployer
and `watch` rounds against a real Prometheus for the request counts. Time is moved by handing
`promote` a clock, never by sleeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lepton_ci.core.context import Context
from lepton_ci.core.errors import ConfigError
from lepton_ci.core.revisions import Breach, Revision
from lepton_ci.deploy.history import reader
from lepton_ci.deploy.releases import FileStore
from lepton_ci.versions import operations, soak
from lepton_ci.versions.soak import SoakRefused
from tests.conftest import commit_all, git

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 12, 8, 14, 0, 0, tzinfo=UTC)

POLICY = """\
stages:
  staging: {}
  prod:
    requires: {stage: staging, soak: 48h, no_breach: true, min_requests: 1000}
"""
DEPLOY = """\
    deploy:
      target: podman
      environments:
        staging: {host_port: 18997}
        prod: {host_port: 18998}
"""


def set_policy(repo, policy):
    cfg = repo / "lepton.yaml"
    text = cfg.read_text()
    cfg.write_text(text[: text.index("stages:")] + policy)


@pytest.fixture
def repo(toy_repo, cli, tmp_path):
    """v0.1.0 registered and in staging under POLICY, all pushed to a bare origin."""
    text = (toy_repo / "lepton.yaml").read_text()
    (toy_repo / "lepton.yaml").write_text(text.replace("    gates:\n", DEPLOY + "    gates:\n"))
    set_policy(toy_repo, POLICY)
    commit_all(toy_repo, "chore: soak policy")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    assert cli("promote", "toy", "v0.1.0", "staging")[0] == 0
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(toy_repo, "remote", "add", "origin", str(origin))
    git(toy_repo, "push", "-q", "origin", "main", "--tags")
    git(toy_repo, "remote", "set-head", "origin", "main")
    return toy_repo


def store(repo, env="staging") -> FileStore:
    ctx = Context.load(cwd=repo)
    _, model = ctx.cfg.model("toy")
    assert model.deploy is not None
    return FileStore(ctx.paths.deploy_state(model.deploy.state_dir, "toy", env))


def at(hours: float, base: datetime = NOW) -> str:
    """A timestamp `hours` before NOW (or before `base`: the real clock, for the CLI)."""
    return (base - timedelta(hours=hours)).isoformat(timespec="seconds")


def revision(
    number, version="v0.1.0", *, served_h, ended_h=None, status=None, base=NOW, **kw
) -> Revision:
    return Revision(
        number=number,
        env="staging",
        model="toy",
        version=version,
        image=f"r/toy@sha256:{number:064x}",
        record_digest="d",
        manifests="",
        status=status or ("deployed" if ended_h is None else "superseded"),
        created_at=at(served_h + 0.01, base),
        finished_at=at(served_h, base),
        ended_at=None if ended_h is None else at(ended_h, base),
        **kw,
    )


def promote(repo, now=NOW, version="v0.1.0", stage="prod"):
    ctx = Context.load(cwd=repo)
    return operations.promote(ctx, "toy", version, stage, now=lambda: now, history=reader(ctx))


def prod_tags(repo):
    return git(repo, "tag", "-l", "toy#prod#*").split()


# -- refusals ----------------------------------------------------------------------------------


def test_too_short_a_soak_is_refused_with_the_time_it_can_pass(repo):
    # served 20h 5m so far, and counted enough requests
    store(repo).save(revision(1, served_h=20 + 5 / 60, requests=5000.0, requests_at=at(0.1)))
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    msg = e.value.message
    assert "served 20h 5m of 48h in staging" in msg
    assert "27h 55m more serving in staging" in msg
    assert "Can pass at 2026-12-09T17:55:00Z if no breach is recorded" in msg
    assert "requests" not in msg.split("Missing:")[1]  # 5000 of 1000: not missing
    assert prod_tags(repo) == []
    # an hour later it is an hour closer, and the time it can pass stays put
    with pytest.raises(SoakRefused) as e:
        promote(repo, NOW + timedelta(hours=1))
    assert "served 21h 5m of 48h" in e.value.message
    assert "Can pass at 2026-12-09T17:55:00Z" in e.value.message
    # and at that time it passes
    done = promote(repo, datetime(2026, 12, 9, 17, 55, tzinfo=UTC))
    assert done.stage == "prod" and prod_tags(repo) == [done.tag]
    assert done.soak_verdict is not None and done.soak_verdict.evidence.served_s == 48 * 3600


def test_the_cli_refuses_with_exit_1_and_says_what_is_missing(repo, cli):
    store(repo).save(revision(1, served_h=3, requests=312.0, requests_at=at(0.2)))
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1
    assert "of 48h in staging" in err and "312 of 1000 requests" in err
    assert "688 more requests (312 of 1000, counted by `watch` at" in err
    assert "if no breach is recorded and 688 more requests are counted" in err
    assert "Can pass at " in err and prod_tags(repo) == []


def test_a_recorded_breach_is_refused_for_good_naming_the_slo(repo):
    breach = Breach(slo="error-rate", value=0.2, bound="<= 0.01", at=at(30), action="alert")
    store(repo).save(
        revision(1, served_h=100, requests=9000.0, requests_at=at(0.1), breaches=[breach])
    )
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    msg = e.value.message
    assert "SLO breaches: error-rate (revision 1, " in msg
    assert "no SLO breach: `watch` recorded 1 in staging" in msg
    assert "never passes" in msg and "an pass at" not in msg
    # no waiting helps
    with pytest.raises(SoakRefused):
        promote(repo, NOW + timedelta(days=30))


def test_a_breach_on_an_earlier_revision_of_the_version_still_counts(repo):
    """Reverted by watch (failed, with its breach), then deployed again: the same bytes."""
    s = store(repo)
    breach = Breach(slo="latency", value=2.0, bound="<= 0.5", at=at(80), action="rollback")
    s.save(revision(1, served_h=90, ended_h=80, status="failed", breaches=[breach]))
    s.save(revision(2, served_h=60, requests=5000.0, requests_at=at(0.1)))
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    assert "latency (revision 1," in e.value.message


def test_too_few_requests_are_refused(repo):
    store(repo).save(revision(1, served_h=50, requests=999.0, requests_at=at(0.5)))
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    msg = e.value.message
    assert "999 of 1000 requests" in msg and "1 more requests" in msg
    assert "more serving" not in msg and "an pass at" not in msg


def test_requests_never_counted_say_how_to_count_them(repo):
    store(repo).save(revision(1, served_h=50))
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    assert "none were counted in staging; `lepton-ci watch staging` counts them" in e.value.message


def test_all_met_passes_adding_up_every_revision_of_the_version(repo):
    s = store(repo)
    # another version's time in staging is not this one's
    s.save(revision(1, "v0.0.9", served_h=200, ended_h=60, requests=10**6, requests_at=at(61)))
    s.save(revision(2, served_h=60, ended_h=30, requests=600.0, requests_at=at(31)))
    s.save(revision(3, "v0.0.9", served_h=30, ended_h=25, status="rolled-back"))
    # a deploy that failed its checks never served: its time does not count
    s.save(revision(4, served_h=25, status="failed", requests=None))
    s.save(revision(5, served_h=20, requests=500.0, requests_at=at(0.1)))
    done = promote(repo)
    assert prod_tags(repo) == [done.tag]
    assert done.soak_verdict is not None
    ev = done.soak_verdict.evidence
    assert ev.served_s == (30 + 20) * 3600 and ev.requests == 1100 and ev.revisions == [2, 5]


def test_a_version_not_serving_now_says_to_deploy_it_to_go_on(repo):
    s = store(repo)
    s.save(revision(1, served_h=30, ended_h=10, requests=2000.0, requests_at=at(11)))
    s.save(revision(2, "v0.0.9", served_h=10))
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    assert "served 20h of 48h" in e.value.message
    assert "does not serve in staging now: deploy it there" in e.value.message
    assert "an pass at" not in e.value.message


def test_a_history_that_cannot_be_read_is_a_refusal_saying_what_to_configure(repo):
    """A fresh runner has no podman state: that is said, never read as a pass or as 'none'."""
    with pytest.raises(SoakRefused) as e:
        promote(repo)
    assert "no deploy history of `staging` on this machine" in e.value.message
    assert "run the promotion where `staging` is deployed" in (e.value.hint or "")


def test_the_short_form_still_only_asks_for_the_stage(repo, cli):
    set_policy(repo, "stages:\n  staging: {}\n  prod: {requires: staging}\n")
    commit_all(repo, "chore: short form")
    git(repo, "push", "-q", "origin", "main")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")  # no history anywhere: not asked
    assert code == 0, err
    assert len(prod_tags(repo)) == 1


def test_the_required_stage_is_still_checked_first(repo, cli):
    (repo / "x.py").write_text("# a change\n")
    commit_all(repo, "fix: something")
    git(repo, "push", "-q", "origin", "main")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    code, _, err = cli("promote", "toy", "v0.1.1", "prod")
    assert code == 1 and "must be in stage `staging` before `prod`" in err


# -- the rule and the history's place come from the protected ref --------------------------------


def test_a_branch_that_weakens_the_soak_is_ignored(repo, cli):
    store(repo).save(revision(1, served_h=1, requests=5.0, requests_at=at(0.1)))
    git(repo, "checkout", "-q", "-b", "weaker")
    set_policy(repo, POLICY.replace("soak: 48h", "soak: 1s").replace("1000", "1"))
    commit_all(repo, "chore: soak for a second")
    git(repo, "push", "-q", "origin", "weaker")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1 and "of 48h in staging" in err and "5 of 1000 requests" in err
    assert "differs from the one on origin/main" in err
    assert prod_tags(repo) == []


def test_a_branch_cannot_point_the_check_at_a_history_it_wrote(repo, cli):
    """`deploy.state_dir` comes from the protected ref too: a committed folder of made-up
    revisions on a branch is not the staging history."""
    fake = repo / "fake-history" / "toy" / "staging"
    FileStore(fake).save(revision(1, served_h=500, requests=10**6, requests_at=at(0.1)))
    git(repo, "checkout", "-q", "-b", "forged")
    text = (repo / "lepton.yaml").read_text()
    (repo / "lepton.yaml").write_text(
        text.replace("target: podman\n", "target: podman\n      state_dir: fake-history\n")
    )
    commit_all(repo, "chore: a history of my own")
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 1 and "no deploy history of `staging` on this machine" in err
    assert prod_tags(repo) == []


def test_accept_tag_refuses_and_deletes_a_stage_tag_pushed_too_early(repo, cli):
    real = datetime.now(UTC)
    store(repo).save(revision(1, served_h=2, base=real, requests=50.0, requests_at=at(0.1)))
    git(repo, "tag", "-a", "-m", "by hand", "toy#prod#9", "toy@v0.1.0")
    git(repo, "push", "-q", "origin", "toy#prod#9")
    code, _, err = cli("accept-tag", "toy#prod#9")
    assert code == 1 and "served 2h of 48h in staging" in err and "50 of 1000 requests" in err
    assert "the tag toy#prod#9 was deleted again" in err
    assert prod_tags(repo) == [] and git(repo / ".." / "origin.git", "tag", "-l", "toy#prod*") == ""


def test_accept_tag_passes_once_the_soak_is_met(repo):
    store(repo).save(revision(1, served_h=49, requests=1000.0, requests_at=at(0.1)))
    git(repo, "tag", "-a", "-m", "by hand", "toy#prod#9", "toy@v0.1.0")
    ctx = Context.load(cwd=repo)
    res = operations.accept_pushed_tag(ctx, "toy#prod#9", now=lambda: NOW, history=reader(ctx))
    assert res is not None and res.stage == "prod" and res.deploy
    assert prod_tags(repo) == ["toy#prod#9"]


# -- config ------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("{stage: staging, soak: 48 hours}", "`stages.prod.requires.soak`: `48 hours` is not a"),
        ("{stage: staging, soak: 2w}", "`stages.prod.requires.soak`: `2w` is not a duration"),
        ("{stage: staging, soak: 48}", "`stages.prod.requires.soak`"),
        ("{stage: staging, min_requests: -1}", "`stages.prod.requires.min_requests`"),
        ("{stage: staging, soke: 1h}", "`stages.prod.requires.soke`: unknown key; did you mean"),
        ("{soak: 1h}", "`stages.prod.requires.stage`: required key is missing"),
        ("{stage: staging, soak: 99999999999d}", "longer than a year"),
        ("{stage: staging, soak: 1h30}", "is not a duration"),
        ("{stage: qa, soak: 1h}", "stage `prod` requires `qa`, which is not a declared stage"),
    ],
)
def test_a_bad_rule_is_a_config_error_naming_the_field(tmp_path, rule, needle):
    from lepton_ci.core import config

    text = (
        "models:\n  toy:\n    evaluate: 'true'\n    metrics: [m.json]\n"
        f"stages:\n  staging: {{}}\n  prod:\n    requires: {rule}\n"
    )
    with pytest.raises(ConfigError) as e:
        config.parse(text, "lepton.yaml")
    assert needle in e.value.message, e.value.message
    line = 5 if "qa" in rule else 8  # the stage's own keys, or `stages` for a cross-check
    assert e.value.message.startswith(f"lepton.yaml:{line}: ")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20), ("30m", 1800), ("48h", 172800), ("2d", 172800), ("1h30m", 5400)],
)
def test_durations(text, seconds):
    from lepton_ci.core.config import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.unit
def test_a_cycle_through_the_mapping_form_is_still_refused():
    from lepton_ci.core import config

    text = (
        "models:\n  toy:\n    evaluate: 'true'\nstages:\n  a: {requires: {stage: b, soak: 1h}}\n"
        "  b: {requires: a}\n"
    )
    with pytest.raises(ConfigError, match="cycle"):
        config.parse(text, "lepton.yaml")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (125, "2m 5s"), (72300, "20h 5m"), (100500, "27h 55m")],
)
def test_spans_read_as_a_person_writes_them(seconds, shown):
    assert soak.span(seconds) == shown


def test_the_verdict_is_json(repo):
    store(repo).save(revision(1, served_h=50, requests=2000.0, requests_at=at(0.1)))
    done = promote(repo)
    assert done.soak_verdict is not None
    shown = json.loads(json.dumps(done.soak_verdict.evidence.as_dict()))
    assert shown["served_seconds"] == 50 * 3600 and shown["requests"] == 2000


# -- the evidence as `watch` records it, against a real Prometheus ---------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from tests.support.prometheus import scraping

    with scraping(tmp_path_factory.mktemp("prom")) as server:
        yield server


WATCH = """\
          watch:
            prometheus: {url}
            for: 1
            on_breach: alert
            requests: 'sum(increase(lepton_test_predictions_total[$window]))'
            slos:
              - {{name: errors, query: '{query}', max: 0.01}}
"""


def watched(repo, prom, query):
    """The work tree's staging gets a watch; the real deployer deploys v0.1.0 there, as if its
    deploy finished 49 hours ago (so the request window reaches back past every scrape)."""
    from lepton_ci.core.prometheus import Prometheus
    from lepton_ci.deploy.deployer import Deployer
    from lepton_ci.deploy.health import Report
    from lepton_ci.deploy.manifests import Release
    from lepton_ci.watch.operation import WatchOperation

    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "        staging: {host_port: 18997}\n",
            "        staging:\n          host_port: 18997\n"
            + WATCH.format(query=query, url=prom.url),
        )
    )
    ctx = Context.load(cwd=repo)
    _, model = ctx.cfg.model("toy")
    assert model.deploy is not None

    class Nowhere:
        def apply(self, name, text):
            return []

        def wait(self, text, budget, ready_url):
            return 0.0

        def remove(self, name):
            pass

        def scale_to_zero(self, name):
            pass

    s = store(repo)
    dep = Deployer(
        "toy",
        "staging",
        model.deploy,
        repo,
        target=Nowhere(),
        store=s,
        checker=lambda checks, url: Report(True, [], "ok"),
        log=lambda m: None,
    )
    dep.deploy(Release("toy", "v0.1.0", "r/toy@sha256:" + "1" * 64, "d", 0))
    rev = s.list()[-1]
    rev.finished_at = at(49, datetime.now(UTC))
    s.save(rev)
    op = WatchOperation(ctx, "staging", deployer=dep, prometheus=Prometheus(prom.url))
    return op, s


def test_watch_counts_the_requests_that_promote_then_weighs(repo, prom):
    # more than the stand-in's counter will ever reach, whenever this test runs
    set_policy(repo, POLICY.replace("min_requests: 1000", "min_requests: 1000000000"))
    commit_all(repo, "chore: a lot of traffic")
    git(repo, "push", "-q", "origin", "main")
    op, s = watched(repo, prom, "vector(0)")  # the work tree's watch: main names no Prometheus
    r = op.run(once=True)
    rev = s.list()[-1]
    assert r.status == "healthy" and r.requests is not None and r.requests > 0
    assert rev.requests == r.requests and rev.requests_at == r.at
    assert "window" not in op.requests_query(3600) and "[3600s]" in op.requests_query(3600)
    # Prometheus agrees on the count (it only grows between the two questions)
    again = sum(x.value for x in op.prometheus.query(op.requests_query(49 * 3600 + 60)))
    assert again >= r.requests
    with pytest.raises(SoakRefused) as e:
        promote(repo, datetime.now(UTC))
    msg = e.value.message
    assert f"{r.requests:.0f} of 1000000000 requests" in msg and "counted by `watch` at" in msg
    assert "more serving" not in msg  # 49h served of 48h


def test_a_breach_watch_records_is_named_by_the_refusal(repo, prom):
    from lepton_ci.core.errors import SLOBreached

    op, s = watched(repo, prom, "vector(0.5)")
    with pytest.raises(SLOBreached):
        op.run(once=True)
    assert [b.slo for b in s.list()[-1].breaches] == ["errors"]
    with pytest.raises(SoakRefused) as e:
        promote(repo, datetime.now(UTC))
    assert "SLO breaches: errors (revision 1, " in e.value.message
    assert "never passes" in e.value.message


def test_a_request_count_that_cannot_be_made_is_said_and_never_acted_on(repo, prom):
    op, s = watched(repo, prom, "vector(0)")
    op.cfg = op.cfg.model_copy(update={"requests": "sum(rate(nope[$window]) +)"})
    r = op.run(once=True)
    assert r.status == "healthy" and r.requests is None and "parse error" in r.requests_note
    assert "requests served: not counted (" in r.text()
    assert s.list()[-1].requests is None


# -- the history kept in the cluster -------------------------------------------------------------

K8S = """\
    deploy:
      target: kubernetes
      environments:
        staging: {namespace: soak-staging, url: "http://127.0.0.1:9"}
        prod: {namespace: soak-prod, url: "http://127.0.0.1:9"}
"""


@pytest.fixture
def k8s_repo(toy_repo, cli, tmp_path):
    text = (toy_repo / "lepton.yaml").read_text()
    (toy_repo / "lepton.yaml").write_text(text.replace("    gates:\n", K8S + "    gates:\n"))
    set_policy(toy_repo, POLICY)
    commit_all(toy_repo, "chore: soak policy")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    assert cli("promote", "toy", "v0.1.0", "staging")[0] == 0
    return toy_repo


def test_the_history_in_configmaps_is_read_where_the_protected_ref_says(k8s_repo):
    from lepton_ci.deploy.kubernetes import ConfigMapStore
    from lepton_ci.deploy.manifests import dns_name
    from tests.support.kube import Cluster

    cluster = Cluster()
    try:
        cms = ConfigMapStore(cluster.api, "soak-staging", dns_name("toy", "staging"))
        cms.save(revision(1, served_h=30, requests=4000.0, requests_at=at(0.1)))
        ctx = Context.load(cwd=k8s_repo)

        read = reader(ctx, api_client=cluster.api)

        with pytest.raises(SoakRefused) as e:
            operations.promote(ctx, "toy", "v0.1.0", "prod", now=lambda: NOW, history=read)
        assert "served 30h of 48h in staging" in e.value.message
        cms.save(revision(2, served_h=20, requests=1.0, requests_at=at(0.1)))
        done = operations.promote(ctx, "toy", "v0.1.0", "prod", now=lambda: NOW, history=read)
        assert done.soak_verdict is not None and done.soak_verdict.evidence.revisions == [1, 2]
    finally:
        cluster.close()


def test_no_cluster_credentials_is_a_refusal_saying_what_to_configure(k8s_repo, tmp_path):
    ctx = Context.load(cwd=k8s_repo)
    ctx.env = {**ctx.env, "KUBECONFIG": str(tmp_path / "none"), "KUBERNETES_SERVICE_HOST": ""}
    with pytest.raises(SoakRefused) as e:
        operations.promote(ctx, "toy", "v0.1.0", "prod", now=lambda: NOW, history=reader(ctx))
    assert "cannot read the deploy history of `staging`" in e.value.message
    assert "nothing is promoted" in e.value.message
    assert "ConfigMaps of namespace `soak-staging`" in (e.value.hint or "")


# -- the approval: the candidate beside what serves now -------------------------------------------


def test_the_promote_summary_puts_the_candidate_beside_the_serving_version(repo, cli, gh_files):
    real = datetime.now(UTC)
    s = store(repo)
    s.save(revision(1, served_h=60, ended_h=10, base=real, requests=4000.0, requests_at=at(11)))
    code, _, err = cli("promote", "toy", "v0.1.0", "prod")
    assert code == 0, err
    prod = store(repo, "prod")
    prod.save(revision(1, served_h=9, base=real, requests=777.0, requests_at=at(0.1, real)))
    (repo / "x.py").write_text("# a change\n")
    commit_all(repo, "fix: something")
    git(repo, "push", "-q", "origin", "main")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    assert cli("promote", "toy", "v0.1.1", "staging")[0] == 0
    s.save(revision(2, "v0.1.1", served_h=10, base=real, requests=1500.0, requests_at=at(0.1)))
    gh_files["summary"].write_text("")
    code, _, err = cli("promote", "toy", "v0.1.1", "prod")
    assert code == 1 and "served 10h of 48h in staging" in err
    s.save(revision(2, "v0.1.1", served_h=50, base=real, requests=1500.0, requests_at=at(0.1)))
    gh_files["summary"].write_text("")
    code, out, err = cli("promote", "toy", "v0.1.1", "prod", "--json")
    assert code == 0, err
    shown = json.loads(out)["soak"]
    assert shown["env"] == "staging" and shown["requests"] == 1500 and shown["serving"]
    table = gh_files["summary"].read_text()
    assert "v0.1.1 for `prod`, beside what serves there now (v0.1.0)" in table
    assert "| version | v0.1.1 | v0.1.0 |" in table
    assert "| gates | pass | pass |" in table
    assert "| accuracy | " in table
    assert "| served | 50h in staging (serving now) | 9h in prod (serving now) |" in table
    assert "| requests | 1500 | 777 |" in table
    assert "| SLO breaches | none | none |" in table


@pytest.mark.unit
def test_the_approval_table_escapes_what_it_shows():
    from lepton_ci.versions import approval

    hostile = approval.Side("v1|<b>x</b>", None, "staging", None, "no | <script>alert(1)</script>")
    table = approval.markdown("prod", hostile, None)
    assert "<script>" not in table and "<b>" not in table
    assert "v1\\|" in table and "nothing yet" in table


def test_the_version_page_puts_the_candidate_beside_each_stage_s_version(repo, cli):
    """v0.1.0 serves prod (with a breach whose recorded name is markup), v0.1.1 soaks in
    staging: v0.1.1's page shows both, every value escaped."""
    real = datetime.now(UTC)
    s = store(repo)
    s.save(revision(1, served_h=60, ended_h=10, base=real, requests=4000.0, requests_at=at(11)))
    assert cli("promote", "toy", "v0.1.0", "prod")[0] == 0
    breach = Breach(slo="<script>x</script>", value=1, bound="<= 0", at=at(1), action="alert")
    store(repo, "prod").save(revision(1, served_h=9, base=real, breaches=[breach]))
    (repo / "x.py").write_text("# a change\n")
    commit_all(repo, "fix: something")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    assert cli("promote", "toy", "v0.1.1", "staging")[0] == 0
    s.save(revision(2, "v0.1.1", served_h=10, base=real, requests=1500.0, requests_at=at(0.1)))
    code, _, err = cli("site")
    assert code == 0, err
    page = (repo / "_site" / "models" / "toy" / "v0.1.1.html").read_text()
    assert "v0.1.1 beside v0.1.0, which serves in prod now" in page
    assert "<tr><th>served</th><td>10h in staging (serving now)</td>" in page
    assert "<td>9h in prod (serving now)</td>" in page
    assert "<tr><th>requests</th><td>1500</td><td>not counted</td></tr>" in page
    assert "&lt;script&gt;x&lt;/script&gt; (revision 1," in page and "<script>x" not in page
    # the version serving prod has nothing to be put beside there
    assert "beside v0.1.0" not in (repo / "_site/models/toy/v0.1.0.html").read_text()


def test_the_deployer_records_when_each_revision_stopped_serving(tmp_path):
    """Superseded, rolled back and reverted by watch: each says when it stopped; a revert by
    watch keeps when the revision began to serve, which its soak is counted from."""
    from lepton_ci.core import config
    from lepton_ci.deploy.deployer import Deployer
    from lepton_ci.deploy.health import Report
    from lepton_ci.deploy.manifests import Release

    class Nowhere:
        def apply(self, name, text):
            return []

        def wait(self, text, budget, ready_url):
            return 0.0

        def remove(self, name):
            pass

        def scale_to_zero(self, name):
            pass

    deploy = config.DeployConfig.model_validate({"environments": {"staging": {"host_port": 1}}})
    s = FileStore(tmp_path / "state")
    dep = Deployer(
        "toy",
        "staging",
        deploy,
        tmp_path,
        target=Nowhere(),
        store=s,
        checker=lambda checks, url: Report(True, [], "ok"),
        log=lambda m: None,
    )
    for n in (1, 2, 3):
        dep.deploy(Release("toy", f"v0.1.{n}", f"r/toy@sha256:{n:064x}", "d", 0))
    revs = s.list()
    assert [r.status for r in revs] == ["superseded", "superseded", "deployed"]
    assert revs[0].ended_at and revs[1].ended_at and revs[2].ended_at is None
    assert revs[0].ended_at >= (revs[1].finished_at or "")
    dep.rollback()
    revs = s.list()
    assert revs[2].status == "rolled-back" and revs[2].ended_at
    assert revs[3].rollback_of == 2 and revs[3].ended_at is None and revs[3].requests is None
    revs[3].finished_at = began = "2026-01-01T00:00:00+00:00"
    s.save(revs[3])
    dep.revert(4, "SLO breached after release: errors")
    bad = s.list()[3]
    assert bad.status == "failed" and bad.finished_at == began and bad.ended_at
    ev = soak.evidence(s.list(), "staging", "v0.1.2", datetime.now(UTC))
    assert ev.revisions == [2, 4] and ev.served_s > 300 * 24 * 3600


# -- counting at promotion, from Prometheus --------------------------------------------------------

COUNTED = """\
stages:
  staging: {}
  prod:
    requires: {stage: staging, soak: 48h, no_breach: true, min_requests: 100}
"""


def counted_repo(repo, url):
    """main's staging names a Prometheus and the requests query (the protected ref's, as
    every rule); no `watch` ever counted anything."""
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "        staging: {host_port: 18997}\n",
            "        staging:\n          host_port: 18997\n"
            + WATCH.format(query="vector(0)", url=url),
        )
    )
    set_policy(repo, COUNTED)
    commit_all(repo, "chore: count at promotion")
    git(repo, "push", "-q", "origin", "main")


def test_promote_counts_the_requests_from_prometheus_over_each_interval_served(repo, prom):
    from lepton_ci.core.prometheus import Prometheus

    counted_repo(repo, prom.url)
    # scrapes from before the interval's end below (a fresh Prometheus has only seconds)
    prom.wait_for('count_over_time(lepton_test_predictions_total{class="0"}[1h] offset 5s) >= 3')
    real = datetime.now(UTC)
    # it served from 49 hours ago until 5 s ago: that interval's count is settled
    end = real - timedelta(seconds=5)
    rev = revision(1, served_h=49, base=real, ended_h=5 / 3600)
    rev.ended_at = end.isoformat()
    store(repo).save(rev)
    done = promote(repo, real)
    assert done.soak_verdict is not None
    ev = done.soak_verdict.evidence
    window = f"{int((end - (real - timedelta(hours=49))).total_seconds())}s"
    expected = Prometheus(prom.url).query(
        f"sum(increase(lepton_test_predictions_total[{window}]))", end.timestamp()
    )
    assert ev.requests == pytest.approx(expected[0].value) and ev.requests >= 100
    assert ev.counted_by == f"Prometheus ({prom.url})"


def test_too_few_requests_by_prometheus_name_who_counted(repo, prom):
    counted_repo(repo, prom.url)
    set_policy(repo, COUNTED.replace("min_requests: 100", "min_requests: 100000000"))
    commit_all(repo, "chore: a lot of traffic")
    git(repo, "push", "-q", "origin", "main")
    real = datetime.now(UTC)
    store(repo).save(revision(1, served_h=49, base=real, requests=5.0, requests_at=at(0.1)))
    with pytest.raises(SoakRefused) as e:
        promote(repo, real)
    assert f"of 100000000, counted by Prometheus ({prom.url}) at" in e.value.message


def test_prometheus_that_cannot_count_leaves_watch_s_counts_and_says_why(repo, refused_url):
    counted_repo(repo, refused_url)
    real = datetime.now(UTC)
    store(repo).save(revision(1, served_h=49, base=real, requests=40.0, requests_at=at(0.1)))
    with pytest.raises(SoakRefused) as e:
        promote(repo, real)
    msg = e.value.message
    assert "40 of 100 requests" in msg and "counted by `watch` at" in msg
    assert "(Prometheus could not count them: " in msg


@pytest.fixture
def refused_url():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_judge_only_watch_counts_but_writes_nothing(repo, prom):
    op, s = watched(repo, prom, "vector(0)")
    r = op.run(once=True, judge_only=True)
    assert r.requests is not None and r.requests > 0
    assert s.list()[-1].requests is None


def test_a_python_caller_without_a_history_reader_is_refused_not_passed(repo):
    """`versions` cannot read a deploy history itself (the deploy layer sits above it): a
    caller that hands in no reader gets a refusal naming the one to pass, never a pass."""
    ctx = Context.load(cwd=repo)
    with pytest.raises(SoakRefused) as e:
        operations.promote(ctx, "toy", "v0.1.0", "prod", now=lambda: NOW)
    assert "gave no way to read it" in e.value.message
    assert "lepton_ci.deploy.history.reader(ctx)" in (e.value.hint or "")


class _Answers:
    """A Prometheus that answers every query with the given sample values."""

    def __init__(self, *values: float) -> None:
        self.values = values

    def query(self, expr: str, at: float | None = None) -> list:
        from lepton_ci.core.prometheus import Sample

        return [Sample({}, v) for v in self.values]


@pytest.mark.unit
@pytest.mark.parametrize("value", [float("inf"), -5.0, float("-inf")])
def test_a_request_count_that_is_no_count_is_not_believed(value):
    from lepton_ci.core.errors import WatchError

    now = datetime(2026, 1, 2, tzinfo=UTC)
    intervals = [(now - timedelta(hours=1), now)]
    with pytest.raises(WatchError, match="no count of requests"):
        soak.count_requests(_Answers(10.0, value), "sum(x[$window])", intervals, now)
    assert soak.count_requests(_Answers(10.0, 5.0), "sum(x[$window])", intervals, now) == 15.0


@pytest.mark.unit
def test_an_infinite_count_kept_on_a_revision_does_not_meet_min_requests():
    from lepton_ci.core.config import Requires

    now = datetime(2026, 1, 2, tzinfo=UTC)
    rev = Revision(
        number=1,
        env="staging",
        model="toy",
        version="v1.0.0",
        image="img",
        record_digest="sha256:" + "0" * 64,
        manifests="",
        status="deployed",
        created_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:00Z",
        requests=float("inf"),
        requests_at="2026-01-01T12:00:00Z",
    )
    ev = soak.evidence([rev], "staging", "v1.0.0", now)
    verdict = soak.judge(Requires(stage="staging", min_requests=100), ev, now)
    assert not verdict.ok
