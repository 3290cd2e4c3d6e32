import pytest

from lepton_ci.core.errors import ConfigError
from lepton_ci.gha_entry import STEPS, argv, env_name

pytestmark = pytest.mark.unit


def test_inputs_become_the_cli_argv():
    env = {
        env_name("model"): "digits",
        env_name("no-cache"): "true",
        env_name("fail-on-gate"): "false",
        env_name("working-directory"): "examples/digits",
    }
    assert argv("run", env) == [
        "-C",
        "examples/digits",
        "run",
        "--model",
        "digits",
        "--no-cache",
        "--no-fail",
    ]
    assert argv("run", {}) == ["run"]


@pytest.mark.parametrize(("name", "value"), [("cached-only", "yes"), ("fail-on-gate", "False")])
def test_a_switch_takes_only_true_or_false(name, value):
    with pytest.raises(ConfigError, match=f"input `{name}` is `{value}`; it takes `true` or"):
        argv("run", {env_name(name): value})
    assert argv("run", {env_name(name): "false"}) == ["run"] + (
        ["--no-fail"] if name == "fail-on-gate" else []
    )


def test_positionals_are_required_and_say_how():
    with pytest.raises(ConfigError, match="needs the input `stage`"):
        argv("promote", {env_name("model"): "m", env_name("version"): "v1.0.0"})
    assert argv(
        "promote",
        {
            env_name("model"): "m",
            env_name("version"): "v1.0.0",
            env_name("stage"): "prod",
            env_name("push"): "true",
        },
    ) == ["promote", "m", "v1.0.0", "prod", "--push"]


def test_hostile_values_stay_single_arguments():
    evil = '$(touch /tmp/pwned) `id` "; rm -rf /'
    out = argv("comment", {env_name("workflow"): evil})
    assert out == ["comment", "--workflow", evil]


def test_every_step_is_a_cli_command():
    from lepton_ci.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(STEPS) <= set(commands)


def test_unknown_step():
    with pytest.raises(ConfigError, match="unknown action step"):
        argv("nope", {})
