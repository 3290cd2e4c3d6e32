"""Building and pushing 1 GiB and 10 GiB incompressible models: time and peak memory.

Issue #12's targets: `lepton-ci build` (layers builder, push included) <= 0.4x the time of
`podman build` + `podman push` of the same files into the same local registry, and peak RSS
<= 150 MB at both sizes. Against the physical floor too: reading the file (`cat > /dev/null`)
plus the registry writing it (one plain monolithic blob upload of the same bytes).
Usage: python bench/image_scale.py [GiB ...]   (default: 1 10; needs ~3x the size on disk)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.services import local_services  # noqa: E402

CLI = [sys.executable, "-m", "lepton_ci"]
TRAIN = (
    "import os, sys\n"
    "n = int(sys.argv[1])\n"
    "with open('weights.bin', 'wb') as f:\n"
    "    for _ in range(n * 16):\n"
    "        f.write(os.urandom(64 << 20))\n"
    "open('metrics.json', 'w').write('{\"loss\": 0.1}')\n"
)


def sh(cmd, cwd=None, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-2000:]}")
    return p.stdout


def timed(cmd) -> float:
    t0 = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t0


def scenario(gib: int, registry: str, podman, base: str, tmp: Path) -> None:
    repo = tmp / f"m{gib}"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "lepton.yaml").write_text(
        "models:\n  big:\n"
        f"    train: {sys.executable} train.py {gib}\n"
        "    code: [train.py]\n    outputs: [weights.bin]\n    metrics: [metrics.json]\n"
        "    gates: {loss: {direction: lower}}\n"
        f"    image: {{name: {registry}/big-{gib}, base: {base}}}\n"
    )
    (repo / ".gitignore").write_text("weights.bin\nmetrics.json\n.lepton/\n")
    g = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
    sh([*g, "init", "-q"])
    sh([*g, "add", "-A"])
    sh([*g, "commit", "-q", "-m", "feat: big"])
    sh([*CLI, "-C", str(repo), "run"])
    sh([*CLI, "-C", str(repo), "register"])
    weights = repo / "weights.bin"
    size = weights.stat().st_size

    t_cat = min(timed(["sh", "-c", f"cat {weights} > /dev/null"]) for _ in range(2))
    t0 = time.perf_counter()
    with weights.open("rb") as f:
        r = requests.post(f"http://{registry}/v2/floor/blobs/uploads/", timeout=60)
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else f"http://{registry}{loc}"
        digest = "sha256:" + sh(["sha256sum", str(weights)]).split()[0]
        t_hash = time.perf_counter() - t0
        t0 = time.perf_counter()
        sep = "&" if "?" in loc else "?"
        r = requests.put(f"{loc}{sep}digest={digest}", data=f, timeout=3600)
        assert r.status_code == 201, r.text
    t_upload = time.perf_counter() - t0

    # lepton-ci alone in its own process tree first, so its peak RSS is its own.
    code = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout\n"
        "print(time.perf_counter() - t0)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(out)"
    )
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    res = subprocess.run(
        [sys.executable, "-c", code, *CLI, "-C", str(repo), "build", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n", 2)
    t_ours, rss_ours, built = float(res[0]), int(res[1]) / 1024, json.loads(res[2])

    print(
        f"\n== {gib} GiB: lepton-ci build + push {t_ours:.2f} s, peak RSS {rss_ours:.0f} MB; "
        f"floor {t_cat + t_upload:.2f} s (podman next)",
        flush=True,
    )
    (repo / "Containerfile").write_text(f"FROM {base}\nCOPY weights.bin /app/weights.bin\n")
    ref = f"{registry}/big-{gib}-podman:1"
    t0 = time.perf_counter()
    podman("build", "-q", "-t", ref, "-f", str(repo / "Containerfile"), str(repo))
    podman("push", "-q", "--tls-verify=false", ref)
    t_podman = time.perf_counter() - t0

    floor = t_cat + t_upload
    print(f"\n== {gib} GiB incompressible model ({size / 2**30:.2f} GiB)")
    layers = {k: (v["size"], v["media_type"]) for k, v in built["layers"].items()}
    print(f"layers: {json.dumps(layers)}")
    print(
        f"floor: cat {t_cat:.2f} s + plain blob upload {t_upload:.2f} s = {floor:.2f} s "
        f"(sha256sum alone {t_hash:.2f} s)"
    )
    print(
        f"lepton-ci build + push: {t_ours:.2f} s, peak RSS {rss_ours:.0f} MB "
        f"(target 150 MB -> ratio {rss_ours / 150:.2f})"
    )
    print(f"podman build + push: {t_podman:.2f} s")
    print(
        f"ratio lepton-ci / podman: {t_ours / t_podman:.3f} (target <= 0.4); "
        f"lepton-ci / floor: {t_ours / floor:.2f}"
    )
    weights.unlink()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10]
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as d,
        local_services(Path(d)) as (reg, podman, bases),
    ):
        for gib in sizes:
            scenario(gib, reg.host, podman, bases["tiny"], Path(d))


if __name__ == "__main__":
    main()
