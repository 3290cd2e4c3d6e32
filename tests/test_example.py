"""The digits example: its server answers, and the README's demo command stays true."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.support.examples import digits_rows

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # train.py writes beside itself; train in a copy so the checkout stays clean
    work = tmp_path_factory.mktemp("digits")
    shutil.copytree(EXAMPLE, work, dirs_exist_ok=True)
    subprocess.run([sys.executable, "train.py"], cwd=work, check=True, capture_output=True)
    sys.path.insert(0, str(work))
    try:
        import serve
    finally:
        sys.path.remove(str(work))
    return serve, work


@pytest.fixture
def server(trained):
    """A server of its own per test: its counters start at zero whatever ran before."""
    serve, work = trained
    srv = serve.serve("127.0.0.1", 0, work / "model.joblib", "v9.9.9")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", work
    srv.shutdown()
    srv.server_close()


def call(url, body=None):
    r = requests.request("GET" if body is None else "POST", url, json=body, timeout=10)
    return r.status_code, r.text


@pytest.mark.e2e
def test_health_ready_predict_metrics(server):
    base, work = server
    assert call(base + "/healthz") == (200, '{"status": "ok"}')
    code, body = call(base + "/readyz")
    assert code == 200 and json.loads(body)["model_version"] == "v9.9.9"
    x, y = digits_rows(work / "data" / "digits.csv.gz")
    code, body = call(base + "/predict", {"instances": [x[0], x[1], x[2]]})
    assert code == 200
    assert json.loads(body)["predictions"] == y[:3] == [0, 1, 2]
    code, body = call(base + "/metrics")
    assert code == 200
    assert 'digits_requests_total{path="/predict",code="200"} 1' in body
    for c in range(10):  # every class exported from the start, so drift sees none missing
        assert f'digits_predictions_total{{class="{c}"}} {int(c < 3)}' in body
    assert "digits_predict_seconds_count 1" in body
    assert "process_resident_memory_bytes " in body and "process_start_time_seconds " in body
    assert 'digits_model_info{version="v9.9.9"} 1' in body


# Bodies /predict must refuse with a 400: wrong width, no instances, strings, booleans.
BAD_BODIES = [
    {"instances": [[1, 2]]},
    {"x": 1},
    {"instances": [["a"] * 64]},
    {"instances": []},
    {"instances": [[True] * 64]},
]


@pytest.mark.e2e
@pytest.mark.parametrize("body", BAD_BODIES)
def test_predict_rejects_bad_input_with_400(server, body):
    code, text = call(server[0] + "/predict", body)
    assert code == 400 and "error" in json.loads(text)


@pytest.mark.e2e
def test_readme_demo_command(tmp_path):
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:20])
    assert "bash examples/demo.sh" in first_screen and "bash .ci/run" in first_screen
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "registered digits@v0.1.0" in proc.stdout
    assert "quality gate failed: digits.accuracy, digits.f1_macro" in proc.stderr
    assert "run-cache hit, training skipped" in proc.stdout
    assert "staging: revision 1 deployed v0.1.0" in proc.stdout
    assert "Reverted automatically: revision 3 serves v0.1.0 again" in proc.stderr
    assert 'now serving: {"status": "ready", "model_version": "v0.1.0"}' in proc.stdout
    assert "revision 4 (v0.1.1) failed: canary aborted at step 10%" in proc.stderr
    client = re.search(r"the client: (\d+) answers from v0.1.0, (\d+) from the canary", proc.stdout)
    assert client is not None and int(client[1]) > 0 and int(client[2]) > 0, proc.stdout[-2000:]
    assert "demo OK" in proc.stdout
