"""A shadow rollout of the digits example on real podman pods behind the real splitter, through
the command line: the gate refuses the deploy, `deploy --shadow` compares the candidate with
what serves while a steady client is answered by the serving version only, and the deploy goes
through once a shadow has passed."""

from __future__ import annotations

import pytest

from lepton_ci.core import shadows
from lepton_ci.core.git import Git
from tests.test_canary import SteadyClient, new_version, pods, set_rollout, site  # noqa: F401
from tests.test_deploy import WRONG, history, predict, release

pytestmark = pytest.mark.e2e


def test_the_gate_a_failing_shadow_and_a_passing_one_on_podman(site, services) -> None:  # noqa: F811
    repo, cli = site.repo, site.cli
    set_rollout(repo, {"strategy": "shadow", "requests": 30, "timeout": 120})
    release(repo, cli)
    assert site.first_deploy()[0] == 0  # the first release: nothing to compare it with
    new_version(repo, cli, WRONG)  # v0.1.1 answers every digit wrong
    with SteadyClient(site.url) as client:
        code, _, err = cli("deploy", "staging")
        assert code == 1
        assert "requires a passing shadow rollout of this version in staging" in err
        assert "--version v0.1.1 --shadow" in err
        code, out, err = cli("deploy", "staging", "--version", "v0.1.1", "--shadow")
        assert code == 1, out
        assert "shadow of v0.1.1 failed: agreement 0.0000 below min_agreement 0.98" in err
    # Clients never saw the candidate: every answer came from v0.1.0, none failed.
    assert client.failures == [] and set(client.versions) == {"v0.1.0"}
    assert pods(services["podman"]) == ["digits-staging-blue-pod-0"]  # the candidate is gone
    code, _, err = cli("deploy", "staging", "--version", "v0.1.1")
    assert code == 1 and "its last shadow failed (agreement 0.0000" in err
    revs = history(cli)
    assert [(r["status"], r["version"]) for r in revs] == [
        ("deployed", "v0.1.0"),
        ("failed", "v0.1.1"),
    ]
    assert revs[1]["description"] == "shadow v0.1.1 beside v0.1.0"

    new_version(repo, cli, (WRONG[1], WRONG[0]))  # v0.1.2: the fix, answers as v0.1.0 does
    with SteadyClient(site.url) as client:
        code, out, err = cli("deploy", "staging", "--shadow")
        assert code == 0, err
    assert "shadow of v0.1.2 beside v0.1.0 passed: agreement 1.0000" in out
    assert client.failures == [] and set(client.versions) == {"v0.1.0"}
    digest = history(cli)[-1]["record_digest"]
    assert shadows.read(Git(repo), digest)["staging"].compared == 30
    code, out, err = cli("deploy", "staging")
    assert code == 0, err
    assert predict(site.url)["model_version"] == "v0.1.2"
    assert [r["status"] for r in history(cli)] == ["superseded", "failed", "shadowed", "deployed"]
