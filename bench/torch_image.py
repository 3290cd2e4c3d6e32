"""A PyTorch model's image: lepton-ci's `layers` builder against `podman build` + `podman push`.

Issue #20's targets: the first build <= 0.6x podman's time; a weights-only change <= 0.1x
podman's time and <= 1.01x the model layer's bytes; lepton-ci's peak RSS flat in the model and
dependency size. Both sides get the same: the project's files, its pinned requirements
(torch==2.13.0 and a small server's packages) as the same wheels for the base's CPython 3.11 /
manylinux_2_36 (podman's context by pip's cross-install, as the issue states it; lepton-ci by
uv's when uv is installed, as a user's CI would have it: the output says which), bytecode
compiled alike on both sides (compileall, unchecked-hash), the same
base (the local Debian python3 base the tests push), the same registry. podman's Containerfile
puts the dependencies, code and model in the same order as lepton-ci's layers, so podman's
layer cache helps it as much as it can. Bytes pushed are counted by a TCP relay in front of
the registry (request bytes, headers included), for both sides alike.

Each first build starts cold on both sides: a new registry (podman's blob-info cache cannot
mount from an earlier round, lepton-ci finds no key tag), no machine cache, no build cache,
the build context installed afresh. Changes are a code edit and a retrain with another seed,
each side then building and pushing; runs are interleaved, best of N on both sides.

Usage: python bench/torch_image.py [--project DIR] [--first N] [--changes N]
(default project: examples/torch-cnn if it exists, else a CIFAR-tutorial CNN generated here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.config import load as load_config  # noqa: E402
from lepton_ci.image import deps  # noqa: E402
from lepton_ci.image.base_probe import Target  # noqa: E402
from tests.support.services import Registry, local_services  # noqa: E402

EXAMPLE = ROOT / "examples" / "torch-cnn"
TARGET = Target("3.11", "manylinux_2_36_x86_64")  # the Debian bookworm base's

REQUIREMENTS = """\
# torch (the CPU wheel in /opt/wheels) and a small server, pinned as a lock export would
torch==2.13.0
filelock==4.3.2
fsspec==2026.9.0
jinja2==3.1.6
markupsafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
setuptools==84.2.1
sympy==1.14.0
typing-extensions==4.16.0
starlette==1.10.0
uvicorn==0.55.0
anyio==4.16.0
click==8.5.1
h11==0.16.0
idna==3.21
"""

SMALL_REQUIREMENTS = "starlette==1.10.0\nanyio==4.16.0\nidna==3.21\ntyping-extensions==4.16.0\n"

NET = '''\
"""The CIFAR-10 tutorial's CNN."""

import torch
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
'''

TRAIN = """\
import json, pathlib
import torch, yaml
from net import Net

params = yaml.safe_load(pathlib.Path("params.yaml").read_text())
torch.manual_seed(params["seed"])
net = Net()  # random weights: the bench is about images, not accuracy
torch.save(net.state_dict(), "model.pth")
pathlib.Path("metrics.json").write_text(json.dumps({"accuracy": 0.1}))
"""

SERVE = """\
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from net import Net

net = Net()
net.load_state_dict(torch.load("model.pth", weights_only=True))
net.eval()


async def predict(request: Request) -> JSONResponse:
    x = torch.tensor((await request.json())["instances"], dtype=torch.float32)
    with torch.no_grad():
        return JSONResponse({"predictions": net(x).argmax(1).tolist()})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/healthz", healthz)])
"""

RSS_WRAPPER = (
    "import atexit, os, resource, sys\n"
    "atexit.register(lambda: open(os.environ['BENCH_RSS'], 'w').write("
    "str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
    "from lepton_ci.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def generate(project: Path) -> None:
    project.mkdir(parents=True)
    (project / "net.py").write_text(NET)
    (project / "train.py").write_text(TRAIN)
    (project / "serve.py").write_text(SERVE)
    (project / "params.yaml").write_text("seed: 1\n")
    (project / "requirements.txt").write_text(REQUIREMENTS)
    (project / "lepton.yaml").write_text(
        "models:\n  cnn:\n    train: python3 train.py\n    params: [params.yaml]\n"
        "    code: [train.py, net.py]\n    outputs: [model.pth]\n    metrics: [metrics.json]\n"
        "    gates: {accuracy: {direction: higher}}\n    image:\n"
        "      name: 127.0.0.1:5000/cnn\n      base: 127.0.0.1:5000/pybase:bookworm\n"
        "      files: [serve.py, net.py]\n      requirements: requirements.txt\n"
        "      entrypoint: [python3, -m, uvicorn, serve:app, --host, 0.0.0.0, --port, '8080']\n"
        "      ports: [8080]\n"
    )
    (project / ".gitignore").write_text(".lepton/\nmodel.pth\nmetrics.json\n")


class ByteCounter:
    """A TCP relay in front of the registry that counts what clients send through it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit(":", 1)
        self.sent = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
                if count:
                    with self.lock:
                        self.sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def sh(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {(p.stderr or p.stdout)[-3000:]}")
    return p.stdout


class Lepton:
    """One repository of the project, built with lepton-ci."""

    def __init__(
        self, project: Path, repo: Path, registry: str, env: dict[str, str], space: str = "lepton"
    ) -> None:
        shutil.copytree(project, repo, ignore=shutil.ignore_patterns(".lepton", "model.pth"))
        cfg = repo / "lepton.yaml"
        cfg.write_text(
            cfg.read_text()
            .replace("127.0.0.1:5000/pybase:bookworm", f"{registry}/pybase:bookworm")
            .replace("name: 127.0.0.1:5000/", f"name: {registry}/{space}/")
        )
        self.repo, self.env = repo, env
        self.git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x"]
        sh([*self.git, "init", "-q"])
        self.commit("feat: cnn")
        loaded = load_config(cfg)
        self.model, model_cfg = next(iter(loaded.config.models.items()))
        self.image = model_cfg.image
        assert self.image is not None and self.image.requirements, "needs image.requirements"
        self.files = self.image.files or model_cfg.code
        self.model_code = model_cfg.code
        self.outputs = model_cfg.outputs
        self.release()

    def commit(self, message: str) -> None:
        sh([*self.git, "add", "-A"])
        sh([*self.git, "commit", "-q", "-m", message])

    def cli(self, *args: str) -> str:
        return sh([sys.executable, "-m", "lepton_ci", "-C", str(self.repo), *args], env=self.env)

    def release(self) -> None:
        # gated on the thresholds alone: another seed may regress past max_regression, and
        # the bench is about images, not accuracy
        self.cli("run", "--baseline", "none")
        self.cli("register")

    def build(self) -> tuple[dict[str, Any], int]:
        rss = self.repo.parent / f"{self.repo.name}.rss"
        out = sh(
            [sys.executable, "-c", RSS_WRAPPER, "-C", str(self.repo), "build", "--json"],
            env={**self.env, "BENCH_RSS": str(rss)},
        )
        return json.loads(out), int(rss.read_text())


class Podman:
    """The same files as a Containerfile, built and pushed with podman."""

    def __init__(self, podman: Any, lepton: Lepton, ctx: Path, registry: str) -> None:
        self.podman, self.lepton, self.ctx = podman, lepton, ctx
        self.image = f"{registry}/podman/{lepton.model.replace('/', '-')}"
        self.base = f"{registry}/pybase:bookworm"
        self.n = 0
        ctx.mkdir(parents=True)
        image = lepton.image
        assert image is not None
        copies = [f"COPY deps/ {deps.DEPS_DIR}/"]
        for rel in [*self.code_files(), *lepton.outputs]:
            copies.append(f"COPY {rel} {image.workdir}/{rel}")
        entry = json.dumps(image.entrypoint) if image.entrypoint else ""
        (ctx / "Containerfile").write_text(
            f"FROM {self.base}\n"
            + "\n".join(copies)
            + f"\nENV PYTHONPATH={deps.DEPS_DIR}\nWORKDIR {image.workdir}\n"
            + (f"ENTRYPOINT {entry}\n" if entry else "")
        )
        (ctx / ".containerignore").write_text("deps/bin\n")  # as lepton-ci: no shims

    def code_files(self) -> list[str]:
        repo = self.lepton.repo
        return sorted(
            {p.relative_to(repo).as_posix() for g in self.lepton.files for p in repo.glob(g)}
        )

    def serving_file(self) -> str:
        """An image file that training does not read: editing it changes the code alone."""
        repo = self.lepton.repo
        trained = {p for g in self.lepton.model_code for p in repo.glob(g)}
        files = self.code_files()
        return next((f for f in files if repo / f not in trained), files[0])

    def sync(self) -> None:
        for rel in [*self.code_files(), *self.lepton.outputs]:
            (self.ctx / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.lepton.repo / rel, self.ctx / rel)

    def install(self) -> None:
        """The requirements into the build context, as lepton-ci installs them."""
        shutil.rmtree(self.ctx / "deps", ignore_errors=True)
        installer = deps.PipInstaller()
        image = self.lepton.image
        assert image is not None and image.requirements
        installer.install(self.lepton.repo / image.requirements, self.ctx / "deps", TARGET)
        installer.compile(self.ctx / "deps", TARGET)

    def build_push(self, *, cold: bool) -> None:
        self.n += 1
        ref = f"{self.image}:{self.n}"
        cache = ["--no-cache"] if cold else []
        self.podman(
            "build", "-q", *cache, "--tls-verify=false", "-t", ref, str(self.ctx), timeout=1800
        )
        self.podman("push", "-q", "--tls-verify=false", ref, timeout=1800)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, default=None)
    ap.add_argument("--first", type=int, default=2, help="first builds per side (best of)")
    ap.add_argument("--changes", type=int, default=3, help="code and weights changes (best of)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-torch-"))
    project = args.project or (EXAMPLE if EXAMPLE.is_dir() else None)
    if project is None:
        project = tmp / "project"
        generate(project)
        print(f"project: a generated CIFAR-tutorial CNN ({project})")
    else:
        print(f"project: {project}")
    venv_bin = str(Path(sys.executable).parent)  # train with this interpreter's torch
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    env.pop("XDG_CACHE_HOME", None)
    times: dict[str, dict[str, float]] = {}
    sent: dict[str, dict[str, int]] = {}
    rss: dict[str, int] = {}
    sizes: dict[str, int] = {}

    def record(scenario: str, side: str, seconds: float, nbytes: int) -> None:
        t = times.setdefault(scenario, {})
        if seconds < t.get(side, float("inf")):
            t[side] = seconds
            sent.setdefault(scenario, {})[side] = nbytes

    tool = deps.default_installer().kind(TARGET)
    print(
        f"lepton-ci: {tool} install --target (wheels for {TARGET.describe()}), compileall "
        "(unchecked-hash), its own tar + parallel gzip -1 to the machine cache, then the upload\n"
        f"podman:    pip install --target (the same wheels), the same compileall, then "
        "podman build (COPY) + podman push (podman's gzip)"
    )
    with local_services(tmp / "services") as (_, podman, _):
        rounds = []
        for i in range(args.first):
            registry = Registry(tmp / f"registry{i}")
            relay = ByteCounter(registry.host)
            podman("tag", "localhost/pybase:bookworm", f"{relay.host}/pybase:bookworm")
            podman("push", "-q", "--tls-verify=false", f"{relay.host}/pybase:bookworm")
            round_env = {**env, "XDG_CACHE_HOME": str(tmp / f"machine-cache{i}")}
            lep = Lepton(project, tmp / f"lepton{i}", relay.host, round_env)
            pod = Podman(podman, lep, tmp / f"context{i}", relay.host)
            pod.sync()

            def lepton_first(lep: Lepton = lep, relay: ByteCounter = relay) -> None:
                before = relay.sent
                t0 = time.perf_counter()
                res, peak = lep.build()
                record("first build", "lepton-ci", time.perf_counter() - t0, relay.sent - before)
                rss["first build"] = max(rss.get("first build", 0), peak)
                sizes["dependencies"] = res["layers"]["dependencies"]["size"]

            def podman_first(pod: Podman = pod, relay: ByteCounter = relay) -> None:
                before = relay.sent
                t0 = time.perf_counter()
                pod.install()
                t1 = time.perf_counter()
                pod.build_push(cold=True)
                t2 = time.perf_counter()
                record("first build", "podman", t2 - t0, relay.sent - before)
                record("  of which pip install + compile", "podman", t1 - t0, 0)

            # interleaved, the side that goes first alternating
            for fn in (lepton_first, podman_first) if i % 2 == 0 else (podman_first, lepton_first):
                fn()
            rounds.append((registry, relay, lep, pod))
            print(f"  round {i + 1}: {times['first build']}", flush=True)

        _, relay, lep, pod = rounds[-1]
        for i in range(args.changes):
            for scenario in ("code-only change", "weights-only change"):
                if scenario == "code-only change":
                    edited = lep.repo / pod.serving_file()
                    edited.write_text(edited.read_text() + f"\n# revision {i}\n")
                else:
                    params = lep.repo / "params.yaml"
                    text = params.read_text()
                    seed = int(re.search(r"seed: (\d+)", text)[1])  # type: ignore[index]
                    params.write_text(re.sub(r"seed: \d+", f"seed: {seed + 1}", text))
                lep.commit(f"bench: {scenario} {i}")
                lep.release()
                pod.sync()
                before = relay.sent
                t0 = time.perf_counter()
                res, peak = lep.build()
                record(scenario, "lepton-ci", time.perf_counter() - t0, relay.sent - before)
                rss[scenario] = max(rss.get(scenario, 0), peak)
                if scenario == "weights-only change":
                    sizes["model"] = res["layers"]["model"]["size"]
                    sizes["weights-only uploaded_bytes"] = res["uploaded_bytes"]
                before = relay.sent
                t0 = time.perf_counter()
                pod.build_push(cold=False)
                record(scenario, "podman", time.perf_counter() - t0, relay.sent - before)
            print(f"  change {i + 1}: {times['weights-only change']}", flush=True)
        # the same first build with a small dependency layer: is lepton-ci's memory flat in it?
        small = tmp / "project-small"
        shutil.copytree(project, small, ignore=shutil.ignore_patterns(".lepton", "model.pth"))
        assert lep.image is not None and lep.image.requirements
        (small / lep.image.requirements).write_text(SMALL_REQUIREMENTS)
        small_env = {**env, "XDG_CACHE_HOME": str(tmp / "machine-cache-small")}
        res, rss["first build, small deps"] = Lepton(
            small, tmp / "lepton-small", relay.host, small_env, "lepton-small"
        ).build()
        sizes["small dependencies"] = res["layers"]["dependencies"]["size"]
        for registry, relay, _, _ in rounds:
            relay.close()
            registry.stop()

    print(f"\nbest of {args.first} (first build) / {args.changes} (changes), interleaved")
    print(f"{'':34} {'lepton-ci':>22} {'podman':>22}  ratio (time)")
    for scenario, t in times.items():
        lt, pt = t.get("lepton-ci"), t.get("podman")
        lb, pb = sent[scenario].get("lepton-ci", 0), sent[scenario].get("podman", 0)
        left = f"{lt:7.1f} s {lb / 1e6:9.2f} MB" if lt is not None else ""
        right = f"{pt:7.1f} s {pb / 1e6:9.2f} MB" if pt is not None else ""
        ratio = f"{lt / pt:.3f}x" if lt is not None and pt else ""
        print(f"{scenario:34} {left:>22} {right:>22}  {ratio}")
    w = times["weights-only change"]
    first = times["first build"]
    model, up = sizes["model"], sizes["weights-only uploaded_bytes"]
    dep_mb, small_mb = sizes["dependencies"] / 1e6, sizes["small dependencies"] / 1e6
    print(
        f"\ndependency layer {dep_mb:.1f} MB (small variant {small_mb:.2f} MB), "
        f"model layer {model / 1e3:.1f} kB"
    )
    print(f"goal first build <= 0.6x podman: {first['lepton-ci'] / first['podman']:.3f}x")
    print(f"goal weights-only <= 0.1x podman's time: {w['lepton-ci'] / w['podman']:.3f}x")
    print(
        f"goal weights-only bytes <= 1.01x the model layer: {up / model:.3f}x "
        f"(uploaded_bytes {up} / model layer {model}; with HTTP headers "
        f"{sent['weights-only change']['lepton-ci'] / model:.3f}x)"
    )
    print(
        "peak RSS of lepton-ci build: "
        + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in rss.items())
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
