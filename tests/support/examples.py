"""The examples as users' repositories: their data rows, what evaluate.py wrote, and their
servers started as local processes with the entrypoint their lepton.yaml gives the image."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {"digits": ROOT / "examples" / "digits", "torch-cnn": ROOT / "examples" / "torch-cnn"}
# What each server prints once it listens (PORT=0 / --port 0: the port the OS gave it).
LISTENING = re.compile(r"(?:serving on |Uvicorn running on http://)127\.0\.0\.1:(\d+)")


def digits_rows(path: Path) -> tuple[list[list[float]], list[int]]:
    """Pixels and labels of data/digits.csv.gz, read here and not with the example's own code."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [[float(v) for v in r[:-1]] for r in rows], [int(r[-1]) for r in rows]


def model_config(repo: Path) -> tuple[str, dict[str, Any]]:
    """(name, config) of the one model in the example's lepton.yaml."""
    ((name, cfg),) = yaml.safe_load((repo / "lepton.yaml").read_text())["models"].items()
    return name, cfg


class Evaluated:
    """What evaluate.py measured: the test rows, their labels and the predictions it scored."""

    def __init__(self, repo: Path) -> None:
        pred = json.loads((repo / "predictions.json").read_text())
        self.metrics = json.loads((repo / "metrics.json").read_text())
        x, y = digits_rows(repo / "data" / "digits.csv.gz")
        self.instances = [x[i] for i in pred["rows"]]
        self.labels = [y[i] for i in pred["rows"]]
        self.predictions: list[int] = pred["predictions"]

    def accuracy(self) -> float:
        right = sum(p == t for p, t in zip(self.predictions, self.labels, strict=True))
        return round(right / len(self.labels), 6)


class LocalServer:
    """The example's server as its image runs it (lepton.yaml's image.entrypoint and env), here
    with this interpreter, the model in the work tree and a port the OS picks."""

    def __init__(self, repo: Path, version: str, timeout: float = 60.0) -> None:
        _, cfg = model_config(repo)
        image = cfg["image"]
        argv = [sys.executable if a == "python3" else a for a in image["entrypoint"]]
        # the image listens on every interface at 8080; here loopback, on a port of the OS's
        local = {"0.0.0.0": "127.0.0.1", "8080": "0"}  # noqa: S104 - the one never bound
        argv = [local.get(a, a) for a in argv]
        env = {**os.environ, **image.get("env", {}), "PORT": "0", "HOST": "127.0.0.1"}
        env["MODEL_PATH"] = str(repo / Path(env["MODEL_PATH"]).name)
        env["MODEL_VERSION"] = version
        self.log = repo / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while not (m := LISTENING.search(self.log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{m.group(1)}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def served_predictions(url: str, instances: list[list[float]]) -> dict[str, Any]:
    r = requests.post(url + "/predict", json={"instances": instances}, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json())
