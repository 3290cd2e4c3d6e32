"""Image builds against a real registry, checked with skopeo and run with podman."""

import json
import subprocess
import time

import pytest
import requests
import yaml

from lepton_ci.core.oci_client import OCIClient, client_factory
from lepton_ci.image import layers as oci
from tests.conftest import Cli, commit_all, example_repo, git, point_image_at, set_params
from tests.support.examples import digits_rows
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.services import on_free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def digits(tmp_path, services, capsys, shared_deps_cache):
    repo = tmp_path / "digits"
    prefix = example_repo(repo, services)
    cli = Cli(repo, capsys)
    cli.reg = prefix  # REGISTRY/NAMESPACE: this test's own repositories
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0
    return repo, cli


def release(repo, cli, message, *, register=True):
    """Commit the work tree and make its record: `build` reads lepton.yaml and code from the
    record's commit only, never from the work tree."""
    commit_all(repo, message)
    assert cli("run")[0] == 0
    if register:
        code, _, err = cli("register")
        assert code == 0, err


def skopeo(*args):
    out = subprocess.run(
        ["skopeo", *args, "--tls-verify=false"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout) if out.stdout.strip().startswith(("{", "[")) else out.stdout


def test_layers_build_tags_labels_and_record_inside(digits, services):
    repo, cli = digits
    reg = cli.reg
    code, out, err = cli("build", "--json")
    assert code == 0, err
    res = json.loads(out)
    sha = git(repo, "rev-parse", "HEAD")
    assert res["tags"] == ["0.1.0", "0.1", f"sha-{sha[:7]}"]
    info = skopeo("inspect", f"docker://{reg}/digits:0.1.0")
    assert info["Digest"] == res["digest"]
    # the session's registry is shared with other tests, so ours must be among its tags
    assert set(res["tags"]) <= set(skopeo("list-tags", f"docker://{reg}/digits")["Tags"])
    for tag in res["tags"]:
        assert skopeo("inspect", f"docker://{reg}/digits:{tag}")["Digest"] == res["digest"]
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.licenses"] == "bsd-3-clause"
    assert labels["dev.lepton-ci.model"] == "digits"
    assert json.loads(labels["dev.lepton-ci.metrics"])["accuracy"] > 0.9
    rec_text = (repo / ".lepton" / "runs" / "digits.json").read_text()
    from lepton_ci.core.record import parse

    assert labels["dev.lepton-ci.record-digest"] == parse(rec_text, "x").digest()
    commit_time = int(git(repo, "log", "-1", "--format=%ct"))
    assert labels["org.opencontainers.image.created"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit_time)
    )
    code, out, _ = cli("image", "inspect", f"{reg}/digits:0.1.0")
    assert "model:    digits v0.1.0 (gates: pass)" in out and "accuracy=" in out


def test_same_inputs_same_digest_and_nothing_uploaded(digits, services):
    repo, cli = digits
    proxy = FaultProxy(services["registry"].host)
    try:
        ns = cli.reg.split("/", 1)[1]
        point_image_at(repo, f"{cli.reg}/digits", f"{proxy.host}/{ns}/digits")
        release(repo, cli, "build: push through the proxy")
        first = json.loads(cli("build", "--json")[1])
        before, sent = len(proxy.log), proxy.received
        second = json.loads(cli("build", "--json")[1])
        assert second["digest"] == first["digest"]
        assert second["uploaded_bytes"] == 0 and first["uploaded_bytes"] > 0
        assert proxy.received == sent  # not a byte: no blob, config or manifest sent again
        assert {m for m, _, _ in proxy.log[before:]} <= {"GET", "HEAD"}
    finally:
        proxy.close()


def test_model_only_change_uploads_only_the_model_layer(digits):
    repo, cli = digits
    first = json.loads(cli("build", "--json")[1])
    set_params(
        repo,
        train={
            **yaml.safe_load((repo / "params.yaml").read_text())["train"],
            "C": 0.5,
        },
    )
    commit_all(repo, "fix: regularise more")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    second = json.loads(cli("build", "--json")[1])
    assert second["digest"] != first["digest"]
    layers = second["layers"]
    assert layers["code"]["uploaded"] == 0
    assert layers["code"]["digest"] == first["layers"]["code"]["digest"]
    assert layers["model"]["uploaded"] == layers["model"]["size"] > 0
    # only the model, the small metadata layer and the config went over the wire
    config_bytes = second["uploaded_bytes"] - layers["model"]["size"] - layers["metadata"]["size"]
    assert 0 < config_bytes < 8000


def test_built_image_serves_predictions(digits, services):
    repo, cli = digits
    res = json.loads(cli("build", "--json")[1])
    podman = services["podman"]
    ref = f"{res['image']}@{res['digest']}"
    podman("pull", "-q", "--tls-verify=false", ref)

    def run(port):
        return port, podman("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", ref).stdout.strip()

    port, cid = on_free_port(run)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, podman("logs", cid, check=False).stdout
            time.sleep(0.2)
        x, y = digits_rows(repo / "data" / "digits.csv.gz")
        r = requests.post(base + "/predict", json={"instances": [x[10], x[11]]}, timeout=5)
        assert r.status_code == 200
        assert r.json() == {"predictions": [y[10], y[11]], "model_version": "v0.1.0"}
        inside = podman(
            "exec",
            cid,
            "python3",
            "-c",
            "import json;print(json.load(open('/lepton/record.json'))['model'])",
        )
        assert inside.stdout.strip() == "digits"
        card = podman("exec", cid, "head", "-c", "3", "/lepton/model_card.md").stdout
        assert card == "---"
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)


def test_retag_points_at_the_same_digest(digits, services):
    _, cli = digits
    reg = cli.reg
    res = json.loads(cli("build", "--json")[1])
    code, out, _ = cli("image", "retag", f"{reg}/digits@{res['digest']}", "prod", "stable")
    assert code == 0 and out.strip() == f"tagged {res['digest']} as prod, stable"
    assert skopeo("inspect", f"docker://{reg}/digits:prod")["Digest"] == res["digest"]
    assert skopeo("inspect", f"docker://{reg}/digits:stable")["Digest"] == res["digest"]


def test_500_on_a_blob_upload_is_retried(digits, services):
    repo, cli = digits
    proxy = FaultProxy(services["registry"].host)
    try:
        ns = cli.reg.split("/", 1)[1]
        point_image_at(repo, f"{cli.reg}/digits", f"{proxy.host}/{ns}/flaky")
        release(repo, cli, "build: push through the flaky proxy")
        proxy.rules.append(Rule("PUT", r"/flaky/blobs/uploads/", 500))
        code, out, err = cli("build", "--json")
        assert code == 0, err
        assert ("PUT", next(p for m, p, s in proxy.log if s == 500), 500) in proxy.log
        digest = json.loads(out)["digest"]
        assert skopeo("inspect", f"docker://{cli.reg}/flaky:0.1.1")["Digest"] == digest
    finally:
        proxy.close()


def test_missing_base_image_names_it(digits, services):
    repo, cli = digits
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("pybase:bookworm", "nope:1"))
    release(repo, cli, "build: a base that is not there", register=False)
    code, _, err = cli("build")
    assert code == 1
    assert f"base image {services['registry'].host}/nope:1 is not available" in err
    assert "image.base" in err


def test_wrong_credentials_are_a_clear_error(digits, services, tmp_path, monkeypatch):
    from tests.support.services import Registry

    repo, cli = digits
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(
        ["htpasswd", "-Bbc", str(htpasswd), "alice", "s3cret"], check=True, capture_output=True
    )
    secured = Registry(tmp_path / "secured", htpasswd=htpasswd)
    try:
        point_image_at(repo, f"{cli.reg}/digits", f"{secured.host}/digits")
        release(repo, cli, "build: push to the secured registry", register=False)
        monkeypatch.setenv("LEPTON_REGISTRY_USERNAME", "alice")
        monkeypatch.setenv("LEPTON_REGISTRY_PASSWORD", "wrong-password")
        code, out, err = cli("build")
        assert code == 1
        assert f"registry {secured.host} refused user 'alice'" in err
        assert "LEPTON_REGISTRY_PASSWORD" in err and "wrong-password" not in err + out
        monkeypatch.setenv("LEPTON_REGISTRY_PASSWORD", "s3cret")
        code, out, err = cli("build")
        assert code == 0, err
    finally:
        secured.stop()


def test_docker_config_credentials(tmp_path):
    import base64

    from lepton_ci.core.oci_client import credentials

    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "r.example:5000": {"auth": base64.b64encode(b"bob:pw:with:colons").decode()}
                }
            }
        )
    )
    assert credentials("r.example:5000", {"DOCKER_CONFIG": str(tmp_path)}) == (
        "bob",
        "pw:with:colons",
    )
    assert credentials("other", {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_dockerfile_builder_through_podman_socket(digits, services, monkeypatch):
    repo, cli = digits
    reg = cli.reg
    (repo / "Dockerfile").write_text(
        f"FROM {services['bases']['python']}\nWORKDIR /app\n"
        "COPY serve.py model.joblib /app/\n"
        'ENV PORT=8080\nCMD ["python3", "serve.py"]\n'
    )
    release(repo, cli, "build: a Dockerfile")
    monkeypatch.setenv("DOCKER_HOST", services["docker_host"])
    code, out, err = cli("build", "--builder", "dockerfile", "--json")
    assert code == 0, err
    res = json.loads(out)
    info = skopeo("inspect", f"docker://{reg}/digits:0.1.1")
    assert info["Digest"] == res["digest"]
    assert info["Labels"]["dev.lepton-ci.model"] == "digits"
    assert info["Labels"]["org.opencontainers.image.version"] == "0.1.1"
    # a first build sends the image's layers: counted from the registry, podman says nothing
    assert res["uploaded_bytes"] > 100_000
    podman = services["podman"]
    ref = f"{reg}/digits@{res['digest']}"
    podman("pull", "-q", "--tls-verify=false", ref)
    cat = podman(
        "run", "--rm", ref, "python3", "-c", "print(open('/lepton/record.json').read()[:1])"
    )
    assert cat.stdout.strip() == "{"


def layer_bytes(layer):
    out = bytearray()
    layer.source.write(out.extend)
    return bytes(out)


@pytest.mark.unit
def test_layer_bytes_are_deterministic(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("hello")
    entries = [oci.Entry("/app/b.txt", b"bee"), oci.Entry("/app/a.txt", a)]
    l1 = oci.build_layer("code", entries, 1700000000)
    l2 = oci.build_layer("code", list(reversed(entries)), 1700000000)
    assert (l1.digest, l1.diff_id) == (l2.digest, l2.diff_id)
    assert layer_bytes(l1) == layer_bytes(l2)
    a.touch()  # the file's own mtime must not leak into the layer
    assert oci.build_layer("code", entries, 1700000000).digest == l1.digest
    assert oci.build_layer("code", entries, 1700000001).digest != l1.digest
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_bytes(l1)))) as t:
        members = t.getmembers()
    assert [m.name for m in members] == ["app", "app/a.txt", "app/b.txt"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}


@pytest.mark.unit
def test_the_tar_is_byte_for_byte_what_tarfile_writes(tmp_path):
    """The layer's own tar writer must not change a digest that caches and registries keep."""
    import io
    import os
    import tarfile
    from pathlib import Path

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20) + b"odd")  # more than one read, not block-aligned
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    long = "/app/" + "d" * 120 + "/\u00e9t\u00e9-" + "n" * 110 + ".py"  # a PAX header
    entries = (
        oci.Entry("/app/a.txt", b"a" * 511),
        oci.Entry("/app/big.bin", big),
        oci.Entry("/app/bin/tool", tool),
        oci.Entry("/app/empty", b""),
        oci.Entry(long, b"x = 1\n"),
    )
    source = oci.LayerSource("code", entries, 1700000000, "none")
    ours = bytearray()
    source.write(ours.extend)
    theirs = io.BytesIO()
    with tarfile.open(fileobj=theirs, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"app", "app/bin", str(Path(long).parent).lstrip("/")})
        for d in dirs:
            tar.addfile(oci._info(d + "/", tarfile.DIRTYPE, 0o755, 0, 1700000000))
        for e in entries:
            data = e.source if isinstance(e.source, bytes) else e.source.read_bytes()
            mode = 0o755 if e.path.endswith("tool") else 0o644
            info = oci._info(e.path.lstrip("/"), tarfile.REGTYPE, mode, len(data), 1700000000)
            tar.addfile(info, io.BytesIO(data))
    assert bytes(ours) == theirs.getvalue()


@pytest.mark.unit
def test_incompressible_weights_become_a_plain_tar_layer(tmp_path):
    import hashlib
    import os
    import tarfile

    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(2_000_000))
    code = tmp_path / "serve.py"
    code.write_text("print('hello')\n" * 10_000)
    model = [oci.Entry("/app/weights.bin", weights)]
    assert oci.choose_compression(model) == "none"
    assert oci.choose_compression([oci.Entry("/app/serve.py", code)]) == "gzip"
    layer = oci.build_layer("model", model, 1700000000, oci.choose_compression(model))
    data = layer_bytes(layer)
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert layer.digest == layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert layer.size == len(data)
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as t:
        assert t.extractfile("app/weights.bin").read() == weights.read_bytes()


@pytest.mark.unit
def test_image_tags_for_versions_and_prs():
    from lepton_ci.core.record import Record
    from lepton_ci.image.metadata import tags

    rec = Record.model_validate(
        {
            "model": "m",
            "candidate_version": "v1.2.3",
            "created_at": "x",
            "git": {"sha": "abcdef1234567890", "commit_time": 0},
            "environment": {
                "python": "3",
                "platform": "p",
                "packages_digest": "d",
                "packages_source": "s",
            },
            "cache": {"key": "k"},
        }
    )
    assert tags(rec, {}) == ["1.2.3", "1.2", "sha-abcdef1"]
    assert tags(rec, {}, pr=7) == ["pr-7", "sha-abcdef1"]
    pre = rec.model_copy(update={"candidate_version": "v2.0.0-rc.1"})
    assert tags(pre, {}) == ["2.0.0-rc.1", "sha-abcdef1"]
    assert tags(rec, {}, release=False) == ["sha-abcdef1"]  # not registered
    assert tags(rec, {}, floating=False) == ["1.2.3", "sha-abcdef1"]  # a newer 1.2.x exists
    meta = rec.model_copy(update={"candidate_version": "v1.2.3+build.5"})
    assert tags(meta, {}) == ["1.2.3_build.5", "1.2", "sha-abcdef1"]


def test_registry_client_unreachable_is_bounded():
    c = OCIClient("127.0.0.1:9", sleep=lambda s: None, max_retries=1, timeout=2)
    with pytest.raises(Exception, match="unreachable after 2 tries"):
        c.blob_exists("x", "sha256:" + "0" * 64)
    assert client_factory({}, None, None)("127.0.0.1:9").base == "http://127.0.0.1:9"


def _blob(tmp_path, mib):
    import hashlib
    import os

    data = os.urandom(mib << 20)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_streamed_upload_whose_answer_is_lost_asks_where_it_stands_then_completes(
    services, tmp_path
):
    """The PATCH lands but its answer is lost. lepton-ci asks the registry where the upload
    stands; the CNCF registry cannot say (its upload URL carries a state token that is now
    stale: 404), so the blob goes up again in a new session, and arrives whole."""
    from lepton_ci.core.oci_client import OCIClient

    data, digest = _blob(tmp_path, 20)
    proxy = FaultProxy(services["registry"].host)
    try:
        proxy.rules.append(Rule("PATCH", r"/v2/resume/blobs/uploads/", 502, mode="after"))
        client = OCIClient(proxy.host, sleep=lambda s: None)

        def produce(write):
            for i in range(0, len(data), 1 << 20):
                write(data[i : i + (1 << 20)])

        sent = client.upload_blob("resume", digest, produce)
        calls = [(m, s) for m, p, s in proxy.log]
        assert calls == [
            ("POST", 202),
            ("PATCH", 502),
            ("GET", 404),
            ("HEAD", 404),  # is the blob there after all? not yet
            ("POST", 202),
            ("PATCH", 202),
            ("PUT", 201),
        ]
        assert sent == len(data) and client.uploaded_bytes == 2 * len(data)
        assert OCIClient(services["registry"].host).get_blob("resume", digest) == data
    finally:
        proxy.close()


def test_a_stream_broken_half_way_is_sent_again_whole(services, tmp_path):
    """The connection drops mid-body; the blob still arrives whole, with its digest."""
    from lepton_ci.core.oci_client import OCIClient

    data, digest = _blob(tmp_path, 24)
    client = OCIClient(services["registry"].host, sleep=lambda s: None)
    broke = []

    def produce(write):
        for i in range(0, len(data), 1 << 20):
            write(data[i : i + (1 << 20)])

    import requests

    real = client.session.request

    def request(method, url, **kw):
        if method == "PATCH" and not broke:
            body = kw.pop("data")

            def cut():
                for n, piece in enumerate(body):
                    if n == 12:
                        broke.append(n)
                        raise requests.ConnectionError("reset mid-body")
                    yield piece

            return real(method, url, data=cut(), **kw)
        return real(method, url, **kw)

    client.session.request = request
    sent = client.upload_blob("halfway", digest, produce)
    assert broke and sent >= len(data)
    assert OCIClient(services["registry"].host).get_blob("halfway", digest) == data


def test_building_a_big_model_keeps_memory_flat(services, tmp_path):
    """A 320 MiB incompressible model builds and pushes under a fixed peak RSS."""
    import os
    import sys

    repo = tmp_path / "big"
    repo.mkdir()
    (repo / "train.py").write_text(
        "import os\nwith open('weights.bin', 'wb') as f:\n"
        "    for _ in range(5):\n        f.write(os.urandom(64 << 20))\n"
        "open('metrics.json', 'w').write('{\"loss\": 0.1}')\n"
    )
    base = services["bases"]["tiny"]
    (repo / "lepton.yaml").write_text(
        "models:\n  big:\n    train: python3 train.py\n    code: [train.py]\n"
        "    outputs: [weights.bin]\n    metrics: [metrics.json]\n"
        "    gates: {loss: {direction: lower}}\n"
        f"    image: {{name: {services['registry'].host}/bigmodel, base: {base}}}\n"
    )
    (repo / ".gitignore").write_text("weights.bin\nmetrics.json\n.lepton/\n")
    git(repo, "init", "-q")
    commit_all(repo, "feat: big")
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    lepton = [sys.executable, "-m", "lepton_ci", "-C", str(repo)]
    subprocess.run([*lepton, "run"], check=True, capture_output=True, env=env)
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(p.stdout or p.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *lepton, "build", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    status, rss_kb = out.split("\n", 1)[0].split()
    assert status == "0", out
    built = json.loads(out.split("\n", 1)[1])
    assert built["layers"]["model"]["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    assert built["layers"]["model"]["size"] > 320 << 20
    assert int(rss_kb) / 1024 < 150, f"peak RSS {int(rss_kb) / 1024:.0f} MB"


def test_retag_never_moves_an_immutable_tag_to_another_image(digits, services):
    repo, cli = digits
    reg = cli.reg
    old = json.loads(cli("build", "--json")[1])
    (repo / "serve.py").write_text((repo / "serve.py").read_text() + "# v0.1.1\n")
    release(repo, cli, "fix: v0.1.1")
    new = json.loads(cli("build", "--json")[1])
    assert new["digest"] != old["digest"]
    sha_old = next(t for t in old["tags"] if t.startswith("sha-"))
    for tag in ["0.1.0", sha_old]:
        code, _, err = cli("image", "retag", f"{reg}/digits:0.1.1", "prod", tag)
        assert code == 1
        assert f"{reg}/digits:{tag} already holds {old['digest']}, not {new['digest']}" in err
        assert "is immutable, so nothing was tagged" in err and "delete the tag" in err
        assert skopeo("inspect", f"docker://{reg}/digits:{tag}")["Digest"] == old["digest"]
    code, _, err = cli("image", "retag", f"{reg}/digits:0.1.1", "prod", "prod:x")
    assert code == 1 and "`prod:x` is not a valid image tag" in err
    assert "prod" not in tags_of(cli, reg)  # nothing half-done
    # the same image again, and a floating tag moved on purpose: fine
    code, _, err = cli("image", "retag", f"{reg}/digits:0.1.0", "0.1.0", "0.1", "prod")
    assert code == 0, err
    assert skopeo("inspect", f"docker://{reg}/digits:0.1")["Digest"] == old["digest"]


def tags_of(cli, reg):
    return set(skopeo("list-tags", f"docker://{reg}/digits")["Tags"])


_UPLOAD_THEN_SIGTERM = """
import os, signal, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from lepton_ci.core import interrupt
from lepton_ci.core.oci_client import OCIClient

client = OCIClient(sys.argv[1])

def produce(write):  # 400 MiB at about 20 MiB/s: 20 s if nothing stops it
    for _ in range(400):
        write(b"x" * (1 << 20))
        time.sleep(0.05)

def upload(_):
    return client.upload_blob("t/interrupt", lambda: "sha256:" + "0" * 64, produce, size=400 << 20)

threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
t0 = time.monotonic()
try:
    with interrupt.installed(), ThreadPoolExecutor(2) as pool:  # as LayersBuilder.perform
        list(pool.map(upload, [0]))
except interrupt.Terminated:
    print(f"{time.monotonic() - t0:.2f}")
    sys.exit(143)
"""


def test_sigterm_stops_a_layer_upload_between_chunks(services):
    import sys

    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _UPLOAD_THEN_SIGTERM, services["registry"].host],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 143, out.stderr
    # the signal came 1 s in: the upload gave up within about a second, not 19 s later
    assert float(out.stdout) < 3.0, out.stdout
    assert time.monotonic() - started < 10
