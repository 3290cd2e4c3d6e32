"""The release process: one version, the CHANGELOG as release notes, the refusals that keep a
released version from being released again, the GitHub release and the major tag."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lepton_ci
from tools import release

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_the_version_is_declared_once_and_everything_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "lepton_ci.__version__"
    assert release.package_version(ROOT) == lepton_ci.__version__
    cli = Path(sys.executable).with_name("lepton-ci")
    out = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"lepton-ci {lepton_ci.__version__}\n"
    # Once a release is cut, its CHANGELOG section is the newest one and names this version.
    released = release.released_versions((ROOT / "CHANGELOG.md").read_text())
    assert not released or released[0] == lepton_ci.__version__, released


CHANGELOG = """# Changelog

## [Unreleased]

### Added
- something not released yet

## [1.2.0] - 2025-03-01

### Added
- the `site` command

### Fixed
- a crash on an empty `lepton.yaml`

## [1.1.0] - 2025-01-10

- first public release

[1.2.0]: https://github.com/lepton-ci/lepton-ci/compare/v1.1.0...v1.2.0
[1.1.0]: https://github.com/lepton-ci/lepton-ci/releases/tag/v1.1.0
"""


def project(tmp_path: Path, version: str, changelog: str = CHANGELOG) -> Path:
    (tmp_path / "lepton_ci").mkdir(parents=True)
    (tmp_path / "lepton_ci" / "__init__.py").write_text(f'"""x"""\n\n__version__ = "{version}"\n')
    (tmp_path / "CHANGELOG.md").write_text(changelog)
    return tmp_path


@pytest.mark.unit
def test_the_release_notes_are_the_versions_changelog_section():
    assert release.released_versions(CHANGELOG) == ["1.2.0", "1.1.0"]
    assert release.changelog_section(CHANGELOG, "1.2.0") == (
        "\n### Added\n- the `site` command\n\n### Fixed\n- a crash on an empty `lepton.yaml`"
    ).lstrip("\n")
    # the last section ends before Keep a Changelog's link definitions
    assert release.changelog_section(CHANGELOG, "1.1.0") == "- first public release"
    assert release.changelog_section(CHANGELOG, "1.0.0") is None
    assert release.changelog_section(CHANGELOG, "1.2") is None


@pytest.mark.unit
def test_notes_prints_the_section_and_refuses_a_version_without_one(tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "release.py"), "notes"]
    out = subprocess.run([*tool, "9.9.9"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert "CHANGELOG.md has no section for 9.9.9" in out.stderr
    assert "## [9.9.9] - YYYY-MM-DD" in out.stderr
    root = project(tmp_path, "1.2.0")
    assert release.notes("1.2.0", root).startswith("### Added\n- the `site` command\n")


@pytest.mark.unit
@pytest.mark.parametrize("tag", ["1.2.0", "v1.2", "v1.2.0-rc1", "v01.2.0", "release-1.2.0", ""])
def test_a_tag_that_is_not_vX_Y_Z_is_refused(tmp_path, tag):
    with pytest.raises(release.ReleaseError, match=r"release tags are vMAJOR\.MINOR\.PATCH"):
        release.check(tag, release.PackageIndex("http://127.0.0.1:9/simple/"), None, tmp_path)


@pytest.mark.unit
def test_a_tag_that_differs_from_the_declared_version_is_refused(tmp_path):
    root = project(tmp_path, "1.1.0")
    with pytest.raises(release.ReleaseError) as e:
        release.check("v1.2.0", release.PackageIndex("http://127.0.0.1:9/"), None, root)
    assert "does not match the version in lepton_ci/__init__.py (1.1.0)" in str(e.value)
    assert '__version__ = "1.2.0"' in str(e.value)


@pytest.mark.unit
def test_a_version_without_a_changelog_section_is_refused(tmp_path):
    root = project(tmp_path, "1.3.0")
    with pytest.raises(release.ReleaseError, match=r"CHANGELOG.md has no section for 1.3.0"):
        release.check("v1.3.0", release.PackageIndex("http://127.0.0.1:9/"), None, root)


@pytest.mark.e2e
def test_a_version_already_on_the_index_or_on_github_is_never_released_again(tmp_path):
    from tests.support.github_server import GitHubServer
    from tests.support.pypi import package_index

    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "lepton_ci-1.1.0.tar.gz").write_bytes(b"released before")
    root = project(tmp_path / "repo", "1.2.0")
    with package_index(packages) as url, GitHubServer() as gh:
        index = release.PackageIndex(f"{url}/simple/")
        github = release.GitHub(gh.url, "lepton-ci/lepton-ci", "test-token")
        assert index.versions() == {"1.1.0"}
        assert release.check("v1.2.0", index, github, root) == "1.2.0"
        (packages / "lepton_ci-1.2.0-py3-none-any.whl").write_bytes(b"released since")
        with pytest.raises(release.ReleaseError, match=r"already on .* never released again"):
            release.check("v1.2.0", index, github, root)
        (packages / "lepton_ci-1.2.0-py3-none-any.whl").unlink()
        github.create_release("v1.2.0", "notes", latest=True)
        with pytest.raises(release.ReleaseError, match=r"already has a GitHub release v1\.2\.0"):
            release.check("v1.2.0", index, github, root)


@pytest.mark.e2e
def test_the_github_release_carries_the_notes_and_the_major_tag_follows_the_newest(tmp_path):
    from tests.support.github_server import GitHubServer

    repo = "lepton-ci/lepton-ci"
    changelog = CHANGELOG.replace(
        "## [1.2.0]", "## [1.3.0] - 2025-04-01\n\n- 1.3\n\n## [1.2.1]\n\n- a fix\n\n## [1.2.0]"
    )
    root = project(tmp_path, "1.2.0", changelog)
    sha = {v: f"{i:040x}" for i, v in enumerate(["1.2.0", "1.3.0", "1.2.1"], 1)}
    with GitHubServer() as gh:
        github = release.GitHub(gh.url, repo, "test-token")
        refs = gh.state.refs.setdefault(repo, {})

        def cut(version: str) -> str:
            refs[f"refs/tags/v{version}"] = sha[version]  # the tag push that starts release.yml
            return release.publish_github(f"v{version}", sha[version], github, root)

        assert cut("1.2.0") == f"released v1.2.0; v1 -> {sha['1.2.0']}"
        [rel] = gh.state.releases[repo]
        assert rel["name"] == "v1.2.0" and rel["body"] == release.notes("1.2.0", root)
        assert refs["refs/tags/v1"] == sha["1.2.0"] and gh.state.latest[repo] == "v1.2.0"
        assert cut("1.3.0") == f"released v1.3.0; v1 -> {sha['1.3.0']}"
        assert refs["refs/tags/v1"] == sha["1.3.0"] and gh.state.latest[repo] == "v1.3.0"
        # a fix on an older line is released, but v1 and "latest" stay on the newest
        assert cut("1.2.1") == "released v1.2.1; v1 stays on v1.3.0"
        assert refs["refs/tags/v1"] == sha["1.3.0"] and gh.state.latest[repo] == "v1.3.0"
        assert gh.state.releases[repo][-1]["body"] == "- a fix\n"
        assert gh.state.count("POST", "/git/refs") == 1 and gh.state.count("PATCH") == 1


def workflow(name: str) -> dict:
    import yaml

    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads `on:` as true
    return data


@pytest.mark.unit
def test_release_yml_grants_each_job_only_what_it_needs():
    wf = workflow("release.yml")
    assert wf["on"] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    assert wf["permissions"] == {}
    jobs = wf["jobs"]
    assert list(jobs) == ["check", "build", "publish", "github-release"]
    assert [jobs[j].get("needs") for j in jobs] == [None, "check", "build", "publish"]
    perms = {name: job["permissions"] for name, job in jobs.items()}
    assert perms == {
        "check": {"contents": "read"},
        "build": {"contents": "read"},
        "publish": {"id-token": "write"},
        "github-release": {"contents": "write"},
    }
    assert jobs["publish"]["environment"]["name"] == "pypi"
    assert all("environment" not in job for name, job in jobs.items() if name != "publish")


@pytest.mark.unit
def test_pypi_gets_the_release_by_trusted_publishing_only():
    """The publish action (pinned, attestations on) runs for every index but a loopback one,
    which alone takes the twine step: the two conditions are exact complements."""
    steps = workflow("release.yml")["jobs"]["publish"]["steps"]
    [action] = [s for s in steps if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@")]
    assert action["with"] == {
        "repository-url": "${{ env.RELEASE_UPLOAD_URL }}",
        "attestations": True,
    }
    local = "startsWith(env.RELEASE_UPLOAD_URL, 'http://127.0.0.1:')"
    assert action["if"] == f"${{{{ !{local} }}}}"
    twine = [s for s in steps if "twine" in s.get("run", "")]
    assert twine and all(s["if"] == f"${{{{ {local} }}}}" for s in twine)
    assert all("secrets." not in str(s) for s in steps)  # no token: OIDC
    env = workflow("release.yml")["env"]
    assert env["RELEASE_UPLOAD_URL"].endswith("|| 'https://upload.pypi.org/legacy/' }}")
    assert env["LEPTON_RELEASE_INDEX"].endswith("|| 'https://pypi.org/simple/' }}")


@pytest.mark.unit
def test_every_action_the_project_workflows_use_is_pinned_by_sha_with_its_version():
    import re

    pinned = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+){1,2}$")
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for line in path.read_text().splitlines():
            line = line.strip().removeprefix("- ")
            if line.startswith("uses:") and not line.startswith("uses: ./"):
                assert pinned.fullmatch(line), f"{path.name}: {line}"
