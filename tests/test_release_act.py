"""release.yml end to end under act: a vX.Y.Z tag on a release commit of this repository is
checked, built, smoke-tested, published to a real local package index (pypiserver, in place of
PyPI) and released on the GitHub stand-in; then a user installs that version from the index
into a fresh virtualenv and runs it.

Under act the publish job takes its twine step: pypa/gh-action-pypi-publish is a container
action (and trusted publishing needs GitHub's OIDC), neither of which runs here. The workflow
chooses twine only for a loopback index, so on GitHub every upload goes through trusted
publishing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lepton_ci
from tests.support import github_events as events
from tests.support.act import ROOT, act, action_repo, git
from tests.support.github_server import GitHubServer
from tests.support.pypi import package_index
from tools import release

REPO = "lepton-ci/lepton-ci"
PYPI = "https://pypi.org/simple/"


def release_commit(dest: Path, version: str) -> Path:
    """This repository's tracked files as a release commit of `version`: the CHANGELOG's
    [Unreleased] entries under `## [version]`, as RELEASING says."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for f in filter(None, files):
        src, dst = ROOT / f, dest / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        elif src.is_file():
            shutil.copy2(src, dst)
    changelog = dest / "CHANGELOG.md"
    text = changelog.read_text()
    if version not in release.released_versions(text):  # else it is cut already
        text = text.replace(
            "## [Unreleased]\n", f"## [Unreleased]\n\n## [{version}] - 2025-01-01\n", 1
        )
        changelog.write_text(text)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", f"Release {version}")
    git(dest, "tag", "-a", "-m", f"lepton-ci {version}", f"v{version}")
    return dest


@pytest.mark.e2e
def test_a_version_tag_publishes_to_the_index_and_users_install_and_run_it(tmp_path):
    version = lepton_ci.__version__
    tag = f"v{version}"
    ws = release_commit(tmp_path / "ws", version)
    sha = git(ws, "rev-parse", "HEAD")
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    with package_index(tmp_path / "packages") as index, GitHubServer() as gh:
        gh.state.refs[REPO] = {f"refs/tags/{tag}": sha}  # the tag push that starts it
        proc = act(
            ws,
            "push",
            events.push(f"refs/tags/{tag}", sha),
            "release.yml",
            home=home,
            action=action_repo(tmp_path / "action"),
            env={
                "GITHUB_API_URL": gh.url,
                "GITHUB_REPOSITORY": REPO,
                "GITHUB_REF_NAME": tag,
                "LEPTON_TEST_ARTIFACTS": str(artifacts),
            },
            secrets={"GITHUB_TOKEN": "test-token"},
            variables={"RELEASE_UPLOAD_URL": f"{index}/", "RELEASE_INDEX_URL": f"{index}/simple/"},
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        # all four jobs ran: check, build (and its smoke test), publish, github-release
        assert proc.stdout.count("Job succeeded") == 4, proc.stdout[-6000:]
        assert "Upload to the local index" in proc.stdout
        assert f"{tag}: releasing lepton-ci {version}" in proc.stdout
        assert f"lepton-ci {version}" in proc.stdout and "init: lepton-ci run" in proc.stdout

        published = sorted(p.name for p in (tmp_path / "packages").iterdir())
        assert published == [f"lepton_ci-{version}-py3-none-any.whl", f"lepton_ci-{version}.tar.gz"]
        [rel] = gh.state.releases[REPO]
        assert rel["tag_name"] == tag and rel["body"] == release.notes(version, ws)
        assert gh.state.refs[REPO][f"refs/tags/v{version.split('.')[0]}"] == sha

        # A user installs that version from the index (dependencies from PyPI, as usual).
        venv = tmp_path / "user-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        report = tmp_path / "install-report.json"
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        indexes = ["--index-url", f"{index}/simple/", "--extra-index-url", PYPI]
        subprocess.run(
            [*pip, "--report", str(report), *indexes, f"lepton-ci=={version}"],
            check=True,
            timeout=600,
        )
        [ours] = [
            i
            for i in json.loads(report.read_text())["install"]
            if i["metadata"]["name"] == "lepton-ci"
        ]
        assert ours["download_info"]["url"].startswith(index), ours["download_info"]
    cli = str(venv / "bin" / "lepton-ci")
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"lepton-ci {version}\n"
    schema = subprocess.run([cli, "schema", "record"], capture_output=True, text=True, check=True)
    assert json.loads(schema.stdout)["title"]
