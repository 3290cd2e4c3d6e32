"""From the failing verdict to the previous version passing its health check again (podman).

Deploys the digits example v0.1.0, then v0.1.1 whose /predict is wrong; the golden check fails
and lepton-ci reverts. Prints the measured time next to Helm --atomic's default wait (5 min)
and the Kubernetes progress deadline default (600 s). Target: <= 10 s.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.context import Context  # noqa: E402
from lepton_ci.deploy.deployer import DeployFailed  # noqa: E402
from lepton_ci.deploy.operations import deployer, release  # noqa: E402
from tests.support.services import free_port, local_services  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits"
RUNS = 3


def sh(*cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-1500:]}")
    return p.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as d, local_services(Path(d)) as (reg, podman, bases):
        tmp = Path(d)
        base = bases["python"]
        for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
            os.environ[k] = podman.env[k]
        repo = tmp / "digits"
        shutil.copytree(
            EXAMPLE,
            repo,
            ignore=shutil.ignore_patterns("model.json", "metrics.json", ".lepton"),
        )
        cfg = repo / "lepton.yaml"
        cfg.write_text(
            cfg.read_text()
            .replace("127.0.0.1:5000/pybase:bookworm", base)
            .replace("127.0.0.1:5000", reg.host)
            .replace("host_port: 18080", f"host_port: {free_port()}")
        )
        g = ["git", "-c", "user.name=bench", "-c", "user.email=b@x"]
        sh(*g, "init", "-q", cwd=repo)
        sh(*g, "add", "-A", cwd=repo)
        sh(*g, "commit", "-q", "-m", "feat: digits", cwd=repo)
        cli = [sys.executable, "-m", "lepton_ci", "-C", str(repo)]
        for step in ("run", "register", "build"):
            sh(*cli, step)
        sh(*cli, "deploy", "staging")
        serve = repo / "serve.py"
        serve.write_text(
            serve.read_text().replace(
                "preds = [self.model.predict([float(v) for v in x]) for x in instances]",
                "preds = [(self.model.predict([float(v) for v in x]) + 1) % 10 for x in instances]",
            )
        )
        sh(*g, "commit", "-q", "-am", "perf: faster path", cwd=repo)
        for step in ("run", "register", "build"):
            sh(*cli, step)
        ctx = Context.load(None, repo)
        times = []
        for _ in range(RUNS):
            d_ = deployer(ctx, "digits", "staging")
            try:
                d_.deploy(release(ctx, "digits", version=None, image=None))
                raise RuntimeError("the broken release was not caught")
            except DeployFailed as e:
                times.append(e.outcome.timings["verdict_to_healthy_s"])
        best, worst = min(times), max(times)
        print(
            f"failing verdict -> previous version healthy again: best {best:.2f} s, "
            f"worst {worst:.2f} s over {RUNS} runs (target <= 10 s -> ratio "
            f"{worst / 10:.2f})"
        )
        print(
            f"for comparison: Helm --atomic waits up to 300 s by default "
            f"({300 / worst:.0f}x longer); Kubernetes' progressDeadlineSeconds default is "
            f"600 s ({600 / worst:.0f}x)"
        )


if __name__ == "__main__":
    main()
