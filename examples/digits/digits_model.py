"""The digits model at serving time: a linear classifier in plain Python (no numpy needed).

train.py fits it with scikit-learn and exports the weights to model.json; evaluate.py and
serve.py both predict through this one function, so what is measured is what is served.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path


def load_data(path: Path) -> tuple[list[list[float]], list[int]]:
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [[float(v) for v in r[:-1]] for r in rows], [int(r[-1]) for r in rows]


def split(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    cut = int(n * test_size)
    return idx[cut:], idx[:cut]


class Model:
    def __init__(self, weights: dict) -> None:
        self.mean = weights["mean"]
        self.scale = weights["scale"]
        self.coef = weights["coef"]
        self.intercept = weights["intercept"]
        self.classes = weights["classes"]

    @classmethod
    def load(cls, path: Path) -> Model:
        return cls(json.loads(path.read_text()))

    def scores(self, x: list[float]) -> list[float]:
        z = [(v - m) / s for v, m, s in zip(x, self.mean, self.scale, strict=True)]
        return [
            b + sum(w * v for w, v in zip(row, z, strict=True))
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]

    def predict(self, x: list[float]) -> int:
        s = self.scores(x)
        return self.classes[max(range(len(s)), key=s.__getitem__)]
