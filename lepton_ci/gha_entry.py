"""`lepton-ci gha STEP`: the one entry point the composite actions call.

Every action input reaches code as an environment variable LEPTON_INPUT_<NAME> (set in the
action's `env:`), never through `${{ }}` inside a script; this module turns them into the
same argv a user would type, so the actions and the CLI cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from lepton_ci.core.errors import ConfigError

# step -> inputs: (input name, option or None for a positional, kind)
# kinds: value (--opt VALUE), flag (--opt when "true"), noflag (--opt when not "true")
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
    ],
    "card": [("model", "--model", "value"), ("version", "--version", "value")],
    "register": [
        ("model", "--model", "value"),
        ("bump", "--bump", "value"),
        ("version", "--version", "value"),
        ("push", "--push", "flag"),
    ],
    "build": [
        ("model", "--model", "value"),
        ("version", "--version", "value"),
        ("builder", "--builder", "value"),
        ("if-configured", "--if-configured", "flag"),
    ],
    "deploy": [
        ("environment", None, "value"),
        ("model", "--model", "value"),
        ("version", "--version", "value"),
        ("image", "--image", "value"),
        ("dry-run", "--dry-run", "flag"),
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
