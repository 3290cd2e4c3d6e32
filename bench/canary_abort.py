"""A canary of a broken candidate: how long until the stable revision serves everything again,
and how much of the traffic the candidate answered meanwhile.

Deploys the digits example v0.1.0 with the podman target (through its nginx splitter), then
v0.1.1 whose /predict answers 500 (its pods start and are ready), as a canary with steps
[10, 50, 100] and a short interval, while a steady client posts to /predict every 20 ms. The
first step's checks fail and lepton-ci aborts. Printed:
- from the start of the step that failed to "stable serves 100%" (the splitter reloaded with
  the candidate gone), against the budget of one interval + 10 s;
- the candidate's share of the requests, from the splitter's own counters, against the first
  step's share + 2 points; and what the client saw.

    python bench/canary_abort.py [INTERVAL]   (default 5 s)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.context import Context  # noqa: E402
from lepton_ci.deploy.deployer import DeployFailed  # noqa: E402
from lepton_ci.deploy.operations import deployer, release  # noqa: E402
from tests.support.backends import stop_splitters  # noqa: E402
from tests.support.services import free_port, local_services  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits"
STEPS = [10, 50, 100]
BROKEN = (
    "    def predict(self, body: bytes) -> tuple[int, dict]:\n",
    '    def predict(self, body: bytes) -> tuple[int, dict]:\n        return 500, {"error": "x"}\n',
)


def sh(*cmd: str, cwd: Path | None = None) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-1500:]}")
    return p.stdout


class Client(threading.Thread):
    """A request every 20 ms; counts answers by status (0: no answer)."""

    def __init__(self, url: str, instances: list) -> None:
        super().__init__(daemon=True)
        self.url, self.instances = url, instances
        self.codes: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        http = requests.Session()
        while not self.done.is_set():
            try:
                code = http.post(self.url, json={"instances": self.instances}, timeout=5)
                status = code.status_code
            except requests.RequestException:
                status = 0
            self.codes[status] = self.codes.get(status, 0) + 1
            self.done.wait(0.02)


def measure(tmp: Path, interval: float = 5.0, steps: list[int] = STEPS) -> dict[str, float]:
    with local_services(tmp) as (reg, podman, bases):
        for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
            os.environ[k] = podman.env[k]
        repo = tmp / "digits"
        shutil.copytree(
            EXAMPLE,
            repo,
            ignore=shutil.ignore_patterns("model.joblib", "metrics.json", ".lepton"),
        )
        port = free_port()
        cfg = repo / "lepton.yaml"
        cfg.write_text(
            cfg.read_text()
            .replace("127.0.0.1:5000/pybase:bookworm", bases["python"])
            .replace("127.0.0.1:5000", reg.host)
            .replace("host_port: 18080", f"host_port: {port}")
        )
        data = yaml.safe_load(cfg.read_text())
        env = data["models"]["digits"]["deploy"]["environments"]["staging"]
        env["rollout"] = {"strategy": "canary", "steps": steps, "interval": interval}
        env.pop("watch", None)  # no Prometheus here: the deploy checks judge each step
        cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        instances = env["checks"]["golden"][0]["request"]["instances"]
        g = ["git", "-c", "user.name=bench", "-c", "user.email=b@x"]
        sh(*g, "init", "-q", cwd=repo)
        sh(*g, "add", "-A", cwd=repo)
        sh(*g, "commit", "-q", "-m", "feat: digits", cwd=repo)
        cli = [sys.executable, "-m", "lepton_ci", "-C", str(repo)]
        try:
            for step in ("run", "register", "build", "deploy"):
                sh(*cli, *((step, "staging") if step == "deploy" else (step,)))
            serve = repo / "serve.py"
            text = serve.read_text()
            assert text.count(BROKEN[0]) == 1, "serve.py changed: update BROKEN"
            serve.write_text(text.replace(*BROKEN))
            sh(*g, "commit", "-q", "-am", "perf: answer at once", cwd=repo)
            for step in ("run", "register", "build"):
                sh(*cli, step)
            ctx = Context.load(None, repo)
            d = deployer(ctx, "digits", "staging")
            rel = release(ctx, "digits", version=None, image=None)
            client = Client(f"http://127.0.0.1:{port}/predict", instances)
            client.start()
            try:
                d.deploy(rel)
                raise RuntimeError("the broken candidate was not caught")
            except DeployFailed as e:
                outcome = e.outcome
            finally:
                client.done.set()
                client.join(10)
            step = outcome.revision.steps[-1]
            step_share = step.share or 0.0
            served = d.target.served(d.name) or {}  # type: ignore[attr-defined]
            after = requests.post(
                f"http://127.0.0.1:{port}/predict", json={"instances": instances}, timeout=5
            ).json()
            return {
                "to_stable_s": outcome.timings["step_start_to_stable_s"],
                "budget_s": interval + 10,
                "canary": served.get("canary", 0),
                "total": sum(served.values()),
                "share_budget": steps[0] / 100 + 0.02,
                "aborted_at": step.effective,
                "step_share": step_share,
                "step_total": sum(step.served.values()),
                "client_ok": client.codes.get(200, 0),
                "client_5xx": sum(n for c, n in client.codes.items() if c >= 500),
                "client_none": client.codes.get(0, 0),
                "serving_after": after.get("model_version") == "v0.1.0",
            }
        finally:
            podman("pod", "rm", "-af", "-t", "0", check=False)
            stop_splitters(tmp)


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    with tempfile.TemporaryDirectory() as d:
        m = measure(Path(d), interval)
    share = m["canary"] / m["total"] if m["total"] else 0.0
    print(
        f"canary {STEPS} every {interval:g} s, broken candidate (/predict answers 500), a "
        f"request every 20 ms: aborted at step {m['aborted_at']:.0f}%"
    )
    print(
        f"step start -> stable serves 100%: {m['to_stable_s']:.2f} s; budget interval + 10 s "
        f"= {m['budget_s']:.0f} s -> ratio {m['to_stable_s'] / m['budget_s']:.2f}"
    )
    print(
        f"candidate answered {m['canary']:.0f} of {m['total']:.0f} requests from its start to "
        f"its removal (splitter counters) = {share:.1%}; during the aborted step "
        f"{m['step_share']:.1%} of {m['step_total']:.0f}; budget first step + 2 points = "
        f"{m['share_budget']:.0%} -> ratio {max(share, m['step_share']) / m['share_budget']:.2f}"
    )
    print(
        f"client: {m['client_ok']:.0f} answered 200, {m['client_5xx']:.0f} answered 5xx (the "
        f"candidate's), {m['client_none']:.0f} without an answer; v0.1.0 serves after: "
        f"{bool(m['serving_after'])}"
    )


if __name__ == "__main__":
    main()
