"""The GitHub Actions runtime: outputs, step summary, annotations, groups, masks, debug.

Outside Actions the same calls print readable lines to the terminal, so every command behaves
the same on a laptop.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from lepton_ci.core.errors import LeptonError
from lepton_ci.core.escape import clean, log_text

_SHA = re.compile(r"[0-9a-f]{40}")


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    e = env if env is not None else os.environ
    return e.get("RUNNER_DEBUG") == "1" or e.get("ACTIONS_STEP_DEBUG", "").lower() == "true"


def load_event(env: Mapping[str, str]) -> dict[str, Any]:
    """The webhook payload of the event that started the workflow, or {} outside Actions (or
    when the file is unreadable, not JSON, or not an object: then nothing is known of it)."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def dig(data: object, *keys: str) -> object:
    """`data[k1][k2]...` of a payload (an event, a GitHub API answer), or None where a level
    is missing or not an object: a payload's shape is GitHub's to change, and a hand-made
    event file's to get wrong. Callers check the type of what they get."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def pr_number(event: Mapping[str, Any]) -> int | None:
    """The pull request's number from a pull_request event, or None (GitHub's start at 1)."""
    number = dig(event, "pull_request", "number")
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return number
    return None


def pr_head_sha(event: Mapping[str, Any]) -> str | None:
    """The pull request's head commit from a pull_request event, or None.

    On `pull_request` GitHub checks out refs/pull/N/merge: HEAD and GITHUB_SHA are a merge
    commit of the head into the base, which neither the PR nor its workflow_run names."""
    sha = dig(event, "pull_request", "head", "sha")
    return sha if isinstance(sha, str) and _SHA.fullmatch(sha) else None


def _escape_raw(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_data(value: str) -> str:
    """Escape a workflow-command message so newlines and `%` cannot forge a second command;
    control characters and bidi overrides are dropped."""
    return _escape_raw(clean(value))


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


class Runtime:
    """Writes workflow commands and files; tests hand in their own env and stream."""

    def __init__(self, env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.stream = stream or sys.stdout
        self.actions = in_actions(self.env)
        self._said_no_outputs = False

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def annotate(
        self,
        level: str,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        """level is error, warning or notice. With `file` (and `line`), GitHub shows the
        message on that line of the file in the run and the pull request."""
        if not self.actions:
            where = f"{file}:{line}" if file and line else file or ""
            prefix = f"{where}: " if where and where not in message else ""
            self._print(f"{level}: {log_text(prefix + message)}")
            return
        props = []
        if file:
            props.append(f"file={escape_property(self._relative(file))}")
            if line:
                props.append(f"line={line}")
                if col:
                    props.append(f"col={col}")
        if title:
            props.append(f"title={escape_property(title)}")
        sep = " " + ",".join(props) if props else ""
        self._print(f"::{level}{sep}::{escape_data(message)}")

    def _relative(self, file: str) -> str:
        """GitHub matches annotation files relative to the workspace."""
        workspace = self.env.get("GITHUB_WORKSPACE")
        if workspace:
            try:
                return str(Path(file).resolve().relative_to(Path(workspace).resolve()))
            except ValueError:
                pass
        return file

    def error(self, message: str, **kw: Any) -> None:
        self.annotate("error", message, **kw)

    def warning(self, message: str, **kw: Any) -> None:
        self.annotate("warning", message, **kw)

    def notice(self, message: str, **kw: Any) -> None:
        self.annotate("notice", message, **kw)

    def debug(self, message: str) -> None:
        if self.actions:
            self._print(f"::debug::{escape_data(message)}")
        elif debug_enabled(self.env):
            self._print(f"debug: {log_text(message)}")

    def mask(self, secret: str) -> None:
        if self.actions and secret:
            for line in secret.splitlines():
                if line.strip():
                    self._print(f"::add-mask::{_escape_raw(line)}")  # the secret as it is

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        self._print(f"::group::{escape_data(title)}" if self.actions else f"── {log_text(title)}")
        try:
            yield
        finally:
            if self.actions:
                self._print("::endgroup::")

    def set_output(self, name: str, value: str) -> None:
        """Write a step output; multi-line values use a random delimiter nobody can forge."""
        self._write_outputs(self._output_line(name, value))

    @staticmethod
    def _output_line(name: str, value: str) -> str:
        if "\n" in value or "\r" in value:
            # os.urandom is what secrets.token_hex reads; importing secrets (hmac,
            # OpenSSL) cost 5 ms of every command's start
            delim = f"ghadelim_{os.urandom(16).hex()}"
            return f"{name}<<{delim}\n{value}\n{delim}\n"
        return f"{name}={value}\n"

    def set_outputs(self, outputs: Mapping[str, str], required: tuple[str, ...] = ()) -> None:
        missing = [k for k in required if not outputs.get(k)]
        if missing:
            raise RuntimeError(f"required outputs missing: {', '.join(missing)}")
        # one write: a step's outputs are all there or none is
        self._write_outputs("".join(self._output_line(k, v) for k, v in outputs.items()))

    def _write_outputs(self, text: str) -> None:
        """Append to $GITHUB_OUTPUT. Unset (a runner that gives none, a job run by hand with
        GITHUB_ACTIONS=true): a notice, once, and no outputs. Unwritable: a LeptonError, by
        then the command's work is done, and stays done: only the outputs are lost."""
        path = self.env.get("GITHUB_OUTPUT")
        if not path:
            if self.actions and not self._said_no_outputs:
                self._said_no_outputs = True
                # stderr: stdout may be what the command prints (`card --print`)
                Runtime(self.env, sys.stderr).notice(
                    "GITHUB_OUTPUT is not set: this step's outputs are not written"
                )
            return
        try:
            with Path(path).open("a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise LeptonError(
                f"cannot write the step outputs to GITHUB_OUTPUT {path}: {e.strerror or e}. "
                "The command's work is done and stands (what it wrote, tagged or pushed is "
                "kept); only its outputs are missing",
                hint="point GITHUB_OUTPUT at a file this job can write (the runner sets it), "
                "or unset it",
            ) from None

    def summary(self, markdown: str) -> None:
        path = self.env.get("GITHUB_STEP_SUMMARY")
        if path:
            try:
                with Path(path).open("a", encoding="utf-8") as f:
                    f.write(markdown.rstrip("\n") + "\n\n")
            except OSError as e:  # a summary is for reading: never what fails a step
                Runtime(self.env, sys.stderr).warning(
                    f"cannot write the step summary to {path}: {e.strerror or e}"
                )
