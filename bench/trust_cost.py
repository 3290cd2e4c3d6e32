"""What signing costs: register and build with a key vs without, and verify of a version.

Targets (issue 22): signing and verifying one version (key-based) add <= 0.5 s to `register`
and to `build`; `verify` of a version takes <= 0.3 s. Each is the CLI as a user runs it, in
a repository of the toy model with an image (layers builder, a one-file base) on a local CNCF
registry. Signed and unsigned runs are interleaved, best of N each: a machine whose speed
drifts drifts for both alike. Between runs the tag (and its attestations, the image's
referrers) is removed, so each run does the same work.
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

from _timing import installed_cli, report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.core.oci_client import OCIClient, referrers_tag  # noqa: E402
from tests.support.services import Registry  # noqa: E402
from tests.support.trust import key_pair, push_tiny_base  # noqa: E402

N = int(os.environ.get("LEPTON_BENCH_N", "7"))
TAG = "toy@v0.1.0"


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return took


def untag(repo: Path) -> None:
    subprocess.run(["git", "tag", "-d", TAG], cwd=repo, capture_output=True, check=False)
    subprocess.run(
        ["git", "update-ref", "-d", f"refs/lepton-ci/attestations/{TAG}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )


def drop_referrers(client: OCIClient, name: str, digest: str) -> None:
    """Delete the image's referrers and their fallback index: the next signed build signs."""
    index_digest = client.manifest_digest(name, referrers_tag(digest))
    if index_digest is None:
        return
    body, _, _ = client.get_manifest(name, index_digest)
    for m in json.loads(body)["manifests"]:
        client.request("DELETE", f"/v2/{name}/manifests/{m['digest']}", repo=name)
    client.request("DELETE", f"/v2/{name}/manifests/{index_digest}", repo=name)


def best_interleaved(pairs: dict[str, tuple[object, object]]) -> dict[str, float]:
    """name -> best time of `run` (each after its `prepare`), the names interleaved."""
    best = dict.fromkeys(pairs, float("inf"))
    for _ in range(N):
        for name, (prepare, run) in pairs.items():
            prepare()  # type: ignore[operator]
            best[name] = min(best[name], run())  # type: ignore[operator]
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        registry = Registry(tmp / "registry")
        try:
            bench(tmp, registry)
        finally:
            registry.stop()


def bench(tmp: Path, registry: Registry) -> None:
    base = push_tiny_base(registry.host, "base/tiny")
    repo = tmp / "repo"
    shutil.copytree(ROOT / "tests" / "fixtures" / "toy", repo)
    priv, pub = key_pair(tmp / "keys", "release")
    (repo / "keys").mkdir()
    shutil.copy(pub, repo / "keys" / "release.pub")
    image = f"{registry.host}/bench/toy"
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "      speed.p95_ms: {direction: lower, informational: true}\n",
            "      speed.p95_ms: {direction: lower, informational: true}\n"
            f"    image: {{name: {image}, base: {base}, builder: layers}}\n",
        )
        + "trust:\n  keys: [keys/release.pub]\n"
    )
    (repo / ".gitignore").write_text(".lepton/\nmodel.bin\nmetrics.json\ntrain_count.txt\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=b@x"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "feat: toy"]):
        sh([*git, *args], repo)
    cli = installed_cli(tmp)  # as the action installs it: no editable-install import hook
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x"}
    signed_env = {**env, "LEPTON_SIGNING_KEY": str(priv)}
    sh([*cli, "run"], repo, env)

    reg = best_interleaved(
        {
            "register": (lambda: untag(repo), lambda: sh([*cli, "register"], repo, env)),
            "register signed": (
                lambda: untag(repo),
                lambda: sh([*cli, "register"], repo, signed_env),
            ),
        }
    )
    untag(repo)
    sh([*cli, "register"], repo, signed_env)
    out = subprocess.run(
        [*cli, "build", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    digest = json.loads(out.stdout)["digest"]
    client = OCIClient(registry.host)
    name = image.split("/", 1)[1]
    build = best_interleaved(
        {
            "build": (lambda: None, lambda: sh([*cli, "build"], repo, env)),
            "build signed": (
                lambda: drop_referrers(client, name, digest),
                lambda: sh([*cli, "build"], repo, signed_env),
            ),
        }
    )
    sh([*cli, "build"], repo, signed_env)  # leave the image signed for verify below
    verify = best_interleaved(
        {
            "show": (lambda: None, lambda: sh([*cli, "show", TAG], repo, env)),
            "verify version": (lambda: None, lambda: sh([*cli, "verify", TAG], repo, env)),
            "verify image": (
                lambda: None,
                lambda: sh([*cli, "verify", f"{image}@{digest}"], repo, env),
            ),
        }
    )
    times = {**reg, **build, **verify}
    for k, v in times.items():
        print(f"{k:>16}: {v:.3f} s (best of {N})")
    print(
        f"signing adds {reg['register signed'] - reg['register']:.3f} s to register, "
        f"{build['build signed'] - build['build']:.3f} s to build; "
        f"verify of a version is {verify['verify version'] - verify['show']:.3f} s more than show"
    )
    ok = [
        report("register: signing adds", reg["register signed"] - reg["register"], 0.5),
        report("build: signing adds", build["build signed"] - build["build"], 0.5),
        report("verify of a version", verify["verify version"], 0.3),
    ]
    if not all(ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
