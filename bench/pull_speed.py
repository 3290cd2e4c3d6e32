"""`lepton-ci pull` of a model against `skopeo copy` of the same image (issue 24: >= 0.8x the
speed, with flat memory).

A model of incompressible weights (1 GiB unless told) is run, registered and built with the
`layers` builder into a local CNCF registry. Then, interleaved, best of N: `skopeo copy` of
the version's image to a `dir:` destination (every blob written and its digest checked), and
`lepton-ci pull MODEL@vX.Y.Z --out DIR` (the model layer streamed, each file hashed and
checked against the record, written, the record beside it), each a fresh process whose peak
RSS is read from wait4(). Prints the times, the speed ratio (skopeo's time / pull's time) and
both peak RSS. Needs what .ci/setup installs (docker-registry, skopeo).

    python bench/pull_speed.py [MiB] [runs] [--signed]
"""

from __future__ import annotations

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import lepton_cli  # noqa: E402

from tests.support.services import Registry  # noqa: E402
from tests.support.trust import key_pair, push_tiny_base  # noqa: E402

TRAIN = """\
import json, os
with open("weights.bin", "wb") as f:
    for _ in range({chunks}):
        f.write(os.urandom(16 << 20))
    f.write(os.urandom({rest}))
with open("vocab.txt", "w") as f:
    f.write("".join(f"tok{{i}}\\n" for i in range(1000)))
with open("metrics.json", "w") as f:
    json.dump({{"loss": 0.1}}, f)
"""


def sh(cmd: list[str], cwd: Path | None = None, extra: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEPTON_"))}
    env.update(extra or {})
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd}: {p.stderr[-2000:]}")
    return p.stdout


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd}: exit {proc.returncode}: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def model_repo(repo: Path, image: str, base: str, mib: int, public_key: Path | None) -> None:
    repo.mkdir(parents=True)
    size = mib << 20
    (repo / "train.py").write_text(TRAIN.format(chunks=size // (16 << 20), rest=size % (16 << 20)))
    (repo / "lepton.yaml").write_text(
        "models:\n  weights:\n    train: python3 train.py\n    code: [train.py]\n"
        "    outputs: [weights.bin, vocab.txt]\n    metrics: [metrics.json]\n"
        "    gates: {loss: {direction: lower}}\n"
        f"    image: {{name: {image}, base: {base}}}\n"
        + ("trust:\n  keys: [keys/release.pub]\n" if public_key else "")
    )
    if public_key:
        (repo / "keys").mkdir()
        shutil.copy(public_key, repo / "keys" / "release.pub")
    (repo / ".gitignore").write_text("weights.bin\nvocab.txt\nmetrics.json\n.lepton/\n")
    g = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
    sh([*g, "init", "-q"])
    sh([*g, "add", "-A"])
    sh([*g, "commit", "-q", "-m", "feat: weights"])


def measure(mib: int = 1024, runs: int = 3, signed: bool = False) -> dict[str, float]:
    """`signed`: the version signed with a key the repository trusts, so the pull verifies
    the signature and hashes every file with sha256 as well (from a clone at a later commit,
    as a batch job's is)."""
    lepton = lepton_cli()
    with tempfile.TemporaryDirectory(prefix="pull-bench-") as d:
        tmp = Path(d)
        reg = Registry(tmp / "registry")
        try:
            base = push_tiny_base(reg.host, "base/tiny")
            image = f"{reg.host}/bench/weights"
            repo = tmp / "repo"
            keys = key_pair(tmp / "keys", "release") if signed else None
            model_repo(repo, image, base, mib, keys[1] if keys else None)
            signing = {"LEPTON_SIGNING_KEY": str(keys[0])} if keys else {}
            for step in (["run"], ["register"], ["build", "--json"]):
                out = sh([*lepton, "-C", str(repo), *step], extra=signing)
            built = json.loads(out)
            (repo / "NOTES.md").write_text("a later commit\n")
            g = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
            sh([*g, "add", "-A"])
            sh([*g, "commit", "-q", "-m", "docs: notes"])
            layer = built["layers"]["model"]
            src = f"docker://{image}:0.1.0"
            best = {"skopeo": (float("inf"), 0.0), "pull": (float("inf"), 0.0)}
            for _ in range(runs):  # interleaved: a machine that drifts drifts for both
                for name in best:
                    target = tmp / f"out-{name}"
                    shutil.rmtree(target, ignore_errors=True)
                    if name == "skopeo":
                        cmd = [
                            "skopeo",
                            "copy",
                            "-q",
                            "--src-tls-verify=false",
                            src,
                            f"dir:{target}",
                        ]
                    else:
                        cmd = [
                            *lepton,
                            "-C",
                            str(repo),
                            "pull",
                            "weights@v0.1.0",
                            "--out",
                            str(target),
                        ]
                    seconds, rss = timed(cmd)
                    best[name] = (min(best[name][0], seconds), max(best[name][1], rss))
            pulled = (tmp / "out-pull" / "weights.bin").stat().st_size
        finally:
            reg.stop()
    (t_skopeo, rss_skopeo), (t_pull, rss_pull) = best["skopeo"], best["pull"]
    ratio = t_skopeo / t_pull
    print(
        f"model layer: {layer['size'] / 2**20:.0f} MiB ({layer['media_type']}); "
        f"weights.bin pulled: {pulled / 2**20:.0f} MiB; "
        f"{'signed (signature and sha256 checked too)' if signed else 'not signed'}"
    )
    print(
        f"skopeo copy to dir: {t_skopeo:.2f} s ({layer['size'] / 2**20 / t_skopeo:.0f} MiB/s), "
        f"peak RSS {rss_skopeo:.0f} MB"
    )
    print(
        f"lepton-ci pull:     {t_pull:.2f} s ({layer['size'] / 2**20 / t_pull:.0f} MiB/s), "
        f"peak RSS {rss_pull:.0f} MB"
    )
    print(
        f"pull speed / skopeo speed: ratio {ratio:.2f} (target >= 0.8: "
        f"{'OK' if ratio >= 0.8 else 'MISSED'}); pull peak RSS {rss_pull:.0f} MB for a "
        f"{mib} MiB model"
    )
    return {"ratio": ratio, "pull_s": t_pull, "skopeo_s": t_skopeo, "pull_rss_mb": rss_pull}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--signed"]
    measure(
        int(args[0]) if args else 1024,
        int(args[1]) if len(args) > 1 else 3,
        signed="--signed" in sys.argv,
    )
