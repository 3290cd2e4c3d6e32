"""The command line on fuzzed outside input, in-process, in real git repositories: whatever
lepton.yaml, metrics, params or event file it meets, it succeeds or refuses with a clear error
(exit 1), never exit 70 ("a bug in lepton-ci").

One repository per test, shared by its examples: each example rewrites the fuzzed file."""

import copy
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lepton_ci.cli import main
from tests.conftest import commit_all, git
from tests.support.fuzz import (
    EVENT_FILE,
    FUZZ,
    HOSTILE,
    SCALAR,
    TREE,
    YAML_SOUP,
    json_bytes,
    tree_text,
)
from tests.support.github_server import GitHubServer

pytestmark = pytest.mark.unit

# Each example runs git (and `run` its two commands): few examples, one repository for all.
CLI = settings(
    FUZZ,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONFIG = {
    "models": {
        "m": {
            # No fuzzed value ever becomes a command: these two are never replaced.
            "train": "true",
            "evaluate": "cp fuzz.json metrics.json && cp fuzz.yaml metrics.yaml",
            "params": ["params.yaml"],
            "metrics": ["metrics.json", "metrics.yaml"],
            "gates": {
                "acc": {"direction": "higher", "min": 0.5, "key": True},
                "loss": {"direction": "lower", "max_regression_pct": 50},
            },
        }
    },
    "stages": {"staging": {}, "prod": {"requires": "staging"}},
}


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k not in ("train", "evaluate"):
                out += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*prefix, i))
    return out


def _mutated(path: tuple, value: object, rename: bool) -> object:
    """CONFIG with the value at `path` replaced (or its key renamed to `value`): near-valid
    configs that reach the checks a random text never does."""
    cfg = copy.deepcopy(CONFIG)
    if not path:
        return value
    *head, last = path
    parent: object = cfg
    for k in head:
        parent = parent[k]  # type: ignore[index]
    if rename and isinstance(parent, dict) and isinstance(value, str | int | float | None):
        parent[value] = parent.pop(last)
    else:
        parent[last] = value  # type: ignore[index]
    return cfg


def _repo(root: Path) -> Path:
    root.mkdir()
    (root / "lepton.yaml").write_text(yaml.safe_dump(CONFIG))
    (root / "fuzz.json").write_text('{"acc": 0.9, "loss": 0.1}')
    (root / "fuzz.yaml").write_text("extra: {speed: 3}\n")
    (root / "params.yaml").write_text("lr: 0.1\n")
    (root / ".gitignore").write_text(".lepton/\nmetrics.json\nmetrics.yaml\n")
    git(root, "init", "-q")
    commit_all(root, "feat: a model")
    return root


def _exit(*argv: str) -> int:
    code = main(list(argv))
    assert code != 70, argv  # a crash: the traceback is in the captured output
    return code


@settings(CLI, max_examples=30)
@given(
    st.one_of(
        YAML_SOUP,
        TREE.map(tree_text),
        st.tuples(st.sampled_from(_paths(CONFIG)), TREE, st.booleans()).map(
            lambda t: tree_text(_mutated(*t))
        ),
    ),
    st.sampled_from([["register"], ["versions"], ["extras", "build"], ["diff"], ["card"]]),
)
def test_no_config_makes_a_command_exit_70(tmp_path, text, command):
    repo = tmp_path / "repo"
    if not repo.exists():
        _repo(repo)
    (repo / "lepton.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    assert _exit("-C", str(repo), *command) in (0, 1)


METRICS_TREE = st.one_of(
    TREE,
    st.dictionaries(
        st.sampled_from(["acc", "loss", "extra", "a.b", "acc.x", ""]) | HOSTILE,
        SCALAR | st.dictionaries(HOSTILE, SCALAR, max_size=2),
        max_size=4,
    ),
)


@settings(CLI, max_examples=25)
@given(
    st.one_of(METRICS_TREE.map(json_bytes), st.binary(max_size=40)),
    st.one_of(METRICS_TREE.map(tree_text), YAML_SOUP),
    st.one_of(METRICS_TREE.map(tree_text), YAML_SOUP),
)
def test_no_metrics_or_params_file_makes_run_exit_70(tmp_path, metrics_json, metrics_yaml, params):
    repo = tmp_path / "repo"
    if not repo.exists():
        _repo(repo)
    (repo / "fuzz.json").write_bytes(metrics_json)
    (repo / "fuzz.yaml").write_text(metrics_yaml, encoding="utf-8", errors="surrogatepass")
    (repo / "params.yaml").write_text(params, encoding="utf-8", errors="surrogatepass")
    assert _exit("-C", str(repo), "run", "--no-cache") in (0, 1)


REPO = "acme/models"
ENV_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")  # env-safe


@pytest.fixture
def github():
    with GitHubServer() as srv:
        yield srv


@settings(CLI, max_examples=20)
@given(
    EVENT_FILE,
    st.sampled_from(["pull_request", "workflow_run", "push", ""]),
    st.one_of(st.text(ENV_CHARS, max_size=12), st.text(ENV_CHARS, min_size=195, max_size=240)),
    st.one_of(st.from_regex(r"\A[0-9]{1,12}\Z"), st.text(ENV_CHARS, max_size=8)),
)
def test_no_event_file_makes_run_or_comment_exit_70(
    tmp_path, monkeypatch, github, event, event_name, workflow, run_id
):
    """`run` reads the PR head and number from the event, `comment` posts the bundle it wrote
    from a workflow_run job (to the GitHub stand-in), as the two-phase workflow does."""
    repo = tmp_path / "repo"
    if not repo.exists():
        _repo(repo)
        head = git(repo, "rev-parse", "HEAD")
        github.state.add_pull(REPO, 7, head)
    with tempfile.NamedTemporaryFile(dir=tmp_path, suffix=".json", delete=False) as f:
        f.write(event)
    env = {
        "GITHUB_EVENT_PATH": f.name,
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_WORKFLOW": workflow,
        "GITHUB_RUN_ID": run_id,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github.url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert _exit("-C", str(repo), "run") == 0
    bundle = repo / ".lepton" / "report" / "m"
    meta = json.loads((bundle / "meta.json").read_text())
    assert len(meta["workflow"]) <= 200
    assert _exit("-C", str(repo), "comment") == 0  # no token: rendered locally
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    assert _exit("comment", "--from", str(bundle), "--pr", "7") in (0, 1)
    assert _exit("comment", "--from", str(bundle)) in (0, 1)


TAG_NAMES = st.one_of(
    st.sampled_from(
        ["m@v0.1.0", "m@v0.2.0-rc.1", "m@v0.2.0-rc.1+b.5", "m@v1.0.0", "m@v0.1.0!#1",
         "m#staging#1", "m#prod#2", "m#prod!#3", "m@deprecated#4", "m@v00.1.0", "x@v1.0.0"]
    ),
    st.from_regex(r"\Am@v[0-9]{1,2}\.[0-9]\.[0-9](-[0-9A-Za-z.]{1,5})?\Z"),
)  # fmt: skip
RECORD_CHANGE = st.dictionaries(
    st.sampled_from(["metrics", "model", "git", "gates", "schema_version", "created_at", "x"]),
    TREE,
    max_size=2,
)


def _message(record: dict, change: dict, cut: int | None, noise: str) -> str:
    """A tag message around a record with some fields replaced, cut short, or text alone."""
    body = json.dumps({**record, **change}, default=str)
    if cut is not None:
        body = body[:cut]
    return f"Register m: {noise}\n\n-----BEGIN LEPTON-CI RECORD-----\n{body}\n" + (
        "-----END LEPTON-CI RECORD-----\n" if cut is None else ""
    )


@settings(CLI, max_examples=25)
@given(
    TAG_NAMES,
    st.one_of(
        HOSTILE,
        st.tuples(RECORD_CHANGE, st.none() | st.integers(0, 400), HOSTILE),
    ),
    st.sampled_from(
        [["versions"], ["versions", "--all", "--json"], ["show", "m"], ["show", "m@latest"],
         ["history", "m"], ["card", "--version", "v0.1.0"], ["diff"], ["run"], ["register"]]
    ),
)  # fmt: skip
def test_no_tag_anyone_pushed_makes_a_registry_command_exit_70(tmp_path, name, message, command):
    """Tags are outside input: anyone with push access (or a fork's PR ref) can write one, with
    any message. Each example adds or replaces one tag in the shared repository."""
    repo = tmp_path / "repo"
    if not repo.exists():
        _repo(repo)
        assert _exit("-C", str(repo), "run") == 0
    record = json.loads((repo / ".lepton" / "runs" / "m.json").read_text())
    text = message if isinstance(message, str) else _message(record, *message)
    tagged = subprocess.run(
        ["git", "tag", "-f", "-a", "-F", "-", name],
        cwd=repo,
        input=text.encode("utf-8", "surrogatepass"),
        capture_output=True,
        check=False,
    )
    if tagged.returncode != 0:  # git refuses the name: nobody can push it either
        reject()
    assert _exit("-C", str(repo), *command) in (0, 1)
