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
