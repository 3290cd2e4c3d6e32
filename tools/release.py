"""Release steps of .github/workflows/release.yml, runnable (and tested) outside Actions.

    python3 tools/release.py version                 print lepton_ci.__version__
    python3 tools/release.py check  [--tag vX.Y.Z]   refuse a tag that is no release to make
    python3 tools/release.py notes  VERSION          print VERSION's CHANGELOG section
    python3 tools/release.py smoke  DIST             install the wheel in a clean venv, run it
    python3 tools/release.py github [--tag vX.Y.Z]   GitHub release from the CHANGELOG; move vX

Standard library only: the release workflow runs it with the runner's python3 before anything
is installed. The tag defaults to GITHUB_REF_NAME; the package index to LEPTON_RELEASE_INDEX
(the simple API, PyPI's by default); GitHub is reached through GITHUB_API_URL,
GITHUB_REPOSITORY and GITHUB_TOKEN, as in Actions.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "lepton-ci"
VERSION_FILE = "lepton_ci/__init__.py"
CHANGELOG = "CHANGELOG.md"
PYPI_SIMPLE = "https://pypi.org/simple/"
TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
HEADING = re.compile(r"^## \[([^\]]+)\](.*)$", re.MULTILINE)
LINK_DEFINITION = re.compile(r"^\[[^\]]+\]:\s+\S+\s*$")
TIMEOUT = 30
# lepton-ci's action in a workflow, and the ref it is pinned to (tools/pin.py writes them)
USES = re.compile(r"lepton-ci/lepton-ci(?:/actions/[\w-]+)?@([^\s]+(?:[ \t]*#[ \t]*\S+)?)")


class ReleaseError(Exception):
    """A release refused or failed; the message says what to change."""


# -- the version, in one place ----------------------------------------------------------------


def package_version(root: Path = ROOT) -> str:
    """`__version__` of lepton_ci/__init__.py, read without importing the package."""
    tree = ast.parse((root / VERSION_FILE).read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ReleaseError(f'{VERSION_FILE}: no `__version__ = "X.Y.Z"` line')


def version_key(version: str) -> tuple[int, int, int]:
    m = TAG.fullmatch(f"v{version}")
    if not m:
        raise ReleaseError(f"{version!r} is not a MAJOR.MINOR.PATCH version")
    return int(m[1]), int(m[2]), int(m[3])


def tag_version(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise ReleaseError(
            f"tag {tag!r} is not a release tag: release tags are vMAJOR.MINOR.PATCH (v1.4.2)"
        )
    return tag[1:]


# -- the CHANGELOG -----------------------------------------------------------------------------


def released_versions(changelog: str) -> list[str]:
    """The versions the CHANGELOG has a section for, newest (topmost) first."""
    return [m[1] for m in HEADING.finditer(changelog) if m[1].lower() != "unreleased"]


def changelog_section(changelog: str, version: str) -> str | None:
    """The body of `## [VERSION]` up to the next `## ` heading, without the link definitions
    Keep a Changelog puts at the end; None when there is no such section."""
    headings = list(HEADING.finditer(changelog))
    for i, m in enumerate(headings):
        if m[1] != version:
            continue
        end = headings[i + 1].start() if i + 1 < len(headings) else len(changelog)
        lines = changelog[m.end() : end].strip("\n").splitlines()
        while lines and (not lines[-1].strip() or LINK_DEFINITION.match(lines[-1])):
            lines.pop()
        return "\n".join(lines).strip("\n")
    return None


def notes(version: str, root: Path = ROOT) -> str:
    body = changelog_section((root / CHANGELOG).read_text(encoding="utf-8"), version)
    if not body or not body.strip():
        raise ReleaseError(
            f"{CHANGELOG} has no section for {version}: move the [Unreleased] entries under "
            f"`## [{version}] - YYYY-MM-DD` in the release commit, then tag it again"
        )
    return body + "\n"


# -- outside systems: the package index and GitHub --------------------------------------------


def _request(url: str, *, method: str = "GET", token: str = "", body: Any = None) -> Any:
    """(status, decoded JSON or text). 404 is an answer, not an error; other failures raise."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s) only)
    if not url.startswith(("https://", "http://")):
        raise ReleaseError(f"{url}: only http(s) URLs")
    req.add_header("User-Agent", "lepton-ci-release")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
            raw = resp.read().decode()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (json.loads(raw) if "json" in ctype and raw else raw)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 404, None
        detail = e.read().decode(errors="replace")[:500]
        raise ReleaseError(f"{method} {url} answered {e.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError) as e:
        raise ReleaseError(f"{method} {url} failed: {e}") from None


class PackageIndex:
    """A package index's simple API (PEP 503): PyPI, or a local pypiserver in the tests."""

    def __init__(self, simple_url: str = PYPI_SIMPLE) -> None:
        self.simple_url = simple_url.rstrip("/") + "/"

    def versions(self, project: str = PROJECT) -> set[str]:
        status, page = _request(f"{self.simple_url}{project}/")
        if status == 404:
            return set()
        found = set()
        for name in re.findall(r">\s*([^<>\s]+)\s*</a>", str(page)):
            m = re.match(
                r"lepton[-_.]ci-(.+?)(?:\.tar\.gz|\.zip|-[^-]+-[^-]+-[^-]+\.whl)$", name, re.I
            )
            if m:
                found.add(m[1])
        return found


@dataclass
class GitHub:
    """The few REST calls a release makes, with the job's token."""

    api_url: str
    repository: str
    token: str

    @classmethod
    def from_env(cls) -> GitHub:
        missing = [k for k in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not os.environ.get(k)]
        if missing:
            raise ReleaseError(
                f"{', '.join(missing)} not set: give the step `env: GITHUB_TOKEN: "
                "${{ github.token }}` (GITHUB_REPOSITORY is set by Actions)"
            )
        return cls(
            os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            os.environ["GITHUB_REPOSITORY"],
            os.environ["GITHUB_TOKEN"],
        )

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"{self.api_url}/repos/{self.repository}{path}"
        status, data = _request(url, method=method, token=self.token, body=body)
        return status, data

    def release(self, tag: str) -> dict[str, Any] | None:
        status, data = self._call("GET", f"/releases/tags/{tag}")
        return None if status == 404 else data

    def create_release(self, tag: str, body: str, *, latest: bool) -> dict[str, Any]:
        payload = {
            "tag_name": tag,
            "name": tag,
            "body": body,
            "draft": False,
            "prerelease": False,
            "make_latest": "true" if latest else "false",
        }
        return self._call("POST", "/releases", payload)[1]  # type: ignore[no-any-return]

    def tags(self, prefix: str) -> dict[str, str]:
        """Tag name -> the SHA its ref points to (a tag object's, for annotated tags)."""
        status, data = self._call("GET", f"/git/matching-refs/tags/{prefix}")
        refs = [] if status == 404 else data
        return {r["ref"].removeprefix("refs/tags/"): r["object"]["sha"] for r in refs}

    def set_tag(self, name: str, sha: str, *, exists: bool) -> None:
        if exists:
            self._call("PATCH", f"/git/refs/tags/{name}", {"sha": sha, "force": True})
        else:
            self._call("POST", "/git/refs", {"ref": f"refs/tags/{name}", "sha": sha})


# -- the steps ---------------------------------------------------------------------------------


def check(tag: str, index: PackageIndex, github: GitHub | None, root: Path = ROOT) -> str:
    """Refuse a tag that is no release to make; return its version."""
    version = tag_version(tag)
    declared = package_version(root)
    if version != declared:
        raise ReleaseError(
            f"tag {tag} does not match the version in {VERSION_FILE} ({declared}): set "
            f'`__version__ = "{version}"` there in the release commit, or tag it v{declared}'
        )
    notes(version, root)
    if version in index.versions():
        raise ReleaseError(
            f"{PROJECT} {version} is already on {index.simple_url}: a released version is never "
            "released again. Bump the version (and the CHANGELOG) and tag the new one"
        )
    if github is not None and github.release(tag) is not None:
        raise ReleaseError(
            f"{github.repository} already has a GitHub release {tag}: a released version is "
            "never released again. Bump the version (and the CHANGELOG) and tag the new one"
        )
    return version


def publish_github(tag: str, sha: str, github: GitHub, root: Path = ROOT) -> str:
    """Write the GitHub release from the CHANGELOG; move the major tag (vX) to `sha` unless a
    newer X.*.* release holds it. Returns what it did, for the job log."""
    version = tag_version(tag)
    body = notes(version, root)
    major = f"v{version_key(version)[0]}"
    tags = github.tags(f"{major}.")
    newer = [t for t in tags if TAG.fullmatch(t) and version_key(t[1:]) > version_key(version)]
    github.create_release(tag, body, latest=not newer)
    if newer:
        return f"released {tag}; {major} stays on {max(newer, key=lambda t: version_key(t[1:]))}"
    github.set_tag(major, sha, exists=major in github.tags(major))
    return f"released {tag}; {major} -> {sha}"


def smoke(dist: Path, expect: str, work: Path, pin: str = "") -> str:
    """Install the wheel in DIST into a fresh venv and run it as a user would: `--version`,
    then `init --yes` on a tiny project (which trains and runs once); with `pin` (a commit
    SHA), the workflows init wrote must use lepton-ci at that commit, as `# v<expect>`.
    Returns the log."""
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise ReleaseError(f"{dist}: expected one wheel, found {[w.name for w in wheels]}")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, str(wheels[0])], check=True)
    cli = str(venv / "bin" / "lepton-ci")
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    if out.strip() != f"{PROJECT} {expect}":
        raise ReleaseError(f"the wheel says {out.strip()!r}, expected '{PROJECT} {expect}'")
    project = work / "project"
    project.mkdir()
    (project / "train.py").write_text(
        "import json\njson.dump({'accuracy': 0.9}, open('metrics.json', 'w'))\n"
    )
    git = ["git", "-c", "user.name=release", "-c", "user.email=release@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a model"], cwd=project, check=True)
    proc = subprocess.run(
        [cli, "init", "--yes"], cwd=project, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ReleaseError(f"`lepton-ci init --yes` failed:\n{proc.stdout}{proc.stderr}")
    if pin:
        workflows = sorted((project / ".github" / "workflows").glob("*.yml"))
        refs = {m[1] for w in workflows for m in USES.finditer(w.read_text(encoding="utf-8"))}
        if not workflows or refs != {f"{pin} # v{expect}"}:
            raise ReleaseError(
                f"`init` pins lepton-ci at {sorted(refs)}, expected '{pin} # v{expect}' "
                "(did tools/pin.py run before the build?)"
            )
    return out + proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/release.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    tag_default = os.environ.get("GITHUB_REF_NAME", "")
    c = sub.add_parser("check")
    c.add_argument("--tag", default=tag_default)
    c.add_argument("--index", default=os.environ.get("LEPTON_RELEASE_INDEX") or PYPI_SIMPLE)
    c.add_argument("--no-github", action="store_true", help="skip the GitHub release lookup")
    sub.add_parser("version")
    n = sub.add_parser("notes")
    n.add_argument("version")
    s = sub.add_parser("smoke")
    s.add_argument("dist", type=Path)
    s.add_argument("--version", default=None, help="expected (default: lepton_ci/__init__.py)")
    s.add_argument("--pin", default="", help="the commit init's workflows must pin")
    g = sub.add_parser("github")
    g.add_argument("--tag", default=tag_default)
    g.add_argument("--sha", default=os.environ.get("GITHUB_SHA", ""))
    args = p.parse_args(argv)
    try:
        if args.step == "version":
            print(package_version())
        elif args.step == "check":
            gh = None if args.no_github else GitHub.from_env()
            version = check(args.tag, PackageIndex(args.index), gh)
            print(f"{args.tag}: releasing {PROJECT} {version}")
        elif args.step == "notes":
            sys.stdout.write(notes(args.version))
        elif args.step == "smoke":
            with tempfile.TemporaryDirectory() as tmp:
                expect = args.version or package_version()
                print(smoke(args.dist, expect, Path(tmp), args.pin))
        else:
            if not re.fullmatch(r"[0-9a-f]{40}", args.sha):
                raise ReleaseError(f"--sha {args.sha!r} is not a commit SHA (GITHUB_SHA)")
            print(publish_github(args.tag, args.sha, GitHub.from_env()))
    except ReleaseError as e:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            text = str(e).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            print(f"::error title=release {args.step}::{text}")
        else:
            print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
