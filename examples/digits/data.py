"""The digits data set (scikit-learn's bundled copy, exported to data/digits.csv.gz) and its
seeded train/test split, shared by train.py and evaluate.py so both see the same rows."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

DATA = Path(__file__).parent / "data" / "digits.csv.gz"


def load_data(path: Path = DATA) -> tuple[list[list[float]], list[int]]:
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [[float(v) for v in r[:-1]] for r in rows], [int(r[-1]) for r in rows]


def split(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the training and the test rows: a seeded shuffle, the first cut for test."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    cut = int(n * test_size)
    return idx[cut:], idx[:cut]
