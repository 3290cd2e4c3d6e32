"""The dependency layer: requirements installed for the base image's Python, against a real
registry, real pip (a local wheelhouse, no index) and podman."""

import io
import json
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from lepton_ci.core.oci_client import OCIClient
from lepton_ci.image import base_probe, deps
from lepton_ci.image.base_probe import Facts, Target
from tests.conftest import Cli, commit_all, git

TARGET = Target("3.11", "manylinux_2_36_x86_64")


def make_wheel(wheelhouse: Path, name: str, version: str, body: str) -> Path:
    """A pure-Python wheel, written as a wheel is (a zip with .dist-info)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    path = wheelhouse / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(zipfile.ZipInfo(arc, (2020, 1, 1, 0, 0, 0)), text)
    return path


def make_sdist(wheelhouse: Path, name: str, version: str) -> None:
    """A source distribution only: no wheel for any platform."""
    with tarfile.open(wheelhouse / f"{name}-{version}.tar.gz", "w:gz") as t:
        data = f"from setuptools import setup\nsetup(name={name!r}, version={version!r})\n"
        info = tarfile.TarInfo(f"{name}-{version}/setup.py")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data.encode()))


@pytest.fixture
def wheelhouse(tmp_path, monkeypatch):
    """pip sees only this directory: no index, no machine pip.conf (hermetic, and it shows
    that PIP_* variables reach the installer)."""
    house = tmp_path / "wheelhouse"
    make_wheel(house, "tinydep", "1.0", "VALUE = 'from-the-dependency-layer'\ndef main(): pass\n")
    make_wheel(house, "tinydep", "2.0", "VALUE = 'two'\ndef main(): pass\n")
    make_sdist(house, "sdistonly", "1.0")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-cache"))
    return house


TRAIN = """import json, pathlib, yaml
p = yaml.safe_load(pathlib.Path("params.yaml").read_text())
pathlib.Path("model.bin").write_bytes(json.dumps(p).encode() * 100)
pathlib.Path("metrics.json").write_text(json.dumps({"accuracy": 0.9}))
"""


def project(repo: Path, services, requirements: str = "tinydep==1.0\n") -> str:
    """A model whose image has a dependency layer; returns its image name."""
    import uuid

    repo.mkdir()
    image = f"{services['registry'].host}/t{uuid.uuid4().hex[:10]}/deps"
    (repo / "train.py").write_text(TRAIN)
    (repo / "serve.py").write_text("import tinydep\nprint(tinydep.VALUE)\n")
    (repo / "params.yaml").write_text("seed: 1\n")
    (repo / "requirements.txt").write_text(requirements)
    (repo / "lepton.yaml").write_text(
        "models:\n  m:\n    train: python3 train.py\n    params: [params.yaml]\n"
        "    code: [train.py]\n    outputs: [model.bin]\n    metrics: [metrics.json]\n"
        "    gates: {accuracy: {direction: higher}}\n"
        f"    image:\n      name: {image}\n      base: {services['bases']['python']}\n"
        "      files: [serve.py]\n      requirements: requirements.txt\n"
        "      entrypoint: [python3, serve.py]\n"
    )
    (repo / ".gitignore").write_text(".lepton/\nmodel.bin\nmetrics.json\n")
    git(repo, "init", "-q")
    commit_all(repo, "feat: a model with dependencies")
    return image


def build(cli: Cli) -> tuple[dict, str]:
    code, out, err = cli("build", "--json")
    assert code == 0, err
    return json.loads(out), err


def release(cli: Cli) -> None:
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0


def registry_client(image: str) -> tuple[OCIClient, str]:
    host, repo = image.split("/", 1)
    return OCIClient(host), repo


# -- reading the base image -------------------------------------------------------------------


def layer_tar(members: dict[str, str | None], links: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, text in members.items():
            data = (text or "").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    buf.seek(0)
    return buf


DPKG = (
    "Package: libc6-dev\nStatus: install ok installed\nVersion: 2.99-1\n\n"
    "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n\n"
)


@pytest.mark.unit
def test_debian_base_python_from_the_link_and_glibc_from_dpkg():
    facts = Facts()
    facts.read(
        layer_tar(
            {
                "./usr/lib/python3.11/os.py": "",
                "./usr/lib/python3.12/os.py": "",
                "./var/lib/dpkg/status": DPKG,
            },
            {"./usr/bin/python3": "python3.11"},
        )
    )
    assert facts.python() == "3.11"
    assert facts.glibc == "2.36"  # libc6, not libc6-dev


@pytest.mark.unit
def test_official_python_image_prefers_usr_local_and_older_glibc_from_file_names():
    facts = Facts()
    facts.read(layer_tar({"lib/x86_64-linux-gnu/libc-2.31.so": "", "usr/lib/python3.9/os.py": ""}))
    facts.read(layer_tar({}, {"usr/local/bin/python3": "/usr/local/bin/python3.12"}))
    assert facts.python() == "3.12" and facts.glibc == "2.31"


@pytest.mark.unit
def test_alpine_base_is_musllinux_and_two_pythons_without_a_link_is_a_question():
    facts = Facts()
    facts.read(
        layer_tar(
            {
                "lib/ld-musl-aarch64.so.1": "",
                "lib/apk/db/installed": "P:busybox\nV:1.36\n\nP:musl\nV:1.2.4-r2\n",
                "usr/lib/python3.11/os.py": "",
                "usr/lib/python3.12/os.py": "",
            }
        )
    )
    from lepton_ci.core.config import ImageConfig

    image = ImageConfig(name="r/x", base="r/b:1", python="3.12")
    assert base_probe._platform(image, {"architecture": "arm64"}, facts) == (
        "musllinux_1_2_aarch64"
    )
    with pytest.raises(base_probe.BaseProbeError, match=r"several Pythons.*3\.11, 3\.12"):
        facts.python()


@pytest.mark.unit
def test_unquoted_python_version_is_refused_with_the_fix(tmp_path):
    from lepton_ci.core.config import ImageConfig

    with pytest.raises(ValueError, match="quote the version"):
        ImageConfig(name="r/x", base="r/b:1", python=3.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="for the `layers` builder"):
        ImageConfig(name="r/x", builder="dockerfile", requirements="requirements.txt")


# -- building --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_layer_order_pythonpath_probe_cache_and_key_tag(tmp_path, services, wheelhouse, capsys):
    repo = tmp_path / "repo"
    image = project(repo, services)
    cli = Cli(repo, capsys)
    release(cli)
    res, err = build(cli)
    assert "installing requirements.txt for CPython 3.11 on manylinux_2_36_x86_64" in err
    assert list(res["layers"]) == ["dependencies", "code", "model", "metadata"]
    client, name = registry_client(image)
    manifest, _ = client.image_manifest(name, res["digest"])
    config = json.loads(client.get_blob(name, manifest["config"]["digest"]))
    digests = [x["digest"] for x in manifest["layers"]]
    assert digests[-4:] == [res["layers"][n]["digest"] for n in res["layers"]]
    env = dict(x.split("=", 1) for x in config["config"]["Env"])
    assert env["PYTHONPATH"] == deps.DEPS_DIR
    # what the base runs was read once and kept under the base manifest's digest
    probe = json.loads((repo / ".lepton" / "cache" / "base-probe.json").read_text())
    ((key, facts),) = probe.items()
    base_host, base_name = services["bases"]["python"].split("/", 1)
    _, base_digest = OCIClient(base_host).image_manifest(*base_name.split(":"))
    assert key == f"{base_probe.PROBE_VERSION}:{base_digest}"
    assert facts["glibc"] == "2.36" and facts["links"]["usr/bin/python3"] == "python3.11"
    # the key's tag: an artifact whose one layer is the dependency layer
    tags = [t for t in requests_tags(client, name) if t.startswith(deps.TAG_PREFIX)]
    assert len(tags) == 1
    artifact = json.loads(client.get_manifest(name, tags[0])[0])
    assert artifact["artifactType"] == deps.ARTIFACT_TYPE
    assert artifact["layers"][0]["digest"] == res["layers"]["dependencies"]["digest"]
    # the layer holds the package and its bytecode, not the console script
    blob = client.get_blob(name, res["layers"]["dependencies"]["digest"])
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        names = t.getnames()
        assert all(m.mtime == deps.MTIME and m.uid == 0 for m in t.getmembers())
    root = deps.DEPS_DIR.lstrip("/")
    assert f"{root}/tinydep/__init__.py" in names
    assert f"{root}/tinydep/__pycache__/__init__.cpython-311.pyc" in names
    assert not any(n.startswith(f"{root}/bin") for n in names)


def requests_tags(client: OCIClient, repo: str) -> list[str]:
    r = client.request("GET", f"/v2/{repo}/tags/list", repo=repo)
    return list(r.json()["tags"])


@pytest.mark.e2e
def test_code_change_reuses_and_model_change_sends_only_model_metadata_config(
    tmp_path, services, wheelhouse, capsys
):
    repo = tmp_path / "repo"
    project(repo, services)
    cli = Cli(repo, capsys)
    release(cli)
    first, _ = build(cli)
    assert first["layers"]["dependencies"]["uploaded"] > 0
    (repo / "serve.py").write_text("import tinydep\nprint('v2', tinydep.VALUE)\n")
    commit_all(repo, "fix: say v2")
    release(cli)
    second, err = build(cli)
    assert "in the machine cache" in err and "installing" not in err
    deps_layer = second["layers"]["dependencies"]
    assert deps_layer["uploaded"] == 0
    assert deps_layer["digest"] == first["layers"]["dependencies"]["digest"]
    assert second["layers"]["code"]["uploaded"] > 0
    (repo / "params.yaml").write_text("seed: 2\n")
    commit_all(repo, "feat: another seed")
    release(cli)
    third, _ = build(cli)
    layers = third["layers"]
    assert [n for n in layers if layers[n]["uploaded"]] == ["model", "metadata"]
    config_bytes = third["uploaded_bytes"] - layers["model"]["size"] - layers["metadata"]["size"]
    assert 0 < config_bytes < 8000


@pytest.mark.e2e
def test_fresh_clone_with_an_empty_cache_finds_the_layer_in_the_registry(
    tmp_path, services, wheelhouse, capsys, monkeypatch
):
    repo = tmp_path / "repo"
    project(repo, services)
    cli = Cli(repo, capsys)
    release(cli)
    first, _ = build(cli)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-machine"))
    shutil.rmtree(wheelhouse)  # nothing could be installed now
    fresh = Cli(clone, capsys)
    # a new version in the clone: its code changed, its requirements did not
    (clone / "serve.py").write_text("import tinydep\nprint('v2', tinydep.VALUE)\n")
    commit_all(clone, "feat: another server")
    release(fresh)
    second, err = build(fresh)
    assert "in the registry" in err and "installing" not in err
    assert second["layers"]["dependencies"]["uploaded"] == 0
    assert second["layers"]["dependencies"]["digest"] == first["layers"]["dependencies"]["digest"]
    assert not (tmp_path / "another-machine" / "lepton-ci" / "deps").exists()


@pytest.mark.e2e
def test_a_second_repository_on_the_machine_neither_installs_nor_uploads(
    tmp_path, services, wheelhouse, capsys
):
    one, two = tmp_path / "one", tmp_path / "two"
    project(one, services)
    image = project(two, services)
    cli = Cli(one, capsys)
    release(cli)
    first, _ = build(cli)
    cli = Cli(two, capsys)
    release(cli)
    second, err = build(cli)
    assert "in the machine cache" in err and "installing" not in err
    layer = second["layers"]["dependencies"]
    assert layer["digest"] == first["layers"]["dependencies"]["digest"]
    assert layer["uploaded"] == 0  # mounted from the first repository
    client, name = registry_client(image)
    assert client.blob_exists(name, layer["digest"])


@pytest.mark.e2e
def test_a_package_with_no_wheel_is_a_clear_error(tmp_path, services, wheelhouse, capsys):
    repo = tmp_path / "repo"
    project(repo, services, requirements="tinydep==1.0\nsdistonly==1.0\n")
    cli = Cli(repo, capsys)
    release(cli)
    code, _, err = cli("build")
    assert code == 1
    assert "no wheel of `sdistonly==1.0` for CPython 3.11 on manylinux_2_36_x86_64" in err
    assert "PIP_FIND_LINKS" in err and "Traceback" not in err
    # nothing half-done: no image, no layer cached
    assert not list((tmp_path / "machine-cache" / "lepton-ci" / "deps").glob("[0-9a-f]*"))


@pytest.mark.e2e
@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_same_requirements_give_the_same_layer_bytes(tmp_path, wheelhouse, monkeypatch, tool):
    req = tmp_path / "requirements.txt"
    req.write_text("tinydep==1.0\n")
    monkeypatch.setenv("LEPTON_DEPS_INSTALLER", tool)
    installer = deps.default_installer()
    assert installer.kind(TARGET) == tool
    a = deps._build(req, TARGET, installer, tmp_path / "a", "k")
    b = deps._build(req, TARGET, installer, tmp_path / "b", "k")
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    # the installed trees are removed after the build, by a process of their own
    trash = [*(tmp_path / "a").glob(".*"), *(tmp_path / "b").glob(".*")]
    for _ in range(300):
        if not any(t.exists() for t in trash):
            break
        time.sleep(0.1)
    assert not [t for t in trash if t.exists()]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["k"]
    req.write_text("tinydep==2.0\n")
    assert deps.layer_key(req.read_bytes(), TARGET) != deps.layer_key(b"tinydep==1.0\n", TARGET)


@pytest.mark.e2e
def test_the_image_imports_the_package_from_the_dependency_layer(
    tmp_path, services, wheelhouse, capsys
):
    repo = tmp_path / "repo"
    project(repo, services)
    cli = Cli(repo, capsys)
    release(cli)
    res, _ = build(cli)
    podman = services["podman"]
    ref = f"{res['image']}@{res['digest']}"
    podman("pull", "-q", "--tls-verify=false", ref)
    out = podman("run", "--rm", ref, timeout=120).stdout
    assert out.strip() == "from-the-dependency-layer"
    where = podman(
        "run", "--rm", "--entrypoint", "python3", ref, "-c",
        "import tinydep, sys; print(tinydep.__file__, tinydep.__cached__)", timeout=120,
    ).stdout.split()  # fmt: skip
    assert where[0] == f"{deps.DEPS_DIR}/tinydep/__init__.py"


@pytest.mark.unit
def test_the_platform_tag_widens_to_every_older_one_pip_should_accept():
    tags = TARGET.platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_28_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    arm = Target("3.12", "manylinux_2_31_aarch64").platforms()
    assert arm[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert Target("3.12", "musllinux_1_2_x86_64").platforms() == [
        "musllinux_1_2_x86_64",
        "musllinux_1_1_x86_64",
        "musllinux_1_0_x86_64",
    ]


@pytest.mark.unit
def test_parallel_gzip_is_one_readable_stream_and_the_same_bytes_every_time():
    import gzip
    import os

    data = os.urandom(1 << 20) * 9 + b"tail"  # more than two pieces
    outs = []
    for _ in range(2):
        parts: list[bytes] = []
        gz = deps.ParallelGzip(parts.append)
        for i in range(0, len(data), 100_000):
            gz.write(data[i : i + 100_000])
        digest, size = gz.close()
        blob = b"".join(parts)
        assert size == len(blob) and digest == deps.sha256(blob)
        outs.append(blob)
    assert outs[0] == outs[1]
    assert gzip.decompress(outs[0]) == data


@pytest.mark.unit
def test_the_key_follows_included_requirement_files(tmp_path):
    from lepton_ci.core.errors import InputError

    (tmp_path / "base.txt").write_text("tinydep==1.0\n")
    main = tmp_path / "requirements.txt"
    main.write_text("-r base.txt\n--constraint=missing.txt\n")
    with pytest.raises(InputError, match=r"includes missing\.txt"):
        deps.requirement_bytes(main)
    main.write_text("-r base.txt\n")
    before = deps.layer_key(deps.requirement_bytes(main), TARGET)
    (tmp_path / "base.txt").write_text("tinydep==2.0\n")
    assert deps.layer_key(deps.requirement_bytes(main), TARGET) != before
    assert deps.layer_key(deps.requirement_bytes(main), Target("3.12", TARGET.platform)) != (
        deps.layer_key(deps.requirement_bytes(main), TARGET)
    )


@pytest.mark.unit
def test_the_dependency_directory_goes_before_the_base_images_pythonpath():
    assert deps.pythonpath({"config": {"Env": ["PATH=/bin"]}}) == deps.DEPS_DIR
    base = {"config": {"Env": ["PYTHONPATH=/usr/local/app", "LANG=C.UTF-8"]}}
    assert deps.pythonpath(base) == f"{deps.DEPS_DIR}:/usr/local/app"


@pytest.mark.unit
def test_uv_is_handed_pips_settings_and_its_layers_have_keys_of_their_own(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nfind-links = /from/file\nextra-index-url = file:///a file:///b\n"
        "constraint = /c.txt\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", "/from/env")  # the environment wins, as in pip
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    uv = deps.UvInstaller("uv")
    cmd = uv.command(tmp_path / "r.txt", tmp_path / "site", TARGET)
    assert cmd[:3] == ["uv", "pip", "install"]
    assert cmd[cmd.index("--python-platform") + 1] == "x86_64-manylinux_2_36"
    flags = " ".join(cmd)
    assert "--no-index" in cmd and "--find-links /from/env" in flags and "/from/file" not in flags
    assert "--extra-index-url file:///a --extra-index-url file:///b" in flags
    assert "--constraint /c.txt" in flags
    assert "--index-strategy unsafe-best-match" in flags  # pip searches every index alike
    musl = Target("3.12", "musllinux_1_2_x86_64")  # a platform uv cannot name: pip installs
    assert uv.kind(musl) == "pip" and "pip" in uv.command(tmp_path, tmp_path, musl)[1:3]
    key = deps.layer_key(b"tinydep==1.0\n", TARGET)
    assert deps.layer_key(b"tinydep==1.0\n", TARGET, "pip") == key  # pip's keys are kept
    assert deps.layer_key(b"tinydep==1.0\n", TARGET, "uv") != key
