"""Hostile YAML: how fast an alias bomb in lepton.yaml, params and metrics is refused.

The issue's bomb: a params file of a few hundred bytes that PyYAML expands without limit (9
levels of 9 aliases, 387 million strings). The target is "a clear error in well under a
second"; each case is measured end to end through the reader the run uses, against 1 s.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path

from _timing import best_of, report

from lepton_ci.core import config
from lepton_ci.core.errors import LeptonError
from lepton_ci.run.metrics import read_metrics, read_params

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
MODEL = "models:\n  mm: {train: t, metrics: [m.json]}\n"


def refused(fn: Callable[[Path], object], path: Path) -> None:
    try:
        fn(path)
    except LeptonError:
        return
    raise SystemExit(f"{path.name}: the bomb was NOT refused")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        cases = {
            "lepton.yaml": (MODEL + BOMB, config.load),
            "params.yaml": (BOMB, lambda p: read_params([p])),
            "metrics.yaml": (BOMB, lambda p: read_metrics([p])),
        }
        print(f"bomb: {len(BOMB.encode())} bytes, expands to 9**9 = {9**9:,} strings")
        for name, (text, reader) in cases.items():
            path = Path(d) / name
            path.write_text(text)
            took = best_of(5, lambda p=path, r=reader: refused(r, p))
            report(f"refuse the alias bomb in {name}", took, 1.0)


if __name__ == "__main__":
    main()
