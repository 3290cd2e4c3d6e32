"""GTO is the reference: every registry question is asked of `gto` itself on the same tags."""

import json
import time

import pytest
from gto import api as gto

from lepton_ci.core.config import Config
from lepton_ci.core.git import Git
from lepton_ci.run.baseline import resolve
from lepton_ci.versions import queries
from lepton_ci.versions.registry import Registry
from tests.conftest import Cli, commit_all, git

pytestmark = pytest.mark.e2e

GTO_EVENT = {
    "register": "registration",
    "deregister": "deregistration",
    "assign": "assignment",
    "unassign": "unassignment",
    "deprecate": "deprecation",
}


class Tagger:
    """Writes tags in GTO's grammar, one second apart (GTO orders events by tag time)."""

    def __init__(self, repo):
        self.repo = repo
        self.t = int(time.time()) + 10  # after the commits, which GTO also reads as events

    def __call__(self, name, rev="HEAD"):
        self.t += 1
        env = {"GIT_COMMITTER_DATE": f"{self.t} +0000"}
        git(self.repo, "tag", "-a", "-m", f"gto-style {name}", name, rev, env=env)


def commit(repo, name):
    (repo / "log.txt").write_text(name)
    return commit_all(repo, name)


def gto_stages(repo, model):
    return {s: v for s, v in gto.show(str(repo))[model]["stage"].items() if v}


def our_stages(repo, model):
    return {s: a.label for s, a in Registry(Git(repo)).read(model).assignments(model).items()}


def gto_versions(repo, model):
    # a set: GTO lists a stage's unregistered commit once per index pass (its own quirk)
    return sorted(
        {
            (v["version"], tuple(sorted(s["stage"] for s in v["stages"])))
            for v in gto.show(str(repo), model)
        }
    )


def our_versions(repo, model):
    records = queries.versions(Git(repo), model).records
    return sorted((r["version"], tuple(r["stages"])) for r in records)


def gto_history(repo, model):
    return [
        (e["event"], e["version"], e["stage"])
        for e in gto.history(str(repo), model, ascending=True)
    ]


def our_history(repo, model):
    return [
        (GTO_EVENT[r["action"]], r["version"], r["stage"])
        for r in queries.history(Git(repo), model).records
    ]


def test_stage_semantics_match_gto(toy_repo):
    repo, tag = toy_repo, Tagger(toy_repo)
    c1 = git(repo, "rev-parse", "HEAD")
    c2 = commit(repo, "c2")
    c3 = commit(repo, "c3")
    c4 = commit(repo, "c4")
    tag("m@v0.0.1", c1)
    tag("m@v0.0.2", c2)
    tag("m#prod#1", c1)
    tag("m#prod#2", c2)
    tag("m#prod!#3", c2)  # unassigns v0.0.2 only: v0.0.1 is prod again
    tag("m#dev#4", c4)  # a stage on a commit never registered
    tag("m@v0.0.3", c3)
    tag("m#staging#5", c3)
    tag("m@v0.0.3!#6", c3)  # deregistered: loses its stage
    git(repo, "tag", "m@v9.9.9", c4)  # lightweight: not a version

    assert gto_stages(repo, "m") == {"prod": "v0.0.1", "dev": c4}
    assert our_stages(repo, "m") == gto_stages(repo, "m")
    assert our_versions(repo, "m") == gto_versions(repo, "m")
    assert ("v0.0.1", ("prod",)) in our_versions(repo, "m")
    assert (c4, ("dev",)) in our_versions(repo, "m")
    assert our_history(repo, "m") == gto_history(repo, "m")
    assert ("assignment", c4, "dev") in our_history(repo, "m")
    # the lightweight tag is neither the latest version nor a baseline
    assert gto.show(str(repo))["m"]["version"] == "v0.0.2"
    assert str(Registry(Git(repo)).read("m").latest("m").version) == "v0.0.2"
    assert resolve(Git(repo), "m").tag == "m@v0.0.2"


def test_deprecated_models_are_hidden_like_gto_show(toy_repo, capsys):
    repo, tag = toy_repo, Tagger(toy_repo)
    tag("old@v0.1.0")
    tag("live@v0.1.0")
    tag("old@deprecated#1")
    assert set(gto.show(str(repo))) == {"live"}
    records = queries.versions(Git(repo)).records
    assert {r["model"] for r in records} == {"live"}
    every = queries.versions(Git(repo), include_all=True)
    assert {(r["model"], r["deprecated"]) for r in every.records} == {
        ("live", False),
        ("old", True),
    }
    assert "old (deprecated)" in {row[0] for row in every.rows}
    assert queries.versions(Git(repo), "old").empty == "old is deprecated; list it with --all"
    tag("old@v0.2.0")  # a later event revives the model, in GTO and here
    assert set(gto.show(str(repo))) == {"live", "old"}
    assert {r["model"] for r in queries.versions(Git(repo)).records} == {"live", "old"}


@pytest.mark.parametrize("model", ["my_model", "MyModel", "2fast", "x", "models:clf"])
def test_names_gto_accepts_are_read_and_configurable(toy_repo, model):
    tag = Tagger(toy_repo)
    in_tag = model.replace(":", "=")
    tag(f"{in_tag}@v0.1.0")
    tag(f"{in_tag}#prod#1")
    assert set(gto.show(str(toy_repo))) == {model}
    state = Registry(Git(toy_repo)).read()
    assert state.models() == [model]
    assert our_stages(toy_repo, model) == gto_stages(toy_repo, model) == {"prod": "v0.1.0"}
    assert Registry(Git(toy_repo)).read(model).latest(model).tag == f"{in_tag}@v0.1.0"
    Config.model_validate({"models": {model: {"train": "x", "metrics": ["m.json"]}}})


def test_lepton_tags_order_like_gto_and_name_the_actor(cli, toy_repo):
    """register and two promotions within one second: GTO (ordering by tag time) agrees."""
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    assert cli("promote", "toy", "v0.1.0", "staging", "--actor", "alice")[0] == 0
    assert cli("promote", "toy", "v0.1.0", "prod", "--actor", "alice")[0] == 0
    times = [e.time for e in Registry(Git(toy_repo)).read("toy").history("toy")]
    assert times == sorted(set(times))  # strictly increasing
    assert our_history(toy_repo, "toy") == gto_history(toy_repo, "toy")
    assert our_stages(toy_repo, "toy") == gto_stages(toy_repo, "toy")
    message = git(toy_repo, "tag", "-l", "--format=%(contents)", "toy#prod#2")
    assert message == "Promote toy@v0.1.0 to prod\n\nPromoted-by: alice"
    code, out, _ = cli("history", "toy", "--json")
    events = json.loads(out)
    assert [(e["action"], e["version"], e["who"]) for e in events] == [
        ("register", "v0.1.0", "Test User"),
        ("assign", "v0.1.0", "alice"),
        ("assign", "v0.1.0", "alice"),
    ]
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "x\nPromoted-by: eve")
    assert code == 1 and "is not a GitHub login" in err
    # a trailing newline would add a blank line to the trailers: refused, not trimmed
    code, _, err = cli("promote", "toy", "v0.1.0", "staging", "--actor", "alice\n")
    assert code == 1 and "is not a GitHub login" in err


def test_show_takes_gto_shortcuts(cli, toy_repo):
    tag = Tagger(toy_repo)
    tag("toy@v0.3.0")
    commit(toy_repo, "c2")
    tag("toy@v0.2.0")  # registered later, but smaller: GTO's latest is the greatest
    tag("toy#prod#1")
    for ref, want in (
        ("toy@latest", "v0.3.0"),
        ("toy@greatest", "v0.3.0"),
        ("toy#prod", "v0.2.0"),
        ("toy", "v0.3.0"),
    ):
        code, out, err = cli("show", ref, "--json")
        assert code == 0, err
        assert json.loads(out)["tag"] == f"toy@{want}", ref
    assert [v["version"] for v in gto.show(str(toy_repo), "toy@latest")] == ["v0.3.0"]
    assert [v["version"] for v in gto.show(str(toy_repo), "toy@greatest")] == ["v0.3.0"]
    assert [v["version"] for v in gto.show(str(toy_repo), "toy#prod")] == ["v0.2.0"]
    assert gto.find_latest_version(str(toy_repo), "toy").version == "v0.3.0"
    code, _, err = cli("show", "toy#staging")
    assert code == 1 and "no version of toy is in stage `staging`" in err
    code, _, err = cli("show", "toy@v1")
    assert code == 1 and "is not a version reference" in err


def test_a_model_named_dir_colon_name_is_written_as_gto_writes_it(toy_repo, capsys):
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("  toy:", "  models:toy:", 1))
    commit_all(toy_repo, "GTO-style model name")
    cli = Cli(toy_repo, capsys)
    assert cli("run")[0] == 0
    code, out, err = cli("register")
    assert code == 0, err
    assert "registered models=toy@v0.1.0" in out
    assert cli("promote", "models:toy", "v0.1.0", "staging")[0] == 0
    assert gto.show(str(toy_repo))["models:toy"]["stage"]["staging"] == "v0.1.0"
    code, out, _ = cli("show", "models:toy#staging", "--json")
    assert code == 0 and json.loads(out)["candidate_version"] == "v0.1.0"
    commit(toy_repo, "fix: next")
    code, out, _ = cli("run")
    assert code == 0 and "vs  models=toy@v0.1.0" in out


def test_a_promoted_by_trailer_that_is_no_login_is_ignored(toy_repo):
    tag = Tagger(toy_repo)
    tag("toy@v0.1.0")
    message = "Promote\n\nPromoted-by: \u202eevil ::error::x\n"
    env = {"GIT_COMMITTER_DATE": f"{tag.t + 1} +0000"}
    git(toy_repo, "tag", "-a", "--cleanup=verbatim", "-m", message, "toy#prod#1", env=env)
    (event,) = [r for r in queries.history(Git(toy_repo), "toy").records if r["stage"]]
    assert event["who"] == "Test User"


def test_after_the_newest_version_is_deregistered_the_next_is_past_it(cli, toy_repo):
    """Deregistering the newest version made `register` pick it again (and fail) and `run`
    label the candidate with it: a version once registered is never reused, as GTO refuses."""
    from tests.conftest import set_params

    assert cli("run")[0] == 0 and cli("register")[0] == 0  # toy@v0.1.0
    set_params(toy_repo, lr=0.2)
    commit_all(toy_repo, "fix: two")
    assert cli("run")[0] == 0 and cli("register")[0] == 0  # toy@v0.1.1
    Tagger(toy_repo)("toy@v0.1.1!#2")
    set_params(toy_repo, lr=0.3)
    commit_all(toy_repo, "fix: three")
    code, out, err = cli("run")
    assert code == 0, err
    assert "toy v0.1.2  vs  toy@v0.1.0" in out
    code, out, err = cli("register")
    assert code == 0, err
    assert "toy@v0.1.2" in out
    assert gto.find_latest_version(str(toy_repo), "toy").version == "v0.1.2"
    commit(toy_repo, "c5")
    with pytest.raises(Exception, match="already was registered"):  # GTO never reuses one
        gto.register(str(toy_repo), "toy", "HEAD", version="v0.1.1")
