"""lepton-ci is pinned wherever users copy it from: `uses:` by SHA with a `# vX.Y.Z` comment,
installs by exact version; tools/pin.py moves every pin to a release at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lepton_ci
from lepton_ci.init import scaffold
from tools import pin, release

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
OLD = "a" * 40
NEW = "0123456789abcdef0123456789abcdef01234567"
TEXT = f"""\
      - uses: lepton-ci/lepton-ci@v1
      - uses: lepton-ci/lepton-ci/actions/run@{OLD} # v0.0.9
      - uses: lepton-ci/lepton-ci/actions/setup@main
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - run: pip install lepton-ci && lepton-ci run --no-fail
      - run: python3 -m pip install 'lepton-ci[image]' lepton-ci-other
      - run: uv pip install lepton-ci==0.0.9; lepton-ci comment
The actions install the lepton-ci of their own ref.
"""


def test_the_rewrite_pins_every_use_and_install_and_nothing_else():
    assert [n for n, _ in pin.unpinned(TEXT)] == [1, 3, 5, 6]  # an old pin is a pin
    out = pin.rewrite(TEXT, pin.Pin(NEW, "1.4.2"))
    assert out == (
        f"""\
      - uses: lepton-ci/lepton-ci@{NEW} # v1.4.2
      - uses: lepton-ci/lepton-ci/actions/run@{NEW} # v1.4.2
      - uses: lepton-ci/lepton-ci/actions/setup@{NEW} # v1.4.2
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - run: pip install lepton-ci==1.4.2 && lepton-ci run --no-fail
      - run: python3 -m pip install 'lepton-ci[image]==1.4.2' lepton-ci-other
      - run: uv pip install lepton-ci==1.4.2; lepton-ci comment
The actions install the lepton-ci of their own ref.
"""
    )
    assert pin.unpinned(out) == [] and pin.pins(out) == {pin.Pin(NEW, "1.4.2")}
    assert pin.rewrite(out, pin.Pin(NEW, "1.4.2")) == out


def test_no_tracked_file_names_lepton_ci_unpinned():
    """Templates, what init writes, examples/workflows, the README, the docs, the code's own
    hints: every `uses:` of lepton-ci is a SHA with its version, every install `==X.Y.Z`."""
    assert pin.check() == []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "pin.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_check_finds_an_unpinned_use_in_a_tracked_file(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "ci.yml").write_text("steps:\n  - uses: lepton-ci/lepton-ci/actions/run@v1\n")
    (tmp_path / "untracked.yml").write_text("steps:\n  - uses: lepton-ci/lepton-ci@v1\n")
    subprocess.run(["git", "add", "ci.yml"], cwd=tmp_path, check=True)
    assert pin.check(tmp_path) == ["ci.yml:2: - uses: lepton-ci/lepton-ci/actions/run@v1"]


def test_the_shipped_files_pin_one_release_and_init_writes_it():
    current = pin.current()
    assert release.version_key(current.version) <= release.version_key(lepton_ci.__version__)
    for name in scaffold.WORKFLOWS:
        text = scaffold.workflow_text(name, "digits")
        assert "lepton-ci/lepton-ci" in text, name
        assert pin.pins(text) == {current} and pin.unpinned(text) == [], name
    # examples/workflows is the templates, not a copy that could drift
    assert (ROOT / "examples" / "workflows").resolve() == ROOT / "templates" / "workflows"
