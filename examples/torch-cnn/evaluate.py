"""Score model.pth on the held-out split; write metrics.json and predictions.json."""

import json
import time
from pathlib import Path

import torch
import yaml
from data import load_data, split
from model import CLASSES, load, predict

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    torch.use_deterministic_algorithms(True)
    x, y = load_data()
    _, test_idx = split(len(y), params["test_size"], params["seed"])
    net = load(HERE / "model.pth")
    rows = [x[i] for i in test_idx]
    t0 = time.perf_counter()
    pred = predict(net, rows)
    per_sample_ms = (time.perf_counter() - t0) * 1000 / len(rows)
    truth = [y[i] for i in test_idx]
    f1s = []
    for c in CLASSES:
        tp = sum(p == c and t == c for p, t in zip(pred, truth, strict=True))
        fp = sum(p == c and t != c for p, t in zip(pred, truth, strict=True))
        fn = sum(p != c and t == c for p, t in zip(pred, truth, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    metrics = {
        "accuracy": round(sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth), 6),
        "f1_macro": round(sum(f1s) / len(f1s), 6),
        "latency_ms": round(per_sample_ms, 4),
        # The share of each predicted class: what `watch` compares live predictions with (PSI).
        "class_share": {str(c): round(pred.count(c) / len(pred), 6) for c in CLASSES},
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # What was measured, row by row: the served model must answer the same for these rows.
    (HERE / "predictions.json").write_text(
        json.dumps({"split": "test", "rows": test_idx, "predictions": pred}) + "\n"
    )
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
