"""Write scikit-learn's bundled digits data set to data/digits.csv.gz (no download)."""

import csv
import gzip
import io
from pathlib import Path

from sklearn.datasets import load_digits


def main() -> None:
    digits = load_digits()
    out = Path(__file__).parent / "data" / "digits.csv.gz"
    out.parent.mkdir(exist_ok=True)
    # mtime=0: the same data gives the same bytes, so its hash only moves when the data does.
    with gzip.GzipFile(out, "wb", mtime=0) as raw, io.TextIOWrapper(raw, newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([f"p{i}" for i in range(64)] + ["label"])
        for x, y in zip(digits.data, digits.target, strict=True):
            w.writerow([int(v) for v in x] + [int(y)])
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(digits.target)} rows)")


if __name__ == "__main__":
    main()
