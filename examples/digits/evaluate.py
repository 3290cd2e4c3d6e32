"""Score model.joblib on the held-out split; write metrics.json and predictions.json."""

import json
import time
from pathlib import Path

import joblib
import yaml
from data import load_data, split
from sklearn.metrics import accuracy_score, f1_score

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    x, y = load_data()
    _, test_idx = split(len(y), params["test_size"], params["seed"])
    model = joblib.load(HERE / "model.joblib")
    rows = [x[i] for i in test_idx]
    t0 = time.perf_counter()
    pred = [int(c) for c in model.predict(rows)]
    per_sample_ms = (time.perf_counter() - t0) * 1000 / len(rows)
    truth = [y[i] for i in test_idx]
    metrics = {
        "accuracy": round(float(accuracy_score(truth, pred)), 6),
        "f1_macro": round(float(f1_score(truth, pred, average="macro")), 6),
        "latency_ms": round(per_sample_ms, 4),
        # The share of each predicted class: what `watch` compares live predictions with (PSI).
        "class_share": {str(c): round(pred.count(c) / len(pred), 6) for c in range(10)},
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # What was measured, row by row: the served model must answer the same for these rows.
    (HERE / "predictions.json").write_text(
        json.dumps({"split": "test", "rows": test_idx, "predictions": pred}) + "\n"
    )
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
