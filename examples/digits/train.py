"""Fit a logistic regression on the digits data and export its weights to model.json."""

import json
from pathlib import Path

import yaml
from digits_model import load_data, split
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    x, y = load_data(HERE / "data" / "digits.csv.gz")
    train_idx, _ = split(len(y), params["test_size"], params["seed"])
    train_idx = train_idx[: params.get("max_samples") or len(train_idx)]
    xs = [x[i] for i in train_idx]
    ys = [y[i] for i in train_idx]
    scaler = StandardScaler().fit(xs)
    clf = LogisticRegression(C=params["C"], max_iter=params["max_iter"])
    clf.fit(scaler.transform(xs), ys)
    weights = {
        "mean": scaler.mean_.tolist(),
        # constant pixels have scale 0 in the data; StandardScaler keeps them at 1.
        "scale": scaler.scale_.tolist(),
        "coef": clf.coef_.tolist(),
        "intercept": clf.intercept_.tolist(),
        "classes": [int(c) for c in clf.classes_],
    }
    (HERE / "model.json").write_text(json.dumps(weights, sort_keys=True))
    print(f"trained on {len(ys)} samples: C={params['C']} -> model.json")


if __name__ == "__main__":
    main()
