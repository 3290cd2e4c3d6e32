"""`build` ships what was registered: the record's commit and its checked artifacts, under
tags that never move backwards or to other content. Real git, the real registry and podman's
real Docker-API socket."""

import gzip
import io
import json
import subprocess
import tarfile

import pytest

from lepton_ci.core.oci_client import OCIClient
from lepton_ci.core.record import parse
from tests.conftest import Cli, commit_all, example_repo, git

pytestmark = pytest.mark.e2e


@pytest.fixture
def digits(tmp_path, services, capsys):
    """The digits example, v0.1.0 registered (not built)."""
    repo = tmp_path / "digits"
    prefix = example_repo(repo, services)
    cli = Cli(repo, capsys)
    cli.reg = prefix
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0
    return repo, cli


def registry(cli):
    host, ns = cli.reg.split("/", 1)
    return OCIClient(host), f"{ns}/digits"


def digest_of(cli, tag):
    client, repo = registry(cli)
    return client.manifest_digest(repo, tag)


def tags_of(cli):
    client, repo = registry(cli)
    r = client.request("GET", f"/v2/{repo}/tags/list", repo=repo)
    return set(r.json().get("tags") or []) if r.status_code == 200 else set()


def image_file(cli, ref, path):
    """A file's bytes as the image holds it (the topmost layer that has it)."""
    client, repo = registry(cli)
    manifest, _ = client.image_manifest(repo, ref)
    for layer in reversed(manifest["layers"]):
        blob = client.get_blob(repo, layer["digest"])
        data = gzip.decompress(blob) if layer["mediaType"].endswith("gzip") else blob
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            try:
                return t.extractfile(path.lstrip("/")).read()
            except KeyError:
                continue
    raise AssertionError(f"{path} is in no layer of {ref}")


def image_env(cli, ref):
    client, repo = registry(cli)
    manifest, _ = client.image_manifest(repo, ref)
    config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    return dict(x.split("=", 1) for x in config["config"]["Env"])


def build(cli, *args):
    code, out, err = cli("build", "--json", *args)
    assert code == 0, err
    return json.loads(out), err


def test_a_dirty_work_tree_never_reaches_the_registry(digits):
    repo, cli = digits
    committed = (repo / "serve.py").read_bytes()
    (repo / "serve.py").write_text("print('uncommitted')\n")
    (repo / "lepton.yaml").write_text(
        (repo / "lepton.yaml").read_text().replace('PORT: "8080"', 'PORT: "9999"')
    )
    res, _ = build(cli)
    assert res["tags"][:2] == ["0.1.0", "0.1"]
    # the commit's serve.py and config, not the edits
    assert image_file(cli, "0.1.0", "/app/serve.py") == committed
    assert image_env(cli, "0.1.0")["PORT"] == "8080"
    before = {t: digest_of(cli, t) for t in tags_of(cli)}
    # HEAD moves on, not run yet: the last run's commit is what is built (here: kept as is)
    commit_all(repo, "fix: a new server, not run yet")
    again, err = build(cli)
    assert "not HEAD" in err and again["digest"] == res["digest"]
    assert {t: digest_of(cli, t) for t in tags_of(cli)} == before
    # a run on a dirty tree: its record says so, and no image is made of it
    (repo / "serve.py").write_text("print('dirty again')\n")
    assert cli("run", "--no-fail")[0] == 0
    assert parse((repo / ".lepton/runs/digits.json").read_text(), "x").git.dirty
    code, _, err = cli("build")
    assert code == 1
    assert "uncommitted changes" in err and "commit the changes, `lepton-ci run`" in err
    assert {t: digest_of(cli, t) for t in tags_of(cli)} == before


def test_an_old_version_is_built_from_its_commit_and_keeps_the_newer_floating_tag(digits):
    repo, cli = digits
    old_serve = (repo / "serve.py").read_bytes()
    (repo / "serve.py").write_text(old_serve.decode() + "\n# v0.1.1\n")
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace('PORT: "8080"', 'PORT: "8080", FLAVOUR: new'))
    commit_all(repo, "fix: a newer server")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    new, _ = build(cli)
    assert new["tags"][:2] == ["0.1.1", "0.1"]
    old, err = build(cli, "--version", "v0.1.0")
    sha = git(repo, "rev-list", "-n1", "digits@v0.1.0")
    assert old["tags"] == ["0.1.0", f"sha-{sha[:7]}"]  # no `0.1`
    assert "digits@v0.1.1 is newer than v0.1.0: 0.1 is left where it is" in err
    assert digest_of(cli, "0.1") == new["digest"] != old["digest"]
    assert digest_of(cli, "0.1.0") == old["digest"]
    # v0.1.0's own files and config, though the work tree holds v0.1.1's
    assert image_file(cli, "0.1.0", "/app/serve.py") == old_serve
    assert "FLAVOUR" not in image_env(cli, "0.1.0")
    assert image_env(cli, "0.1.1")["FLAVOUR"] == "new"
    labels_old = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{cli.reg}/digits:0.1.0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["Labels"]
    assert labels_old["org.opencontainers.image.revision"] == sha
    # the same again is a no-op: nothing sent, no tag moved
    again, _ = build(cli, "--version", "v0.1.0")
    assert again["digest"] == old["digest"] and again["uploaded_bytes"] == 0
    assert digest_of(cli, "0.1") == new["digest"]


def test_a_rerun_of_a_registered_commit_does_not_move_its_tag(digits, services):
    repo, cli = digits
    first, err = build(cli)
    assert "re-ran" not in err and "notice" not in err  # the run is the registered record
    tag_record = parse((repo / ".lepton/runs/digits.json").read_text(), "x")
    assert cli("run")[0] == 0  # the same commit again: a new record (another created_at)
    rerun = parse((repo / ".lepton/runs/digits.json").read_text(), "x")
    assert rerun.digest() != tag_record.digest()
    second, err = build(cli)
    assert "notice: " in err and "building the record registered in the tag" in err
    assert second["digest"] == first["digest"] and second["uploaded_bytes"] == 0
    assert digest_of(cli, "0.1.0") == first["digest"]
    # a tag that holds other content is refused by name, digest and fix; nothing moves
    other = f"docker://{services['bases']['tiny']}"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            other,
            f"docker://{cli.reg}/digits:0.1.0",
        ],
        check=True,
        capture_output=True,
    )
    held = digest_of(cli, "0.1.0")
    code, _, err = cli("build")
    assert code == 1
    assert f"image tag {cli.reg}/digits:0.1.0 already holds {held}" in err
    assert "an image not built by lepton-ci" in err and "never replaced" in err
    assert "delete the tag in the registry first" in err
    assert digest_of(cli, "0.1.0") == held and digest_of(cli, "0.1") == first["digest"]


def test_build_metadata_maps_to_a_valid_tag_before_any_upload(digits):
    repo, cli = digits
    (repo / "README.md").write_text("rc\n")
    commit_all(repo, "docs: a release candidate")
    assert cli("run")[0] == 0
    assert cli("register", "--version", "0.3.0-rc.1+build.5")[0] == 0
    res, _ = build(cli)
    sha = git(repo, "rev-parse", "HEAD")
    assert res["tags"] == ["0.3.0-rc.1_build.5", f"sha-{sha[:7]}"]
    assert digest_of(cli, "0.3.0-rc.1_build.5") == res["digest"]


@pytest.mark.unit
def test_image_tag_mapping_and_length():
    from lepton_ci.core.errors import RegistryError
    from lepton_ci.core.semver import image_tag

    assert image_tag("v0.3.0-rc.1+build.5") == "0.3.0-rc.1_build.5"
    assert image_tag("1.2.3") == "1.2.3"
    with pytest.raises(RegistryError, match="longer than the 128 characters"):
        image_tag("1.0.0+" + "a" * 130)


def test_a_swapped_artifact_is_refused_before_the_engine_builds(digits, services, monkeypatch):
    repo, cli = digits
    (repo / "Dockerfile").write_text(
        f"FROM {services['bases']['python']}\nWORKDIR /app\n"
        "COPY serve.py data.py model.joblib /app/\n"
        'CMD ["python3", "serve.py"]\n'
    )
    commit_all(repo, "build: a Dockerfile")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    monkeypatch.setenv("DOCKER_HOST", services["docker_host"])
    recorded = (repo / "model.joblib").read_bytes()
    (repo / "model.joblib").unlink()  # a new file: the run-cache's copy (maybe a link) stays
    (repo / "model.joblib").write_text('{"swapped": true}')
    # the run-cache still holds the recorded bytes: those are built, not the swapped file
    res, _ = build(cli, "--builder", "dockerfile")
    assert image_file(cli, res["digest"], "/app/model.joblib") == recorded
    assert res["uploaded_bytes"] > 0
    # with the cache gone too, nothing has the record's bytes: refused, nothing pushed
    import shutil

    shutil.rmtree(repo / ".lepton" / "cache" / "blobs")
    (repo / "README.md").write_text("again\n")
    commit_all(repo, "docs: another version")
    (repo / "model.joblib").write_bytes(recorded)
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    (repo / "model.joblib").write_text('{"swapped": true}')
    before = tags_of(cli)
    code, _, err = cli("build", "--builder", "dockerfile")
    assert code == 1
    assert "artifact model.joblib of digits v0.1.2" in err and "does not match" in err
    assert "git checkout" in err
    assert tags_of(cli) == before


@pytest.mark.unit
def test_the_dockerfile_builder_checks_artifacts_without_an_engine(tmp_path):
    from lepton_ci.core.config import ModelConfig
    from lepton_ci.core.errors import RecordError
    from lepton_ci.core.hashing import hash_file
    from lepton_ci.core.record import Record
    from lepton_ci.image.build import DockerfileBuilder

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "model.bin").write_bytes(b"recorded")
    entry = {"hash": hash_file(tmp_path / "model.bin"), "size": 8}
    (tmp_path / "model.bin").write_bytes(b"swapped!")
    rec = Record.model_validate(
        {
            "model": "m",
            "candidate_version": "v1.0.0",
            "created_at": "x",
            "git": {"sha": "a" * 40, "commit_time": 0},
            "environment": {
                "python": "3",
                "platform": "p",
                "packages_digest": "d",
                "packages_source": "s",
            },
            "cache": {"key": "k"},
            "outputs": {"model.bin": entry},
        }
    )
    cfg = ModelConfig.model_validate(
        {"train": "true", "metrics": ["m.json"], "image": {"name": "127.0.0.1:9/m"}}
    )
    # no engine and no registry: the check comes first
    builder = DockerfileBuilder(None, lambda registry: None)
    with pytest.raises(RecordError, match=r"artifact .*model.bin does not match"):
        builder.build(tmp_path, rec, cfg, "card", ["1.0.0"])


@pytest.mark.parametrize(
    "host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"], ids=["no-socket", "refused"]
)
def test_an_unreachable_engine_is_exit_1_with_what_to_start(digits, monkeypatch, host):
    _, cli = digits
    monkeypatch.setenv("DOCKER_HOST", host)
    code, _, err = cli("build", "--builder", "dockerfile")
    assert code == 1, err
    assert f"no container engine answers at {host}, DOCKER_HOST" in err
    assert "podman system service" in err and "DOCKER_HOST=" in err
    assert "bug in lepton-ci" not in err
    assert tags_of(cli) == set()


def test_a_git_hook_environment_cannot_turn_the_checkout_onto_the_project(digits, monkeypatch):
    """GIT_DIR and GIT_INDEX_FILE set (lepton-ci run from a git hook): the commit is still
    checked out into its own repository; the project's HEAD, index and config stay as they
    were."""
    repo, cli = digits
    head, branch = git(repo, "rev-parse", "HEAD"), git(repo, "symbolic-ref", "HEAD")
    config = (repo / ".git" / "config").read_text()
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(repo / ".git" / "index"))
    res, _ = build(cli)
    assert res["tags"][0] == "0.1.0"
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "symbolic-ref", "HEAD") == branch
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert (repo / ".git" / "config").read_text() == config
    assert not (repo / ".lepton" / "cache" / "checkout" / "digits").exists()  # cleaned up


@pytest.mark.unit
def test_docker_push_progress_is_counted_per_layer():
    """Docker reports each layer's progress (podman reports none: see the registry count)."""
    from lepton_ci.core.oci_client import OCIError
    from lepton_ci.image.build import _push_event

    digest = "sha256:" + "ab" * 32
    stream = [
        {"status": "The push refers to repository [r/m]"},
        {"status": "Preparing", "progressDetail": {}, "id": "l1"},
        {"status": "Layer already exists", "progressDetail": {}, "id": "l0"},
        {"status": "Pushing", "progressDetail": {"current": 512, "total": 1000}, "id": "l1"},
        {"status": "Pushing", "progressDetail": {"current": 1000, "total": 1000}, "id": "l1"},
        {"status": "Pushing", "progressDetail": {"current": 70, "total": 70}, "id": "l2"},
        {"status": "Pushed", "progressDetail": {}, "id": "l1"},
        {"status": f"1.0.0: digest: {digest} size: 528"},
        {"progressDetail": {}, "aux": {"Tag": "1.0.0", "Digest": digest, "Size": 528}},
    ]
    pushed: dict[str, int] = {}
    found = [_push_event(line, "r/m:1.0.0", pushed) for line in stream]
    assert pushed == {"l1": 1000, "l2": 70}
    assert [d for d in found if d] == [digest, digest]
    with pytest.raises(OCIError, match=r"push of r/m:1\.0\.0 failed: denied"):
        _push_event({"error": "denied"}, "r/m:1.0.0", pushed)


def test_a_committed_symlink_never_ships_a_file_from_outside_the_checkout(digits, tmp_path):
    repo, cli = digits
    secret = tmp_path / "runner-secret"
    secret.write_text("the runner's own file\n")
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("files: [serve.py]", "files: ['*.py']"))
    (repo / "alias.py").symlink_to("serve.py")  # inside the tree: its target's bytes ship
    commit_all(repo, "feat: an alias")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    res, _ = build(cli)
    assert image_file(cli, res["digest"], "/app/alias.py") == (repo / "serve.py").read_bytes()
    before = {t: digest_of(cli, t) for t in tags_of(cli)}
    deep = "../" * 40 + str(secret).lstrip("/")  # reaches / from the checkout too
    for name, target in [("leak.py", str(secret)), ("rel.py", deep)]:
        (repo / name).symlink_to(target)
        commit_all(repo, f"feat: {name}")
        assert cli("run")[0] == 0 and cli("register")[0] == 0
        code, _, err = cli("build")
        assert code == 1, err
        assert f"{name} in the code layer is a symlink to '{target}'" in err
        assert "resolves outside" in err and "commit the file itself in place of the" in err
        assert {t: digest_of(cli, t) for t in tags_of(cli)} == before  # nothing pushed
        (repo / name).unlink()


@pytest.mark.unit
def test_the_docker_context_refuses_links_out_of_it_but_takes_checked_artifacts(tmp_path):
    from lepton_ci.core.errors import InputError
    from lepton_ci.image.build import _context_tar

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "outside").write_text("host file\n")
    (tmp_path / "cache-model").write_text("checked weights\n")
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "serve.py").write_text("print('hi')\n")
    (ctx / "alias.py").symlink_to("serve.py")
    model = ctx / "model.bin"
    model.symlink_to(tmp_path / "cache-model")  # an artifact, linked in
    with _context_tar(ctx, "Dockerfile", [model]) as f, tarfile.open(fileobj=f) as t:
        assert t.extractfile("alias.py").read() == b"print('hi')\n"
        assert t.extractfile("model.bin").read() == b"checked weights\n"
    (ctx / "sub").symlink_to("..")  # a linked directory leaving the context
    refused = r"sub in the Docker context is a symlink to '\.\.'"
    with pytest.raises(InputError, match=refused), _context_tar(ctx, "Dockerfile", [model]):
        pass
    (ctx / "sub").unlink()
    (ctx / "x.py").symlink_to("../outside")
    refused = r"x.py in the Docker context .* resolves outside"
    with pytest.raises(InputError, match=refused), _context_tar(ctx, "Dockerfile", [model]):
        pass


def test_a_version_that_failed_its_gates_never_takes_the_floating_tag(digits):
    repo, cli = digits
    first, _ = build(cli)
    cfg = repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("min: 0.90, max_regression: 0.01", "min: 0.9999"))
    commit_all(repo, "fix: a gate no model passes")
    assert cli("run", "--no-fail")[0] == 0
    assert cli("register", "--allow-failed")[0] == 0
    failed, err = build(cli)
    sha = git(repo, "rev-parse", "HEAD")
    assert failed["tags"] == ["0.1.1", f"sha-{sha[:7]}"]  # no `0.1`
    assert "digits v0.1.1 failed its gates (registered with --allow-failed): 0.1 is left" in err
    assert digest_of(cli, "0.1") == first["digest"] != failed["digest"]


def test_a_commit_built_before_it_was_registered_is_released_under_its_version(digits):
    repo, cli = digits
    build(cli)
    (repo / "serve.py").write_text((repo / "serve.py").read_text() + "# next\n")
    commit_all(repo, "fix: a server change")
    assert cli("run")[0] == 0
    early, err = build(cli)  # not registered: sha-<short> only
    sha = git(repo, "rev-parse", "HEAD")
    assert early["tags"] == [f"sha-{sha[:7]}"]
    assert cli("register", "--version", "0.3.0")[0] == 0
    code, out, err = cli("build", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["tags"] == ["0.3.0", "0.3", f"sha-{sha[:7]}"]
    # the sha- tag moved to the registered build: one image of the commit, labelled 0.3.0
    assert digest_of(cli, f"sha-{sha[:7]}") == digest_of(cli, "0.3.0") == res["digest"]
    assert image_env(cli, "0.3.0")["MODEL_VERSION"] == "v0.3.0"


def test_the_floating_tag_never_moves_back_in_a_clone_without_newer_tags(digits):
    repo, cli = digits
    (repo / "serve.py").write_text((repo / "serve.py").read_text() + "# v0.1.1\n")
    commit_all(repo, "fix: v0.1.1")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    new, _ = build(cli)
    assert digest_of(cli, "0.1") == new["digest"]
    git(repo, "tag", "-d", "digits@v0.1.1")  # as `git clone --no-tags` of a later commit
    old, err = build(cli, "--version", "v0.1.0")
    assert "0.1" not in old["tags"] and "0.1.0" in old["tags"]
    assert f"{cli.reg}/digits:0.1 holds digits v0.1.1, newer than v0.1.0: 0.1 is left" in err
    assert digest_of(cli, "0.1") == new["digest"]


def test_an_old_version_says_it_is_built_with_its_commits_config(digits):
    repo, cli = digits
    cfg = repo / "lepton.yaml"
    with_image = cfg.read_text()
    start, end = with_image.index("    image:\n"), with_image.index("    deploy:\n")
    cfg.write_text(with_image[:start] + with_image[end:])
    commit_all(repo, "fix: no image yet")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    no_image = git(repo, "rev-parse", "HEAD")[:7]
    cfg.write_text(with_image)
    commit_all(repo, "fix: an image again")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    v010 = git(repo, "rev-list", "-n1", "digits@v0.1.0")[:7]
    _, err = build(cli, "--version", "v0.1.0")
    assert f"building v0.1.0 with lepton.yaml as of its commit {v010}" in err
    code, _, err = cli("build", "--version", "v0.1.1")
    assert code == 1
    assert f"lepton.yaml as of commit {no_image} (digits v0.1.1) has no `image:` section" in err
    assert "commit the `image:` section, then `lepton-ci run` and `lepton-ci register`" in err
