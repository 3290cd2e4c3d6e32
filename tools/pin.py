"""Pin lepton-ci where users copy it from: `uses:` by commit SHA with a `# vX.Y.Z` comment,
`pip install` by exact version, the way every other action and package here is pinned.

    python3 tools/pin.py VERSION SHA     rewrite the pins in the shipped files to a release
    python3 tools/pin.py --check         list every unpinned lepton-ci in the tracked files

The shipped files are the workflow templates (what `lepton-ci init` writes and
examples/workflows links to), the README and the docs. release.yml runs the rewrite with the
release's own commit before it builds, so the package's `init` pins the release it came from;
after a release, the same command (Releasing, in docs/development.md) brings the repository's
copies up to it. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACTION = "lepton-ci/lepton-ci"
# the all-in-one action or one under actions/, at a ref, with its `# vX.Y.Z` comment
USES = re.compile(
    r"(?P<action>lepton-ci/lepton-ci(?:/actions/[A-Za-z0-9_-]+)?)@(?P<ref>[^\s#'\"`]+)"
    r"(?P<comment>[ \t]*#[ \t]*(?P<version>v\d+\.\d+\.\d+)\b)?"
)
PINNED_REF = re.compile(r"[0-9a-f]{40}")
# the package on an install line; `lepton-ci/...` (the action) and `lepton-ci-x` are other names
PACKAGE = re.compile(
    r"(?<![\w/.-])lepton-ci(?![\w/-])(?P<extra>\[[^\]\s'\"]*\])?(?P<pin>==[^\s'\"`]+)?"
)
# an install command, up to where the shell command ends
INSTALL = re.compile(r"\b(?:pip3?|pipx|uv pip|uv tool) install\b[^\n;&|#`(]*")
VERSION = re.compile(r"\d+\.\d+\.\d+")
# Not shipped, or history: the tests write workflows of their own, the CHANGELOG quotes the past.
UNCHECKED = ("tests/", "CHANGELOG.md")


class PinError(Exception):
    """The pins disagree, or a file names lepton-ci unpinned."""


@dataclass(frozen=True)
class Pin:
    sha: str
    version: str  # X.Y.Z

    def ref(self) -> str:
        return f"{self.sha} # v{self.version}"


def shipped(root: Path = ROOT) -> list[Path]:
    """The files the rewrite keeps pinned."""
    files = [*sorted((root / "templates" / "workflows").glob("*.yml")), root / "README.md"]
    return files + sorted((root / "docs").rglob("*.md"))


def rewrite(text: str, pin: Pin) -> str:
    text = USES.sub(lambda m: f"{m['action']}@{pin.ref()}", text)

    def package(m: re.Match[str]) -> str:
        if m["pin"] and not VERSION.fullmatch(m["pin"][2:]):
            return m[0]  # `=={__version__}` in code: pinned at run time
        return f"lepton-ci{m['extra'] or ''}=={pin.version}"

    return INSTALL.sub(lambda m: PACKAGE.sub(package, m[0]), text)


def unpinned(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each lepton-ci action not pinned by SHA with a version comment,
    and each install of the package without `==VERSION`."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        bad = any(
            not PINNED_REF.fullmatch(m["ref"]) or not m["comment"] for m in USES.finditer(line)
        )
        for cmd in INSTALL.finditer(line):
            bad = bad or any(not m["pin"] for m in PACKAGE.finditer(cmd[0]))
        if bad:
            found.append((n, line.strip()))
    return found


def pins(text: str) -> set[Pin]:
    return {Pin(m["ref"], m["version"][1:]) for m in USES.finditer(text) if m["version"]}


def current(root: Path = ROOT) -> Pin:
    """The one release the shipped files pin (they must agree)."""
    found = {p for f in shipped(root) for p in pins(f.read_text(encoding="utf-8"))}
    if len(found) != 1:
        raise PinError(
            f"the shipped files pin {sorted((p.sha, p.version) for p in found)}, expected one "
            "release: run `python3 tools/pin.py VERSION SHA`"
        )
    return found.pop()


def tracked(root: Path = ROOT) -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    return [root / n for n in names if n and not n.startswith(UNCHECKED) and (root / n).is_file()]


def check(root: Path = ROOT) -> list[str]:
    """`file:line: text` of each unpinned lepton-ci in the tracked files."""
    out = []
    for path in tracked(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        rel = path.relative_to(root)
        out += [f"{rel}:{n}: {line}" for n, line in unpinned(text)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/pin.py", description=__doc__.split("\n\n")[0])
    p.add_argument("version", nargs="?", help="X.Y.Z (a leading v is dropped)")
    p.add_argument("sha", nargs="?", help="the release commit, 40 hex digits")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.check:
        bad = check()
        for line in bad:
            print(line)
        if bad:
            print(
                f"error: {len(bad)} unpinned: pin `uses: {ACTION}...@SHA # vX.Y.Z` and "
                "`lepton-ci==X.Y.Z` (python3 tools/pin.py VERSION SHA)",
                file=sys.stderr,
            )
        return 1 if bad else 0
    version = (args.version or "").removeprefix("v")
    if not VERSION.fullmatch(version) or not PINNED_REF.fullmatch(args.sha or ""):
        p.error("give VERSION (X.Y.Z) and SHA (the release commit, 40 lowercase hex digits)")
    pin = Pin(args.sha, version)
    for path in shipped():
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, pin)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"pinned {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
