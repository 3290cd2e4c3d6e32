"""Set lepton-ci up for a job: a private virtualenv with the hash-pinned runtime, once.

Run by install.sh after it checked the runner OS and the Python version (so this file may use
3.11 syntax). Standard library only; nothing is written into the action's own directory.

    bootstrap.py check     print the venv path, the cache key and whether the venv is ready
                           (as step outputs), so actions/cache runs only when it can help
    bootstrap.py           install what is missing, put `lepton-ci` on PATH; a venv this job
                           did not make (restored from a cache) is checked against the lock
                           first (venv_check.py), and made again if it differs
    bootstrap.py verify    check the venv against the lock (a cache entry, by hand)

The venv (`LEPTON_VENV`, default `$RUNNER_TEMP/lepton-ci-venv`) holds the dependencies from
requirements.txt, installed with `--require-hashes` by uv (from its PyPI wheel, or the `uv`
on PATH) or, failing that, by pip. lepton-ci itself is pure Python: its package is copied into
the venv's site-packages (no build, so no `build/` or egg-info) and refreshed whenever the
action's source differs. The optional `image` / `deploy` dependencies are added only when
`LEPTON_SETUP_STEP` names a step that needs them (`lepton-ci gha extras` decides from
lepton.yaml).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STAMP = ".lepton-setup.json"
DOWNLOAD_TRIES = 3
DOWNLOAD_TIMEOUT = 60
INSTALL_TIMEOUT = 600


# Set to `true` in the `env:` of a job that runs no untrusted code (it can write: tags,
# deployments, comments); lepton-ci's `run` then refuses to train there. Read by lepton-ci too.
TRUSTED_JOB = "LEPTON_TRUSTED_JOB"
# Set in the job's environment once its virtualenv was made or checked, so later steps of the
# same job (which share everything anyway) do not check it again.
CHECKED = "LEPTON_VENV_CHECKED"


class SetupError(Exception):
    """A setup failure with the fix in its message."""


def log(msg: str) -> None:
    print(msg, flush=True)


def annotate(kind: str, msg: str) -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::{kind} title=lepton-ci setup::{msg}", flush=True)
    else:
        print(f"{kind}: {msg}", file=sys.stderr, flush=True)


def output(name: str, value: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        append(path, f"{name}={value}")
    else:
        log(f"{name}={value}")


def platform_key() -> str:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if sys.platform == "darwin" else "aarch64"}.get(
        machine, machine
    )
    return f"{sys.platform}-{machine}"


def digest_files(paths: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(base)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def source_files() -> list[Path]:
    """lepton-ci's package as the action ships it (templates through their symlink)."""
    files = []
    for dirpath, dirnames, names in os.walk(ROOT / "lepton_ci", followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        files += [Path(dirpath) / n for n in names if not n.endswith(".pyc")]
    return files


def source_version() -> str:
    text = (ROOT / "lepton_ci" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    return m.group(1) if m else "?"


class Setup:
    def __init__(self, env: dict[str, str]) -> None:
        temp = env.get("RUNNER_TEMP") or env.get("TMPDIR") or "/tmp"  # noqa: S108
        self.env = env
        self.venv = Path(env.get("LEPTON_VENV") or Path(temp) / "lepton-ci-venv").absolute()
        self.bin = Path(str(self.venv) + "-bin")
        self._side: str | None = None

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    def side(self) -> str:
        """`trusted` for a job that says it runs no untrusted code, else `untrusted`. The two
        never share a cache entry: a job that trains (or runs a pull request's code) could
        leave anything in the virtualenv it saves, and a job that can write must not start
        that. A pull_request job runs the PR's code, whatever its `env:` says."""
        if self._side is None:
            self._side = self._decide_side()
        return self._side

    def _decide_side(self) -> str:
        value = self.env.get(TRUSTED_JOB, "").strip()
        if value not in ("", "true", "false"):
            raise SetupError(f"{TRUSTED_JOB} is `{value}`; it takes `true` or `false`")
        if value != "true":
            return "untrusted"
        if self.env.get("GITHUB_EVENT_NAME") == "pull_request":
            annotate(
                "warning",
                f"{TRUSTED_JOB}: true is ignored in a pull_request job: it runs the pull "
                "request's code, so its caches are the untrusted side's",
            )
            return "untrusted"
        return "trusted"

    def key(self) -> str:
        """Changes with what the venv's dependencies depend on: the locks, this Python and the
        runner platform, and with the side of the job (trusted or not). Not with the venv's
        path: it is created relocatable, and lepton-ci runs through the venv's `python` alone,
        so a cache restored elsewhere still works."""
        h = hashlib.sha256()
        for name in sorted(p.name for p in HERE.glob("requirements*.txt")):
            h.update((HERE / name).read_bytes())
        h.update(f"{os.path.realpath(sys.executable)}|{sys.version}".encode())
        v = sys.version_info
        return (
            f"lepton-ci-{self.side()}-{platform_key()}-py{v.major}.{v.minor}.{v.micro}-"
            f"{h.hexdigest()[:16]}"
        )

    def lock_files(self) -> list[Path]:
        raw = self.stamp().get("extras")
        extras = [str(e) for e in raw] if isinstance(raw, list) else []
        files = [HERE / "requirements.txt"]
        for extra in extras:
            f = HERE / f"requirements-{extra}.txt"
            if "/" in extra or not f.is_file():
                raise SetupError(f"the cached virtualenv names an unknown extra `{extra}`")
            files.append(f)
        return files

    def checked(self) -> str | None:
        """None when the venv, which this job did not make, is what the lock installs; else
        why not. Its own interpreter does not run before this says None."""
        sys.dont_write_bytecode = True  # no __pycache__ in the action's own directory
        import venv_check

        venv_check.prepare(self.venv)
        installer = str(self.stamp().get("installer") or "")
        try:
            venv_check.check(self.venv, self.lock_files(), installer)
        except (venv_check.Mismatch, SetupError) as e:
            return str(e)
        # The stamp is the cached venv's own claim: where its site-packages are is recomputed.
        site = venv_check.site_packages(self.venv)
        self.write_stamp(site=str(site.relative_to(self.venv)), src="")
        return None

    def stamp(self) -> dict[str, object]:
        try:
            data = json.loads((self.venv / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_stamp(self, **changes: object) -> None:
        data = {**self.stamp(), **changes}
        (self.venv / STAMP).write_text(json.dumps(data, sort_keys=True), encoding="utf-8")

    def ready(self) -> bool:
        return self.stamp().get("deps") == self.key() and self.venv_python.exists()

    # -- installers ---------------------------------------------------------------------
    def uv(self) -> Path | None:
        """uv from LEPTON_UV or PATH, else its pinned PyPI wheel (sha256-checked)."""
        named = self.env.get("LEPTON_UV") or shutil.which("uv")
        if named:
            return Path(named)
        target = Path(str(self.venv) + "-uv") / "uv"
        if target.exists():
            return target
        wheels = {}
        for line in (HERE / "uv-wheels.txt").read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                key, url, sha = line.split()
                wheels[key] = (url, sha)
        if platform_key() not in wheels:
            return None
        url, sha = wheels[platform_key()]
        log(f"lepton-ci setup: fetching {url.rsplit('/', 1)[-1]} (sha256 {sha[:12]}...)")
        data = download(url)
        if data is None or hashlib.sha256(data).hexdigest() != sha:
            annotate("warning", f"uv wheel from {url} missing or not matching its hash; using pip")
            return None
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            (member,) = [n for n in z.namelist() if n.endswith(".data/scripts/uv")]
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(z.read(member))
        tmp.chmod(0o755)
        tmp.replace(target)
        return target

    def create_venv(self) -> None:
        if self.venv.exists():
            shutil.rmtree(self.venv)
        if self.bin.exists():
            shutil.rmtree(self.bin)
        reqs = str(HERE / "requirements.txt")
        uv = self.uv()
        if uv is not None:
            try:
                venv = [str(uv), "venv", "--quiet", "--no-config", "--relocatable"]
                run([*venv, "--python", sys.executable, str(self.venv)])
                self.uv_install(uv, reqs)
            except SetupError as e:  # an old or broken uv on PATH must not stop the job
                annotate("warning", f"uv could not set lepton-ci up ({e}); using pip instead")
                shutil.rmtree(self.venv, ignore_errors=True)
                uv = None
        if uv is None:
            run([sys.executable, "-m", "venv", str(self.venv)])
            self.pip_install(reqs)
        self.write_stamp(deps=self.key(), extras=[], src="", installer="uv" if uv else "pip")

    def uv_install(self, uv: Path, reqs: str) -> None:
        run(
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--no-config",
                "--python",
                str(self.venv_python),
                "--require-hashes",
                "-r",
                reqs,
            ]
        )

    def pip_install(self, reqs: str) -> None:
        pip = [str(self.venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "--require-hashes", "--no-deps", "-r", reqs])

    def install_source(self) -> None:
        """Copy the lepton_ci package into site-packages when the action's source changed."""
        files = source_files()
        digest = digest_files(files, ROOT)
        if self.stamp().get("src") == digest and self.site().joinpath("lepton_ci").is_dir():
            return
        target = self.site() / "lepton_ci"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(
            ROOT / "lepton_ci",
            target,
            symlinks=False,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        self.write_stamp(src=digest)

    def site(self) -> Path:
        """The venv's site-packages (kept relative in the stamp: the venv may move)."""
        cached = self.stamp().get("site")
        if isinstance(cached, str) and (self.venv / cached).is_dir():
            return self.venv / cached
        out = subprocess.run(
            [str(self.venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        site = Path(out).resolve()
        self.write_stamp(site=str(site.relative_to(self.venv.resolve())))
        return site

    def install_extras(self, step: str) -> None:
        """Add the optional dependencies `step` needs with this lepton.yaml, if any."""
        proc = subprocess.run(
            [str(self.bin / "lepton-ci"), "gha", "extras"],
            env={**self.env, "LEPTON_INPUT_STEP": step},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            # The step itself reports the config error, with its file and fix; setup stays quiet.
            log(f"lepton-ci setup: could not tell the extras `{step}` needs; installing none")
            return
        raw = self.stamp().get("extras")
        have = [str(e) for e in raw] if isinstance(raw, list) else []
        for extra in proc.stdout.split():
            if extra in have:
                continue
            reqs = HERE / f"requirements-{extra}.txt"
            if not reqs.is_file():
                raise SetupError(f"no hash-pinned requirements for the `{extra}` extra: {reqs}")
            log(f"lepton-ci setup: adding the `{extra}` dependencies for `{step}`")
            # a venv made by uv has no pip: add to it the way it was made
            uv = self.uv() if self.stamp().get("installer") == "uv" else None
            if uv is not None:
                self.uv_install(uv, str(reqs))
            else:
                self.pip_install(str(reqs))
            have = [*have, extra]
            self.write_stamp(extras=have)

    def launcher(self) -> Path:
        """`lepton-ci` alone in a directory of its own: the venv's python3 must not shadow the
        one the user's train and evaluate commands expect (with their packages). `-P` keeps
        the working directory off sys.path, so a user's `yaml.py` cannot shadow a dependency."""
        self.bin.mkdir(parents=True, exist_ok=True)
        script = self.bin / "lepton-ci"
        text = f'#!/bin/sh\nexec {shlex.quote(str(self.venv_python))} -P -m lepton_ci "$@"\n'
        if not script.exists() or script.read_text(encoding="utf-8") != text:
            script.write_text(text, encoding="utf-8")
            script.chmod(0o755)
        return script

    def install(self) -> None:
        t0 = time.perf_counter()
        fresh = not self.ready()
        if not fresh and self.env.get(CHECKED) != str(self.venv):
            # From a cache (or left by an earlier job): checked before anything of it runs.
            problem = self.checked()
            if problem is not None:
                annotate(
                    "warning",
                    f"the lepton-ci virtualenv restored as {self.key()} is not what its lock "
                    f"installs ({problem}); deleted and made again. A job that runs untrusted "
                    "code may have saved it: delete that cache entry (Actions > Caches)",
                )
                fresh = True
        if fresh:
            log(f"lepton-ci setup: creating {self.venv} ({self.key()})")
            self.create_venv()
        append(self.env.get("GITHUB_ENV"), f"{CHECKED}={self.venv}")
        self.install_source()
        script = self.launcher()
        for step in self.env.get("LEPTON_SETUP_STEP", "").split():
            self.install_extras(step)
        # Later lepton-ci steps of the job find this venv's key only with the same Python.
        append(self.env.get("GITHUB_ENV"), f"LEPTON_PYTHON={sys.executable}")
        # `build` installs an image's dependency layer with uv when it finds one: the one this
        # setup used (a uv-made venv has no pip to fall back on).
        uv = self.env.get("LEPTON_UV") or shutil.which("uv")
        local = Path(str(self.venv) + "-uv") / "uv"
        if uv or local.exists():
            append(self.env.get("GITHUB_ENV"), f"LEPTON_UV={uv or local}")
        append(self.env.get("GITHUB_PATH"), str(self.bin))
        output("bin", str(self.bin))
        if fresh:  # prove the new venv runs; a ready one did when it was made
            version = run([str(script), "--version"], capture=True).strip()
        else:
            version = f"lepton-ci {source_version()}"
        how = "installed" if fresh else "ready"
        log(f"{version} {how} in {time.perf_counter() - t0:.2f} s ({self.venv})")


def append(path: str | None, line: str) -> None:
    if not path:
        return
    if "\n" in line or "\r" in line:
        raise SetupError(f"a path with a line break cannot go to the job's environment: {line!r}")
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def download(url: str) -> bytes | None:
    import urllib.request  # only a cold setup downloads: keep the warm path's imports few

    for attempt in range(DOWNLOAD_TRIES):
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:  # noqa: S310
                return bytes(r.read())
        except OSError as e:
            log(f"lepton-ci setup: download {url} failed ({e}); attempt {attempt + 1}")
            if attempt + 1 < DOWNLOAD_TRIES:
                time.sleep(1 + attempt)
    return None


def run(cmd: list[str], *, capture: bool = False) -> str:
    try:
        proc = subprocess.run(
            cmd, capture_output=capture, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise SetupError(f"`{shlex.join(cmd)}` took over {INSTALL_TIMEOUT} s; stopped") from None
    except OSError as e:
        raise SetupError(f"`{shlex.join(cmd)}` could not start: {e}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise SetupError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}) {detail}".strip())
    return proc.stdout or ""


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "install"
    setup = Setup(dict(os.environ))
    try:
        if mode == "check":
            ready = setup.ready()
            if not ready and setup.venv.exists():
                # a stale venv (a runner that keeps its temp directory) would mix with the
                # one actions/cache restores next
                shutil.rmtree(setup.venv)
            output("venv", str(setup.venv))
            output("key", setup.key())
            output("ready", "true" if ready else "false")
        elif mode == "install":
            setup.install()
        elif mode == "verify":
            problem = setup.checked() if setup.venv.is_dir() else f"no {setup.venv}"
            log(f"{setup.venv}: {problem or 'what its lock installs'}")
            return 0 if problem is None else 1
        else:
            raise SetupError(f"unknown mode `{mode}`; use `check`, `verify` or nothing")
    except SetupError as e:
        annotate("error", str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
