"""Building and pushing 1 GiB and 10 GiB incompressible models: time and peak memory.

Issue #12's targets: `lepton-ci build` (layers builder, push included) <= 0.4x the time of
`podman build` + `podman push` of the same files into the same local registry, and peak RSS
<= 150 MB at both sizes. Against the physical floor too: reading the file (`cat > /dev/null`)
plus the registry writing it (one plain monolithic blob upload of the same bytes).

Like with like. podman pushes its layers gzip-compressed; lepton-ci's default (`compression:
auto`) sends incompressible weights as a plain tar. Both lepton-ci settings are timed: `auto`
(what a user gets) and `gzip` (the same work as podman). Every round starts cold on every
side: the registry emptied (restarted on the same address), podman's image removed and built
with --no-cache (its base pulled before the rounds, as lepton-ci's is in the registry), and
lepton-ci's layer index removed (its stat cache stays warm from `run`, as after a real run:
the weights are not hashed again before the build). The sides are interleaved in each round;
each reports its best of N rounds.

Usage: python bench/image_scale.py [--rounds N] [GiB ...]
  (default: 2 rounds of 1 and 10 GiB; fractions work: 0.25; needs ~3x the size on disk)
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
# Incompressible and the same bytes at every run (seeded), so a model trained again for the
# gzip commit is the model of the first: both records name the same weights.
TRAIN = (
    "import random, sys\n"
    "left = int(float(sys.argv[1]) * 2**30)\n"
    "rng = random.Random(12)\n"
    "with open('weights.bin', 'wb') as f:\n"
    "    while left > 0:\n"
    "        f.write(rng.randbytes(min(left, 64 << 20)))\n"
    "        left -= 64 << 20\n"
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


def make_repo(repo: Path, gib: float, registry: str, base: str) -> None:
    """Two registered versions of one model with the same weights: v0.1.0 built with
    `compression: auto`, v0.1.1 with `compression: gzip`."""
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    config = (
        "models:\n  big:\n"
        f"    train: {sys.executable} train.py {gib}\n"
        "    code: [train.py]\n    outputs: [weights.bin]\n    metrics: [metrics.json]\n"
        "    gates: {loss: {direction: lower}}\n"
        f"    image: {{name: {registry}/big, base: {base}, compression: COMPRESSION}}\n"
    )
    (repo / ".gitignore").write_text("weights.bin\nmetrics.json\n.lepton/\n")
    g = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
    sh([*g, "init", "-q"])
    for compression, subject in (("auto", "feat: big"), ("gzip", "fix: gzip the model layer")):
        (repo / "lepton.yaml").write_text(config.replace("COMPRESSION", compression))
        sh([*g, "add", "-A"])
        sh([*g, "commit", "-q", "-m", subject])
        sh([*CLI, "-C", str(repo), "run"])
        sh([*CLI, "-C", str(repo), "register"])


def lepton_build(repo: Path, version: str) -> tuple[float, float, dict]:
    """(seconds, peak RSS MB, build JSON): lepton-ci alone in its own process tree, so its
    peak RSS is its own; its layer index removed first, so no layer is known before."""
    (repo / ".lepton" / "cache" / "layers.json").unlink(missing_ok=True)
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
        [
            sys.executable,
            "-c",
            code,
            *CLI,
            "-C",
            str(repo),
            "build",
            "--json",
            "--version",
            version,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n", 2)
    return float(res[0]), int(res[1]) / 1024, json.loads(res[2])


def floor(registry: str, weights: Path) -> tuple[float, float]:
    """(cat, plain monolithic upload) seconds: what any build of these bytes must spend."""
    t_cat = timed(["sh", "-c", f"cat {weights} > /dev/null"])
    digest = "sha256:" + sh(["sha256sum", str(weights)]).split()[0]  # not timed
    t0 = time.perf_counter()
    with weights.open("rb") as f:
        r = requests.post(f"http://{registry}/v2/floor/blobs/uploads/", timeout=60)
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else f"http://{registry}{loc}"
        sep = "&" if "?" in loc else "?"
        r = requests.put(f"{loc}{sep}digest={digest}", data=f, timeout=3600)
        assert r.status_code == 201, r.text
    return t_cat, time.perf_counter() - t0


def scenario(gib: float, rounds: int, reg, podman, base: str, tmp: Path) -> None:
    repo = tmp / f"m{gib}"
    make_repo(repo, gib, reg.host, base)
    weights = repo / "weights.bin"
    size = weights.stat().st_size
    containerfile = tmp / f"Containerfile-{gib}"  # outside the work tree lepton-ci builds from
    containerfile.write_text(f"FROM {base}\nCOPY weights.bin /app/weights.bin\n")
    ref = f"{reg.host}/big-podman:1"
    podman("pull", "-q", "--tls-verify=false", base)

    def podman_build_push() -> float:
        podman("rmi", "-f", ref, check=False)
        t0 = time.perf_counter()
        podman("build", "-q", "--no-cache", "-t", ref, "-f", str(containerfile), str(repo))
        podman("push", "-q", "--tls-verify=false", ref)
        return time.perf_counter() - t0

    best: dict[str, float] = {}
    rss: dict[str, float] = {}
    layers: dict[str, dict] = {}
    for _ in range(rounds):
        reg.restart_empty()
        podman("push", "-q", "--tls-verify=false", "localhost/tiny:1", base)
        for name, version in (("lepton-ci auto", "v0.1.0"), ("lepton-ci gzip", "v0.1.1")):
            took, peak, built = lepton_build(repo, version)
            best[name] = min(best.get(name, float("inf")), took)
            rss[name] = max(rss.get(name, 0.0), peak)
            layers[name] = {k: (v["size"], v["media_type"]) for k, v in built["layers"].items()}
        best["podman"] = min(best.get("podman", float("inf")), podman_build_push())
        t_cat, t_upload = floor(reg.host, weights)
        best["cat"] = min(best.get("cat", float("inf")), t_cat)
        best["upload"] = min(best.get("upload", float("inf")), t_upload)

    floor_s = best["cat"] + best["upload"]
    print(f"\n== {gib} GiB incompressible model ({size / 2**30:.2f} GiB); best of {rounds} rounds")
    for name in ("lepton-ci auto", "lepton-ci gzip"):
        print(f"{name} layers: {json.dumps(layers[name])}")
    print(
        f"floor: cat {best['cat']:.2f} s + plain blob upload {best['upload']:.2f} s = "
        f"{floor_s:.2f} s"
    )
    for name in ("lepton-ci auto", "lepton-ci gzip"):
        print(
            f"{name} build + push: {best[name]:.2f} s, peak RSS {rss[name]:.0f} MB "
            f"(target 150 MB -> ratio {rss[name] / 150:.2f}); "
            f"/ podman {best[name] / best['podman']:.3f} (target <= 0.4); "
            f"/ floor {best[name] / floor_s:.2f}"
        )
    print(f"podman build --no-cache + push (gzip layers): {best['podman']:.2f} s")
    weights.unlink()


def main() -> None:
    args = sys.argv[1:]
    rounds = 2
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    sizes = [float(a) for a in args] or [1.0, 10.0]
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as d,
        local_services(Path(d)) as (reg, podman, bases),
    ):
        for gib in sizes:
            scenario(gib, rounds, reg, podman, bases["tiny"], Path(d))


if __name__ == "__main__":
    main()
