"""Fit a scaler and a logistic regression on the digits data; save the pipeline to model.joblib."""

from pathlib import Path

import joblib
import yaml
from data import load_data, split
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    x, y = load_data()
    train_idx, _ = split(len(y), params["test_size"], params["seed"])
    train_idx = train_idx[: params.get("max_samples") or len(train_idx)]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=params["C"], max_iter=params["max_iter"])
    )
    model.fit([x[i] for i in train_idx], [y[i] for i in train_idx])
    # The fitted estimator itself, as scikit-learn loads it back: serve.py predicts with it.
    joblib.dump(model, HERE / "model.joblib")
    print(f"trained on {len(train_idx)} samples: C={params['C']} -> model.joblib")


if __name__ == "__main__":
    main()
