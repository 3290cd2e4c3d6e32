"""Live traffic for a served digits model: batches of real digits posted until stopped.

Shared by the watch tests and the watch bench. Rows come from the example's data set, so the
predicted classes are spread the way the evaluation saw them; errors are counted, not raised.
"""

from __future__ import annotations

import csv
import gzip
import random
import threading
from pathlib import Path

import requests

DATA = Path(__file__).resolve().parents[2] / "examples" / "digits" / "data" / "digits.csv.gz"

# Applied to serve.py: a release that passes its health window (5 golden requests) and starts
# answering /predict with 500 once real traffic has made a few dozen requests.
DEGRADES_LATER = (
    "    def predict(self, body: bytes) -> tuple[int, dict]:\n",
    "    def predict(self, body: bytes) -> tuple[int, dict]:\n"
    "        self.served = getattr(self, 'served', 0) + 1\n"
    "        if self.served > 30:\n"
    "            return 500, {'error': 'degraded'}\n",
)


def degrade_later(serve: Path) -> None:
    text = serve.read_text()
    assert DEGRADES_LATER[0] in text, "serve.py changed: update DEGRADES_LATER"
    serve.write_text(text.replace(*DEGRADES_LATER))


class Traffic:
    def __init__(self, url: str, batch: int = 20, pause: float = 0.05) -> None:
        with gzip.open(DATA, "rt", newline="") as f:
            self.rows = [[float(v) for v in r[:-1]] for r in list(csv.reader(f))[1:]]
        self.url, self.batch, self.pause = url, batch, pause
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rnd = random.Random(7)  # noqa: S311 - a repeatable sample, not a secret
        http = requests.Session()
        while not self._stop.is_set():
            body = {"instances": rnd.sample(self.rows, self.batch)}
            try:
                code = http.post(self.url + "/predict", json=body, timeout=5).status_code
            except requests.RequestException:
                code = 0  # the pod is being replaced
            self.codes[code] = self.codes.get(code, 0) + 1
            self._stop.wait(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
