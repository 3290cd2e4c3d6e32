"""The examples as users write them: scikit-learn and PyTorch models trained, gated and
served by their own frameworks. What a server answers for the test split is exactly what
evaluate.py measured, and its /metrics is Prometheus text that counts the requests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from lepton_ci.core.hashing import hash_file
from tests.conftest import EXAMPLE_OUTPUTS, Cli, example_repo, first_deploy_on_free_port
from tests.support.backends import stop_splitters
from tests.support.examples import (
    EXAMPLES,
    ROOT,
    Evaluated,
    LocalServer,
    model_config,
    served_predictions,
)
from tests.support.services import check_port
from tests.test_example import BAD_BODIES

# The metric families each server exports (digits' are its own text, torch-cnn's come from
# prometheus_client): requests by path and code, predictions by class, the /predict latency.
PREFIX = {"digits": "digits", "torch-cnn": "cnn"}


def lepton(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lepton_ci", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def scratch_repo(tmp: Path, example: str) -> tuple[Path, dict[str, str]]:
    """The example committed in a new git repository, and the environment to run it in: this
    interpreter's bin first on PATH (the train command says `python3`), HOME and git isolated."""
    repo = tmp / example
    shutil.copytree(EXAMPLES[example], repo, ignore=shutil.ignore_patterns(*EXAMPLE_OUTPUTS))
    home = tmp / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n  name = Test\n  email = test@example.com\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEPTON_", "GIT_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "feat: model"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """`lepton-ci run` of one example, once per module (torch trains in about 20 s)."""
    example = request.param
    repo, env = scratch_repo(tmp_path_factory.mktemp(example), example)
    proc = lepton(repo, env, "run")
    return example, repo, env, proc


@pytest.fixture(scope="module")
def server(trained) -> Iterator[tuple[str, str, Path]]:
    example, repo, _, proc = trained
    assert proc.returncode == 0, proc.stdout + proc.stderr
    srv = LocalServer(repo, "v9.9.9")
    yield example, srv.url, repo
    srv.stop()


@pytest.mark.e2e
def test_run_passes_its_gates_and_records_the_predictions(trained):
    _, repo, _, proc = trained
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name, cfg = model_config(repo)
    record = json.loads((repo / ".lepton" / "runs" / f"{name}.json").read_text())
    assert record["verdict"] == "pass"
    verdicts = {g["metric"]: g["verdict"] for g in record["gates"]}
    assert verdicts["accuracy"] == verdicts["f1_macro"] == "pass", verdicts
    # predictions.json is an output: the record keeps its digest beside the model's
    assert set(record["outputs"]) == set(cfg["outputs"]) >= {"predictions.json"}
    assert record["outputs"]["predictions.json"]["hash"] == hash_file(repo / "predictions.json")
    evaluated = Evaluated(repo)
    assert len(evaluated.predictions) == len(evaluated.labels) > 400
    # the predictions are the ones the metrics were computed from
    assert evaluated.accuracy() == evaluated.metrics["accuracy"] == record["metrics"]["accuracy"]
    shares = evaluated.metrics["class_share"]
    assert shares == {
        str(c): round(evaluated.predictions.count(c) / len(evaluated.predictions), 6)
        for c in range(10)
    }


@pytest.mark.e2e
def test_served_predictions_equal_what_evaluate_measured(server):
    _, url, repo = server
    evaluated = Evaluated(repo)
    answer = served_predictions(url, evaluated.instances)
    assert answer == {"predictions": evaluated.predictions, "model_version": "v9.9.9"}
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(url + "/readyz", timeout=5).json()
    assert ready == {"status": "ready", "model_version": "v9.9.9"}


@pytest.mark.e2e
def test_metrics_parse_and_count_the_requests(server):
    example, url, repo = server
    evaluated = Evaluated(repo)
    before = scrape(url)
    n = len(evaluated.instances[:50])
    for _ in range(3):
        served_predictions(url, evaluated.instances[:50])
    assert (
        requests.post(url + "/predict", json={"instances": [[1, 2]]}, timeout=5).status_code == 400
    )
    after = scrape(url)
    p = PREFIX[example]

    def delta(name: str, **labels: str) -> float:
        return after.get((name, tuple(sorted(labels.items()))), 0.0) - before.get(
            (name, tuple(sorted(labels.items()))), 0.0
        )

    assert delta(f"{p}_requests_total", path="/predict", code="200") == 3
    assert delta(f"{p}_requests_total", path="/predict", code="400") == 1
    assert delta(f"{p}_predict_seconds_count") == 4
    by_class = {c: delta(f"{p}_predictions_total", **{"class": str(c)}) for c in range(10)}
    first = evaluated.predictions[:50]
    assert by_class == {c: 3 * first.count(c) for c in range(10)}
    assert sum(by_class.values()) == 3 * n
    assert after[(f"{p}_model_info", (("version", "v9.9.9"),))] == 1
    # every class exported from the start (drift must see none missing), with the process's
    assert all((f"{p}_predictions_total", (("class", str(c)),)) in before for c in range(10))
    assert ("process_resident_memory_bytes", ()) in after


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(url + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


@pytest.mark.e2e
@pytest.mark.parametrize("body", BAD_BODIES)
def test_predict_rejects_bad_input_with_400(server, body):
    r = requests.post(server[1] + "/predict", json=body, timeout=5)
    assert r.status_code == 400 and "error" in r.json()


@pytest.mark.e2e
def test_torch_training_is_deterministic_with_its_seed(tmp_path):
    """Two trainings with one seed write the same bytes; another seed, other weights."""
    work = tmp_path / "cnn"
    shutil.copytree(EXAMPLES["torch-cnn"], work, ignore=shutil.ignore_patterns(*EXAMPLE_OUTPUTS))
    params = work / "params.yaml"
    params.write_text(re.sub(r"epochs: \d+", "epochs: 1", params.read_text()))

    def train() -> str:
        subprocess.run([sys.executable, "train.py"], cwd=work, check=True, capture_output=True)
        return hashlib.sha256((work / "model.pth").read_bytes()).hexdigest()

    first = train()
    assert train() == first
    params.write_text(params.read_text().replace("seed: 7", "seed: 8"))
    assert train() != first


@pytest.mark.unit
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_requirements_are_pinned_and_agree_with_the_examples_extra(example):
    """Every line of both requirements files is `name==version`; the serving file pins the
    framework at the version training used; the `examples` extra (what tests train with)
    pins the same versions, so a model pickled in a test loads in the image."""

    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                assert sep and version and " " not in version, f"{path}: {line} is not pinned"
                out[re.sub(r"[-_.]+", "-", name.lower())] = version
        return out

    train = pins(EXAMPLES[example] / "requirements.txt")
    serve = pins(EXAMPLES[example] / "requirements-serve.txt")
    shared = set(train) & set(serve)
    assert {"torch"} <= shared if example == "torch-cnn" else {"scikit-learn", "joblib"} <= shared
    assert {k: train[k] for k in shared} == {k: serve[k] for k in shared}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["examples"]
    for spec in extra:
        name, _, version = spec.partition("==")
        if name in serve:
            assert serve[name] == version, f"{example}: {name}=={serve[name]} vs pyproject {spec}"
    assert "torch==2.13.0" in extra  # the CPU wheel on disk; any other pulls CUDA


# -- the images: the dependency layer brings the framework, podman runs them ------------------


@pytest.mark.e2e
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_deployed_image_serves_what_evaluate_measured(
    example, tmp_path, services, monkeypatch, capsys, shared_deps_cache
):
    """run, register, build (base, dependencies, code, model, metadata), deploy with podman
    (its golden checks pass), then the container answers the whole test split exactly as
    evaluate.py predicted it."""
    podman = services["podman"]
    for k, v in podman.config_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    repo = tmp_path / example
    example_repo(repo, services, example=EXAMPLES[example])
    cli = Cli(repo, capsys)
    for args in (("run",), ("register",), ("build", "--json")):
        code, out, err = cli(*args)
        assert code == 0, (args, out[-3000:], err[-3000:])
    build = json.loads(out)
    _, cfg = model_config(repo)
    assert cfg["image"]["requirements"] == "requirements-serve.txt"
    assert build["layers"]["dependencies"]["size"] > 1_000_000  # the framework, not the code
    assert build["layers"]["code"]["size"] < 100_000

    def deploy() -> tuple[int, str, str]:
        code, out, err = cli("deploy", "staging")
        check_port(err)
        return code, out, err

    try:
        port, (code, out, err) = first_deploy_on_free_port(repo, deploy)
        assert code == 0, out[-3000:] + err[-3000:]
        assert "staging: revision 1 deployed v0.1.0" in out
        url = f"http://127.0.0.1:{port}"
        evaluated = Evaluated(repo)
        answer = served_predictions(url, evaluated.instances)
        assert answer == {"predictions": evaluated.predictions, "model_version": "v0.1.0"}
        after = scrape(url)
        p = PREFIX[example]
        assert after[(f"{p}_requests_total", (("code", "200"), ("path", "/predict")))] >= 6
        assert after[(f"{p}_model_info", (("version", "v0.1.0"),))] == 1
    finally:
        podman("pod", "rm", "-af", "-t", "0", check=False)
        stop_splitters(tmp_path)
