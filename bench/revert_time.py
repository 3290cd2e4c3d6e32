"""From the bad release's apply to the previous version serving again, detection included.

Deploys the digits example v0.1.0, then v0.1.1 whose /predict answers wrong (its pods start and
are ready); the golden check fails and lepton-ci reverts. The clock starts when the deploy of
the bad release begins (lock, apply, rollout wait, the whole health window) and stops when
v0.1.0 has passed its checks again. The configured windows are printed with it. Target:
<= 10 s. Only lepton-ci is measured here. (Not measured, so not printed: `helm upgrade
--atomic` and a Deployment's progressDeadlineSeconds judge readiness only, and these pods are
ready, so neither would revert this release.)

    python bench/revert_time.py [RUNS]   (default 3)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.context import Context  # noqa: E402
from lepton_ci.deploy.deployer import DeployFailed  # noqa: E402
from lepton_ci.deploy.operations import deployer, release  # noqa: E402
from tests.support.backends import splitters_stopped  # noqa: E402
from tests.support.services import free_port, local_services  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits"
RUNS = 3


def sh(*cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-1500:]}")
    return p.stdout


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as d,
        local_services(Path(d)) as (reg, podman, bases),
        splitters_stopped(Path(d)),
    ):
        tmp = Path(d)
        base = bases["python"]
        for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
            os.environ[k] = podman.env[k]
        repo = tmp / "digits"
        shutil.copytree(
            EXAMPLE,
            repo,
            ignore=shutil.ignore_patterns("model.joblib", "metrics.json", ".lepton"),
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
        right = "preds = [int(c) for c in self.model.predict(instances)]"
        text = serve.read_text()
        assert text.count(right) == 1, f"serve.py changed: {right!r} is not in it once"
        serve.write_text(
            text.replace(
                right, "preds = [(int(c) + 1) % 10 for c in self.model.predict(instances)]"
            )
        )
        sh(*g, "commit", "-q", "-am", "perf: faster path", cwd=repo)
        for step in ("run", "register", "build"):
            sh(*cli, step)
        ctx = Context.load(None, repo)
        runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
        times, detect = [], []
        for _ in range(runs):
            d_ = deployer(ctx, "digits", "staging")
            rel = release(ctx, "digits", version=None, image=None)
            t0 = time.monotonic()
            try:
                d_.deploy(rel)
                raise RuntimeError("the broken release was not caught")
            except DeployFailed as e:
                times.append(time.monotonic() - t0)
                detect.append(e.outcome.timings["rollout_s"])
        env = d_.env
        print(
            f"configured: rollout_timeout {env.rollout_timeout:.0f} s, health window "
            f"{env.checks.count} samples {env.checks.interval} s apart, rollback_timeout "
            f"{env.rollback_timeout:.0f} s"
        )
        print(
            f"bad release applied -> v0.1.0 serving and healthy again: best {min(times):.2f} s, "
            f"worst {max(times):.2f} s over {runs} runs (of which apply -> failing verdict: "
            f"worst {max(detect):.2f} s); target <= 10 s -> ratio {max(times) / 10:.2f}"
        )


if __name__ == "__main__":
    main()
