"""The interpreter the train and evaluate commands run, and the distributions it has.

Asked of that interpreter itself: in Actions lepton-ci runs in a virtualenv of its own, so its
own sys.path says nothing about the training's. Spawning an interpreter costs 20-40 ms, so the
answer is kept (`Memo`) under the interpreter's realpath and the stat of every directory on
its sys.path: a pip install adds or removes a `*.dist-info` directory, which changes the
directory's mtime, so an unchanged environment costs a few stats, not a spawn.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from lepton_ci.core import atomic
from lepton_ci.core.errors import InputError

PROBE_TIMEOUT_S = 30.0
MEMO_ENTRIES = 32  # interpreters x environments answered; a few in any real work tree
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")  # python, python3, python3.12
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# What the probe prints, and nothing else: these values reach the record, the PR comment, the
# card and `::notice::` lines, where a newline could start a workflow command of its own.
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S*")
_PLATFORM = re.compile(r"[A-Za-z0-9_.+-]+")
_PACKAGE = re.compile(r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])==\S+")  # PEP 508
# What changes the interpreter's sys.path besides its own files, or which interpreter a
# version manager's shim starts.
_PATH_VARS = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "HOME",
    "PYENV_VERSION",
    "ASDF_PYTHON_VERSION",
)
# The files by which pyenv's and asdf's shims choose an interpreter, looked for from the
# working directory up; the global choice is `version` in the directory above the shims.
_SHIM_CHOICE = (".python-version", ".tool-versions")

# Runs in the training interpreter: anything from Python 3.6 on, standard library only. The
# metadata directory of a wheel is `name-version.dist-info` (the packaging spec), so its name
# says both; opening each METADATA costs 100 ms per hundred packages. The first of a name on
# sys.path is the one imported, so it is the one recorded. '' (the script's directory) is
# left out: training writes there, and it holds no installed distribution.
PROBE = r"""
import json, os, pathlib, platform, re, sys
def normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()
user_site = None
try:
    import site
    if site.ENABLE_USER_SITE:
        user_site = site.getusersitepackages()
except Exception:
    pass
paths = [p for p in sys.path if p]
found = {}
for entry in paths:
    try:
        names = sorted(os.listdir(entry))
    except OSError:
        continue
    for name in names:
        stem, dot, kind = name.rpartition(".")
        dist, version = None, None
        if dot and kind == "dist-info":
            dist, _, version = stem.partition("-")
        elif dot and kind == "egg-info":
            try:
                from importlib import metadata
                d = metadata.PathDistribution(pathlib.Path(entry, name))
                dist, version = d.metadata["Name"] or stem.partition("-")[0], d.version
            except Exception:
                continue
        if dist and version:
            found.setdefault(normal(dist), version)
print(json.dumps({
    "version": platform.python_version(),
    "platform": sys.platform + "-" + platform.machine(),
    "prefix": sys.prefix,
    "path": paths,
    "user_site": user_site,
    "packages": sorted(n + "==" + v for n, v in found.items()),
}))
"""


@dataclass(frozen=True)
class Found:
    """An interpreter: its path as the command would run it (a virtualenv's `python` is a
    link to the base interpreter, so the path, not its target, names the environment)."""

    path: str
    source: str
    # The PATH the command gives itself, when it assigns one (the probe runs with it too).
    path_env: str | None = None
    # Why lepton-ci did not follow a command to its interpreter, when it did not: a warning.
    guessed: str | None = None


@dataclass(frozen=True)
class Answer:
    version: str
    platform: str
    packages: list[str]


def _first_word(command: str | list[str]) -> str | None:
    """The program a command runs: argv[0], or the first word of a shell string after any
    `VAR=value` assignments and an `env` or `exec` in front."""
    return _program(command).word


# Words that change, at run time, what a following `python` is: lepton-ci does not follow them.
_UNFOLLOWED = {
    "cd": "it changes directory (`cd`)",
    "pushd": "it changes directory (`pushd`)",
    "source": "it sources a script (`source`)",
    ".": "it sources a script (`.`)",
    "export": "it exports variables (`export`)",
    "eval": "it runs `eval`",
}
_RUNNERS = ("conda", "mamba", "micromamba", "uv", "poetry", "pipenv", "pdm", "hatch", "pixi")
_SHELL_VAR = re.compile(r"\$(PATH\b|\{PATH\})")


@dataclass(frozen=True)
class Program:
    """What a command runs (`word`), the environment it assigns in front of it, and why that
    cannot be followed, if it cannot."""

    word: str | None
    assigns: dict[str, str]
    unfollowed: str | None = None


def _program(command: str | list[str]) -> Program:
    if isinstance(command, list):
        words = list(command)
    else:
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: the shell will say so when it runs
            return Program(None, {})
    assigns: dict[str, str] = {}
    after_env = False
    for i, word in enumerate(words):
        if _ASSIGNMENT.match(word):
            name, _, value = word.partition("=")
            assigns[name] = value
            continue
        if after_env and word.startswith("-"):
            continue
        if word in ("env", "exec") and i + 1 < len(words):
            after_env = True
            continue
        if isinstance(command, str) and word in _UNFOLLOWED:
            return Program(word, assigns, _UNFOLLOWED[word])
        if Path(word).name in _RUNNERS and "run" in words[i + 1 : i + 4]:
            return Program(word, assigns, f"it runs through `{Path(word).name} run`")
        return Program(word, assigns)
    return Program(None, assigns)


def _command_env(
    program: Program, command: str | list[str], env: Mapping[str, str]
) -> tuple[dict[str, str], str | None]:
    """The environment the program gets: `env` with the command's own PATH in front, `$PATH`
    and `${PATH}` in it expanded from `env`. Returns (environment, why it cannot be followed)."""
    if program.unfollowed:
        return dict(env), program.unfollowed
    for name in ("PYTHONPATH", "PYTHONHOME"):
        if name in program.assigns:
            return dict(env), f"it assigns {name}"
    out = dict(env)
    if "PATH" in program.assigns:
        value = program.assigns["PATH"]
        if isinstance(command, list):  # argv: no shell expands anything
            out["PATH"] = value
            return out, None
        expanded = _SHELL_VAR.sub(lambda _m: env.get("PATH", os.defpath), value)
        if "$" in expanded or "`" in expanded:
            return dict(env), f"its PATH ({value}) expands more than $PATH"
        out["PATH"] = expanded
    return out, None


def _lookup(word: str, *, cwd: Path, env: Mapping[str, str]) -> str | None:
    """Where a command word leads: a path (relative to `cwd`), or a name on env's PATH."""
    if "/" in word:
        p = cwd / word
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(word, path=env.get("PATH", os.defpath))


def resolve(
    commands: Mapping[str, str | list[str]],
    *,
    configured: str | None,
    root: Path,
    cwd: Path,
    env: Mapping[str, str],
) -> Found:
    """`environment.python` if set; else the interpreter the first command starting with
    `python`/`python3`/`pythonX.Y` (or a path to one) runs; else `python3` on PATH."""
    if configured is not None:
        where = root if "/" in configured else cwd
        found = _lookup(configured, cwd=where, env=env)
        if found is None:
            raise InputError(
                f"{root / 'lepton.yaml'}: `environment.python` is `{configured}`, which is "
                + ("not an executable file" if "/" in configured else "not on PATH"),
                hint="give the training interpreter's path relative to lepton.yaml "
                "(`.venv/bin/python`) or a name on PATH (`python3.12`)",
            )
        return Found(found, "named by environment.python")
    unfollowed = None
    for step, command in commands.items():
        program = _program(command)
        run_env, why = _command_env(program, command, env)
        if why is not None:
            unfollowed = f"the {step} command `{_shown(command)}` cannot be followed: {why}"
            break
        word = program.word
        if word is None or not _PYTHON.fullmatch(Path(word).name):
            continue
        found = _lookup(word, cwd=cwd, env=run_env)
        if found is None:
            raise InputError(
                f"the {step} command runs `{word}`, which "
                + (f"is not an executable file in {cwd}" if "/" in word else "is not on PATH"),
                hint=f"install it or fix `{step}:` in lepton.yaml; or name the interpreter with "
                "`environment.python`",
            )
        path_env = run_env["PATH"] if "PATH" in program.assigns else None
        return Found(found, f"named by the {step} command", path_env=path_env)
    found = shutil.which("python3", path=env.get("PATH", os.defpath))
    if found is None:
        raise InputError(
            "no train or evaluate command starts with `python`, and `python3` is not on PATH: "
            "lepton-ci cannot tell which interpreter's packages the run used",
            hint="name the interpreter in lepton.yaml: `environment: {python: .venv/bin/python}`",
        )
    if unfollowed is not None:
        return Found(
            found,
            "python3 on PATH: a command cannot be followed",
            guessed=f"{unfollowed}; recorded the packages of python3 on PATH ({found}), which "
            "may not be the training's: name the training interpreter with "
            "`environment.python` in lepton.yaml",
        )
    return Found(found, "python3 on PATH: no command starts with python")


def _shown(command: str | list[str]) -> str:
    text = command if isinstance(command, str) else shlex.join(command)
    return text if len(text) <= 80 else text[:77] + "..."


class Memo:
    """Answers kept in a JSON file, each valid while the stat of the files it depended on is
    unchanged. A lost or damaged file only costs the answers again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] | None = None
        self._dirty = False

    def _entries(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(atomic.read_text(self.path))
            except (OSError, ValueError):
                data = {}
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def get(self, key: str) -> Any:
        entry = self._entries().get(key)
        if not isinstance(entry, dict) or entry.get("stat") != signature(entry.get("files", [])):
            return None
        return entry.get("answer")

    def put(self, key: str, files: list[str], answer: Any, since_ns: int) -> None:
        """Keep `answer`, unless a file changed within 2 s of `since_ns` (when it was asked):
        a change in the same clock tick as the answer would leave the same mtime behind."""
        sig = signature(files)
        if any(s is not None and s[0] > since_ns - 2_000_000_000 for s in sig):
            return
        entries = self._entries()
        entries[key] = {"files": files, "stat": sig, "answer": answer, "at": since_ns}
        while len(entries) > MEMO_ENTRIES:  # the interpreters of long ago go first
            del entries[min(entries, key=lambda k: _at(entries[k]))]
        self._dirty = True

    def save(self) -> None:
        if self._dirty and self._data is not None:
            with contextlib.suppress(OSError):  # a read-only cache dir costs a spawn, no more
                atomic.write_text(self.path, json.dumps(self._data, sort_keys=True))
            self._dirty = False


def _at(entry: Any) -> int:
    at = entry.get("at") if isinstance(entry, dict) else None
    return at if isinstance(at, int) else 0


def signature(files: list[str]) -> list[list[int] | None]:
    out: list[list[int] | None] = []
    for f in files:
        try:
            st = os.stat(f)  # noqa: PTH116 (a str per file: no Path each)
        except OSError:
            out.append(None)
            continue
        out.append([st.st_mtime_ns, st.st_ino, st.st_size])
    return out


def ask(found: Found, *, cwd: Path, env: Mapping[str, str], memo: Memo) -> Answer:
    """The interpreter's version, platform and `name==version` distributions."""
    real = os.path.realpath(found.path)
    key = json.dumps(["python", found.path, real, str(cwd), [env.get(v) for v in _PATH_VARS]])
    cached = memo.get(key)
    if not _answer(cached) or _invalid(cached) is not None:
        since = time.time_ns()
        cached = _probe(found, cwd=cwd, env=env)
        venv_cfg = str(Path(cached["prefix"]) / "pyvenv.cfg")
        watched = [real, venv_cfg, *cached["path"], *filter(None, [cached.get("user_site")])]
        memo.put(key, watched + _shim_choice(real, cwd), cached, since)
    return Answer(cached["version"], cached["platform"], list(cached["packages"]))


def _shim_choice(real: str, cwd: Path) -> list[str]:
    """A script in the interpreter's place is a version manager's shim: the files it chooses
    by decide which interpreter answered, so they are watched too."""
    try:
        with open(real, "rb") as f:
            if f.read(2) != b"#!":
                return []
    except OSError:
        return []
    here = cwd.resolve()
    dirs = [here, *here.parents]
    return [str(d / n) for d in dirs for n in _SHIM_CHOICE] + [
        str(Path(real).parent.parent / "version")
    ]


def _probe(found: Found, *, cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    def fail(why: str) -> InputError:
        return InputError(
            f"the training interpreter {found.path} ({found.source}) could not be asked "
            f"what it has installed: {why}",
            hint="check that it runs (`" + shlex.quote(found.path) + " -c pass`), or name "
            "another with `environment.python` in lepton.yaml",
        )

    # Its own process group, killed whatever happens: a wrapper or shim in the interpreter's
    # place may start children of its own, which a timeout or Ctrl-C must not leave running
    # (a Ctrl-C in a terminal no longer reaches a group of its own).
    try:
        proc = subprocess.Popen(
            [found.path, "-c", PROBE],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as e:
        raise fail(str(e)) from None
    try:
        stdout, stderr = proc.communicate(timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise fail(f"no answer within {PROBE_TIMEOUT_S:.0f} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise fail(f"it exited with code {proc.returncode}: {tail[0]}")
    try:
        answer = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if not _answer(answer):
        raise fail(f"it printed something else: {stdout[:200]!r}")
    wrong = _invalid(answer)
    if wrong is not None:
        raise fail(f"its answer is not what the probe prints: {wrong}")
    return answer


def _answer(value: Any) -> TypeGuard[dict[str, Any]]:
    """The probe's answer has its shape (a memo file edited by hand may not)."""
    return (
        isinstance(value, dict)
        and all(isinstance(value.get(k), str) for k in ("version", "platform", "prefix"))
        and all(
            isinstance(value.get(k), list) and all(isinstance(x, str) for x in value[k])
            for k in ("packages", "path")
        )
        and isinstance(value.get("user_site"), str | None)
    )


def _invalid(answer: dict[str, Any]) -> str | None:
    """What in a well-shaped answer is not a version, platform or `name==version`."""

    def clean(text: str, pattern: re.Pattern[str]) -> bool:
        return text.isprintable() and pattern.fullmatch(text) is not None

    if not clean(answer["version"], _VERSION):
        return f"version {answer['version']!r} is not a Python version such as 3.12.1"
    if not clean(answer["platform"], _PLATFORM):
        return f"platform {answer['platform']!r} is not a word such as linux-x86_64"
    for package in answer["packages"]:
        if not clean(package, _PACKAGE):
            return f"package {package[:100]!r} is not `name==version` (PEP 508 name)"
    return None
