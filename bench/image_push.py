"""Image builds: bytes uploaded, digest stability, size over the base and wall time,
`layers` builder vs `podman build` + push of an equivalent Dockerfile, on the digits example.

Both push through a counting proxy in front of the same local registry. Scenarios: the example
as it is (a 17 kB model) and with a 40 MB weights file, as real models are larger.
Needs what .ci/setup installs (docker-registry, podman, mmdebstrap rootfs cache).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fault_proxy import FaultProxy  # noqa: E402
from tests.support.services import Podman, Registry, local_services  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits"
CLI = [sys.executable, "-m", "lepton_ci"]


def sh(cmd, cwd=None, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-2000:]}")
    return p


def lepton(repo, *args):
    return sh([*CLI, "-C", str(repo), *args]).stdout


# The same image as the `layers` builder makes, written as a Dockerfile.
DOCKERFILE = (
    "FROM {base}\nWORKDIR /app\nCOPY serve.py /app/\n"
    "COPY model.joblib predictions.json weights.bin /app/\nCOPY .lepton/image-meta/ /lepton/\n"
    'ENV PORT=8080 MODEL_PATH=/app/model.joblib\nENTRYPOINT ["python3", "serve.py"]\n'
)


def scenario(
    name: str, weights_mb: int, reg: Registry, podman: Podman, base: str, tmp: Path
) -> None:
    proxy = FaultProxy(reg.host)
    podman.root.joinpath("registries.conf").write_text(
        "unqualified-search-registries = []\n"
        + "".join(
            f'[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in (reg.host, proxy.host)
        )
    )
    repo = tmp / name
    shutil.copytree(
        EXAMPLE, repo, ignore=shutil.ignore_patterns("model.joblib", "metrics.json", ".lepton")
    )
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text()
        .replace("127.0.0.1:5000/pybase:bookworm", base)
        .replace("127.0.0.1:5000/digits", f"{proxy.host}/{name}-layers")
        .replace("outputs: [model.joblib,", "outputs: [model.joblib, weights.bin,")
    )
    train = repo / "train.py"
    train.write_text(
        train.read_text().replace(
            '    print(f"trained on',
            f'    (HERE / "weights.bin").write_bytes(__import__("random").Random(params["C"])'
            f'.randbytes({weights_mb * 1_000_000 + 1}))\n    print(f"trained on',
        )
    )
    (repo / ".gitignore").write_text(
        "model.joblib\npredictions.json\nmetrics.json\nweights.bin\n.lepton/\n"
    )
    g = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
    sh([*g, "init", "-q"])
    sh([*g, "add", "-A"])
    sh([*g, "commit", "-q", "-m", "feat: digits"])

    def version(c_value: float | None, message: str) -> None:
        if c_value is not None:
            p = repo / "params.yaml"
            p.write_text(p.read_text().replace("C: 1.0", f"C: {c_value}"))
            sh([*g, "commit", "-q", "-am", message])
        lepton(repo, "run")
        lepton(repo, "register")
        meta = repo / ".lepton" / "image-meta"
        meta.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / ".lepton" / "runs" / "digits.json", meta / "record.json")
        lepton(repo, "card", "--out", str(meta / "model_card.md"))

    def ours() -> tuple[dict, float, int]:
        before = proxy.received
        t0 = time.perf_counter()
        res = json.loads(lepton(repo, "build", "--json"))
        return res, time.perf_counter() - t0, proxy.received - before

    def podmans(tag: str) -> tuple[float, int]:
        (repo / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        before = proxy.received
        t0 = time.perf_counter()
        ref = f"{proxy.host}/{name}-podman:{tag}"
        podman("build", "-q", "-t", ref, str(repo))
        podman("push", "-q", "--tls-verify=false", ref)
        return time.perf_counter() - t0, proxy.received - before

    version(None, "")
    first, t_ours, _ = ours()
    t_podman, _ = podmans("1")
    again, _, again_bytes = ours()
    version(0.5, "fix: regularise more")
    second, _, ours_bytes = ours()
    _, podman_bytes = podmans("2")
    model_layer = second["layers"]["model"]["size"]
    added = sum(layer["size"] for layer in second["layers"].values())
    model_plus_code = model_layer + second["layers"]["code"]["size"]
    print(f"\n== {name}: model layer {model_layer / 1e6:.3f} MB")
    print(
        f"model-only change: lepton-ci uploaded {ours_bytes / 1e6:.3f} MB = "
        f"{ours_bytes / model_layer:.3f}x the model layer (target <= 1.1); "
        f"podman build + push uploaded {podman_bytes / 1e6:.3f} MB = "
        f"{podman_bytes / model_layer:.3f}x; ratio lepton-ci/podman "
        f"{ours_bytes / max(podman_bytes, 1):.3f}"
    )
    print(
        f"no change: {again_bytes} bytes uploaded (target 0), digest "
        f"{'identical' if again['digest'] == first['digest'] else 'DIFFERENT'}"
    )
    print(
        f"size over base: {added / 1e6:.3f} MB vs model + code + 1 MB = "
        f"{(model_plus_code + 1e6) / 1e6:.3f} MB -> ratio "
        f"{added / (model_plus_code + 1e6):.3f}"
    )
    print(
        f"cold build + push wall time: lepton-ci {t_ours:.2f} s, podman {t_podman:.2f} s "
        f"-> ratio {t_ours / t_podman:.2f}"
    )
    proxy.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as d, local_services(Path(d)) as (reg, podman, bases):
        os.environ.pop("GITHUB_ACTIONS", None)
        scenario("small", 0, reg, podman, bases["python"], Path(d))
        scenario("large", 40, reg, podman, bases["python"], Path(d))


if __name__ == "__main__":
    main()
