"""`lepton-ci gha STEP`: the one entry point the composite actions call.

Every action input reaches code as an environment variable LEPTON_INPUT_<NAME> (set in the
action's `env:`), never through `${{ }}` inside a script; this module turns them into the
same argv a user would type, so the actions and the CLI cannot drift apart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lepton_ci.core.errors import ConfigError

# step -> inputs: (input name, option or None for a positional, kind)
# kinds: value (--opt VALUE), flag (--opt when "true"), noflag (--opt when not "true"),
# pem (a private key's text, a secret: written to a file only this user reads, --opt FILE)
STEPS: dict[str, list[tuple[str, str | None, str]]] = {
    "run": [
        ("model", "--model", "value"),
        ("no-cache", "--no-cache", "flag"),
        ("cached-only", "--cached-only", "flag"),
        ("baseline", "--baseline", "value"),
        ("base-ref", "--base-ref", "value"),
        ("fail-on-gate", "--no-fail", "noflag"),
    ],
    "comment": [
        ("model", "--model", "value"),
        ("from", "--from", "value"),
        ("pr", "--pr", "value"),
        ("workflow", "--workflow", "value"),
        ("author", "--author", "value"),
    ],
    "card": [("model", "--model", "value"), ("version", "--version", "value")],
    "register": [
        ("model", "--model", "value"),
        ("bump", "--bump", "value"),
        ("version", "--version", "value"),
        ("push", "--push", "flag"),
        ("signing-key", "--signing-key", "pem"),
    ],
    "build": [
        ("model", "--model", "value"),
        ("version", "--version", "value"),
        ("builder", "--builder", "value"),
        ("signing-key", "--signing-key", "pem"),
        ("if-configured", "--if-configured", "flag"),
    ],
    "deploy": [
        ("environment", None, "value"),
        ("model", "--model", "value"),
        ("version", "--version", "value"),
        ("image", "--image", "value"),
        ("dry-run", "--dry-run", "flag"),
        ("shadow", "--shadow", "flag"),
    ],
    "promote": [
        ("model", None, "value"),
        ("version", None, "value"),
        ("stage", None, "value"),
        ("actor", "--actor", "value"),
        ("push", "--push", "flag"),
        ("deployed-here", "--deployed-here", "flag"),
    ],
    # the optional dependencies a step needs (the setup action asks before build and deploy)
    "extras": [
        ("step", None, "value"),
        ("model", "--model", "value"),
        ("builder", "--builder", "value"),
    ],
    "rollback": [
        ("environment", None, "value"),
        ("model", "--model", "value"),
        ("to", "--to", "value"),
    ],
    "watch": [
        ("environment", None, "value"),
        ("model", "--model", "value"),
        ("once", "--once", "flag"),
        ("issue", "--issue", "flag"),
        ("judge-only", "--judge-only", "flag"),
    ],
}


KEY_FILE = "lepton-signing-key.pem"


def key_file(env: Mapping[str, str], pem: str) -> Path:
    """The signing key given as an action input, in the runner's temp folder (emptied when
    the job ends; `gha` deletes it as soon as the step is done)."""
    if "PRIVATE KEY-----" not in pem:
        raise ConfigError(
            "the `signing-key` input is not a PEM private key",
            hint="store the key's PEM text as a secret and pass it: "
            "`signing-key: ${{ secrets.LEPTON_SIGNING_KEY }}`",
        )
    folder = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir())
    path = folder / f"{os.getpid()}-{KEY_FILE}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem if pem.endswith("\n") else pem + "\n")
    return path


def env_name(name: str) -> str:
    return "LEPTON_INPUT_" + name.upper().replace("-", "_")


def argv(step: str, env: Mapping[str, str]) -> list[str]:
    if step not in STEPS:
        raise ConfigError(f"unknown action step `{step}`; steps: {', '.join(STEPS)}")
    out: list[str] = []
    wd = env.get(env_name("working-directory"), "").strip()
    if wd:
        out += ["-C", wd]
    config = env.get(env_name("config"), "").strip()
    if config:
        out += ["--config", config]
    out.append(step)
    for name, option, kind in STEPS[step]:
        value = env.get(env_name(name), "").strip()
        if kind in ("flag", "noflag") and value not in ("", "true", "false"):
            # `yes` or `True` read as false would, e.g., let `cached-only: yes` train.
            raise ConfigError(
                f"the `{step}` action's input `{name}` is `{value}`; it takes `true` or `false`",
                hint=f"write `{name}: true` or `{name}: false`",
            )
        if kind == "flag":
            if value == "true":
                out.append(str(option))
        elif kind == "noflag":
            if value and value != "true":
                out.append(str(option))
        elif kind == "pem":
            if value:
                out += [str(option), str(key_file(env, env[env_name(name)]))]
        elif option is None:
            if not value:
                raise ConfigError(
                    f"the `{step}` action needs the input `{name}`",
                    hint=f"add `with: {{{name}: ...}}` to the step that uses it",
                )
            out.append(value)
        elif value:
            out += [option, value]
    return out
