"""Score model.json on the held-out split and write metrics.json."""

import json
import time
from pathlib import Path

import yaml
from digits_model import Model, load_data, split

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    x, y = load_data(HERE / "data" / "digits.csv.gz")
    _, test_idx = split(len(y), params["test_size"], params["seed"])
    model = Model.load(HERE / "model.json")
    t0 = time.perf_counter()
    pred = [model.predict(x[i]) for i in test_idx]
    per_sample_ms = (time.perf_counter() - t0) * 1000 / len(test_idx)
    truth = [y[i] for i in test_idx]
    accuracy = sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth)
    f1s = []
    for c in sorted(set(truth)):
        tp = sum(p == c and t == c for p, t in zip(pred, truth, strict=True))
        fp = sum(p == c and t != c for p, t in zip(pred, truth, strict=True))
        fn = sum(p != c and t == c for p, t in zip(pred, truth, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    metrics = {
        "accuracy": round(accuracy, 6),
        "f1_macro": round(sum(f1s) / len(f1s), 6),
        "latency_ms": round(per_sample_ms, 4),
        # The share of each predicted class: what `watch` compares live predictions with (PSI).
        "class_share": {str(c): round(pred.count(c) / len(pred), 6) for c in range(10)},
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
