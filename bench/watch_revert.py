"""From a breach being visible in Prometheus to the previous version serving again (podman).

Deploys the digits example v0.1.0, then v0.1.1 which passes its health window and starts
answering /predict with 500 under live traffic. A real Prometheus scrapes the pod every
second; `lepton-ci watch staging` (interval 1 s, `for: 2`, 5 s rate windows) runs alongside.
Measured: from the first moment the error-rate SLO query is above its bound in Prometheus to
/readyz answering v0.1.0 again. Held to the deploy-time revert's target (<= 10 s, see
revert_time.py), since the watcher reverts through the same path. Only lepton-ci is measured
here, so only lepton-ci is printed. (Not measured: Flagger cannot revert after promotion,
fluxcd/flagger#616; Argo Rollouts needs its controller in the cluster.)

    python bench/watch_revert.py [RUNS]   (default 3)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.config import load  # noqa: E402
from tests.support.backends import splitters_stopped  # noqa: E402
from tests.support.prometheus import PrometheusServer  # noqa: E402
from tests.support.services import free_port, local_services  # noqa: E402
from tests.support.traffic import Traffic, degrade_later  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits"
RUNS = 3
TARGET = 10.0


def sh(*cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-1500:]}")
    return p.stdout


def serving(url: str) -> str:
    try:
        return str(requests.get(url + "/readyz", timeout=1).json()["model_version"])
    except (requests.RequestException, ValueError, KeyError):
        return ""


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as d,
        local_services(Path(d)) as (reg, podman, bases),
        splitters_stopped(Path(d)),
    ):
        tmp = Path(d)
        for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
            os.environ[k] = podman.env[k]
        repo = tmp / "digits"
        shutil.copytree(
            EXAMPLE, repo, ignore=shutil.ignore_patterns("model.joblib", "metrics.json", ".lepton")
        )
        port = free_port()
        cfg = repo / "lepton.yaml"
        text = (
            cfg.read_text()
            .replace("127.0.0.1:5000/pybase:bookworm", bases["python"])
            .replace("127.0.0.1:5000", reg.host)
            .replace("host_port: 18080", f"host_port: {port}")
            .replace("[1m]", "[5s]")
            .replace("window: 1m", "window: 5s")
            .replace("interval: 30 ", "interval: 1 ")
        )
        cfg.write_text(text)
        watch = load(cfg).config.models["digits"].deploy.environments["staging"].watch
        query = next(s.query for s in watch.slos if s.name == "predict-errors")
        g = ["git", "-c", "user.name=bench", "-c", "user.email=b@x"]
        sh(*g, "init", "-q", cwd=repo)
        sh(*g, "add", "-A", cwd=repo)
        sh(*g, "commit", "-q", "-m", "feat: digits", cwd=repo)
        cli = [sys.executable, "-m", "lepton_ci", "-C", str(repo)]
        for step in ("run", "register", "build", "deploy"):
            sh(*cli, step, *(["staging"] if step == "deploy" else []))
        degrade_later(repo / "serve.py")
        sh(*g, "commit", "-q", "-am", "perf: cache", cwd=repo)
        for step in ("run", "register", "build"):
            sh(*cli, step)
        prom = PrometheusServer(tmp / "prom", targets=[f"127.0.0.1:{port}"]).start()
        os.environ["LEPTON_PROMETHEUS_URL"] = prom.url
        url = f"http://127.0.0.1:{port}"
        runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
        times = []
        try:
            for _ in range(runs):
                sh(*cli, "deploy", "staging")
                assert serving(url) == "v0.1.1"
                watcher = subprocess.Popen(
                    [*cli, "watch", "staging"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                visible = None
                with Traffic(url):
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        if visible is None and any(
                            float(s["value"][1]) > 0.01 for s in prom.query(query)
                        ):
                            visible = time.monotonic()
                        if visible is not None and serving(url) == "v0.1.0":
                            times.append(time.monotonic() - visible)
                            break
                        time.sleep(0.1)
                    else:
                        watcher.kill()
                        raise RuntimeError("the degrading release was not reverted in 120 s")
                watcher.wait(60)
                time.sleep(6)  # let the 5 s windows forget the bad release before the next run
        finally:
            prom.stop()
            podman("pod", "rm", "-af", "-t", "0", check=False)
        best, worst = min(times), max(times)
        print(
            f"breach visible in Prometheus -> previous version serving again: best {best:.2f} s, "
            f"worst {worst:.2f} s over {runs} runs (watch interval 1 s, for: 2; target <= "
            f"{TARGET:g} s, the deploy-time revert's -> ratio {worst / TARGET:.2f})"
        )


if __name__ == "__main__":
    main()
