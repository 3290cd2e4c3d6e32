"""Signed versions: register signs, verify checks the chain, every forgery is refused by name.

Real git repositories (and a bare remote for the fresh-clone and atomic-push tests), real
keys, the real libraries: securesystemslib for DSSE, model-signing's own verifier for the
model files, GTO for the registry.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path

import pytest

from lepton_ci.core.git import Git
from lepton_ci.trust import store
from tests.conftest import Cli, commit_all, git, set_params
from tests.support.trust import key_pair, trust_repo

pytestmark = pytest.mark.e2e

TAG = "toy@v0.1.0"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Private keys live outside the repository; the public halves are committed."""
    priv, pub = key_pair(tmp_path / "keys", "release")
    other_priv, other_pub = key_pair(tmp_path / "keys", "intruder")
    ed_priv, ed_pub = key_pair(tmp_path / "keys", "edkey", "ed25519")
    return {
        "priv": priv,
        "pub": pub,
        "other_priv": other_priv,
        "other_pub": other_pub,
        "ed_priv": ed_priv,
        "ed_pub": ed_pub,
    }


@pytest.fixture
def signed(cli: Cli, toy_repo: Path, keys, monkeypatch) -> Path:
    """The toy repository trusting the release key, with toy@v0.1.0 registered and signed."""
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    monkeypatch.setenv("LEPTON_SIGNING_KEY", str(keys["priv"]))
    code, out, err = cli("register")
    assert code == 0, err
    assert "signed by key" in out
    monkeypatch.delenv("LEPTON_SIGNING_KEY")
    return toy_repo


def _statement(repo: Path, tag: str = TAG) -> dict:
    bundle = json.loads(git(repo, "cat-file", "blob", f"{store.ref_of(tag)}:{store.STATEMENT}"))
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def test_register_signs_and_verify_holds(cli, signed):
    code, out, err = cli("verify", TAG)
    assert code == 0, err
    assert out.startswith(f"{TAG}: verified, signed by key keys/release.pub")
    assert "record digest" in out and "1 file(s) on disk match the signed sha256" in out
    st = _statement(signed)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    (subject,) = st["subject"]
    assert subject["name"] == "model.bin"
    import hashlib

    assert (
        subject["digest"]["sha256"]
        == hashlib.sha256((signed / "model.bin").read_bytes()).hexdigest()
    )
    build = st["predicate"]["buildDefinition"]
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["commit"]["digest"]["gitCommit"] == git(signed, "rev-parse", f"{TAG}^{{commit}}")
    assert set(deps["evidence-record"]["digest"]) == {"sha256", "blake3"}
    assert build["externalParameters"]["tag"] == TAG
    assert st["predicate"]["runDetails"]["builder"]["id"] == "local"
    code, out, _ = cli("verify", TAG, "--json")
    assert code == 0 and json.loads(out)["verified"] is True


def test_the_statement_names_the_workflow_and_run_in_actions(cli, toy_repo, keys, monkeypatch):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    for k, v in {
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_WORKFLOW_REF": "acme/models/.github/workflows/model-main.yml@refs/heads/main",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "2",
        "RUNNER_NAME": "GitHub Actions 3",
        "RUNNER_OS": "Linux",
        "RUNNER_ENVIRONMENT": "github-hosted",
    }.items():
        monkeypatch.setenv(k, v)
    assert cli("register", "--signing-key", str(keys["priv"]))[0] == 0
    pred = _statement(toy_repo)["predicate"]
    ext = pred["buildDefinition"]["externalParameters"]
    assert ext["repository"] == "https://github.com/acme/models"
    assert ext["workflow"] == {"path": ".github/workflows/model-main.yml", "ref": "refs/heads/main"}
    assert pred["runDetails"]["builder"]["id"] == (
        "https://github.com/acme/models/.github/workflows/model-main.yml@refs/heads/main"
    )
    assert pred["runDetails"]["metadata"]["invocationId"].endswith("/actions/runs/77/attempts/2")
    assert pred["buildDefinition"]["internalParameters"]["runner"]["environment"] == "github-hosted"


def test_an_ed25519_key_signs_the_statement_and_model_signing_is_skipped(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["ed_pub"])
    assert cli("run")[0] == 0
    code, out, err = cli("register", "--signing-key", str(keys["ed_priv"]))
    assert code == 0, err
    assert "elliptic-curve keys only" in out + err
    files = store.read(Git(toy_repo), TAG, None)
    assert set(files) == {store.STATEMENT}
    assert cli("verify", TAG)[0] == 0


def test_model_files_verify_with_model_signings_own_verifier(signed, keys, tmp_path):
    from model_signing import verifying

    sig = tmp_path / "model.sig"
    sig.write_bytes(store.read(Git(signed), TAG, None)[store.MODEL_SIG])
    config = verifying.Config().use_elliptic_key_verifier(public_key=keys["pub"])
    config.set_ignore_unsigned_files(True).verify(signed, sig)  # raises when it fails
    # and its CLI, as the README tells a person to run it
    proc = subprocess.run(
        [
            "model_signing",
            "verify",
            "key",
            str(signed),
            "--signature",
            str(sig),
            "--public_key",
            str(keys["pub"]),
            "--ignore_unsigned_files",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (signed / "model.bin").write_text("swapped weights\n")
    with pytest.raises(ValueError, match=r"model\.bin"):
        config.verify(signed, sig)


def test_without_key_or_token_register_signs_nothing_and_says_so_once(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    code, out, err = cli("register")
    assert code == 0
    assert (out + err).count("not signed: no signing key") == 1
    assert git(toy_repo, "for-each-ref", "refs/lepton-ci") == ""
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: signature: the version is not signed" in err


def test_require_refuses_to_register_unsigned_and_writes_nothing(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["pub"], require=True)
    assert cli("run")[0] == 0
    code, _, err = cli("register")
    assert code == 1
    assert "trust.require: true` refuses unsigned versions; nothing was written" in err
    assert git(toy_repo, "tag") == ""


def test_a_forged_tag_with_a_copied_record_is_refused(cli, signed):
    # Another commit, and a tag made by hand with v0.1.0's message: nothing signed it.
    set_params(signed, lr=0.3)
    head = commit_all(signed, "fix: unreviewed")
    message = git(signed, "tag", "-l", "--format=%(contents)", TAG)
    git(signed, "tag", "-a", "toy@v9.9.9", "-m", message, head)
    code, _, err = cli("verify", "toy@v9.9.9")
    assert code == 1 and "toy@v9.9.9: signature: the version is not signed" in err
    # ...with v0.1.0's attestations copied beside it: they are about another tag
    git(signed, "update-ref", store.ref_of("toy@v9.9.9"), store.ref_of(TAG))
    code, _, err = cli("verify", "toy@v9.9.9")
    assert code == 1
    assert "toy@v9.9.9: statement: the signed statement is about toy@v0.1.0, not toy@v9.9.9" in err


def test_a_tag_moved_to_another_commit_is_refused(cli, signed):
    set_params(signed, lr=0.3)
    head = commit_all(signed, "fix: swapped in")
    message = git(signed, "tag", "-l", "--format=%(contents)", TAG)
    git(signed, "tag", "-f", "-a", TAG, "-m", message, head)
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: commit: the tag points at {head[:12]}, the signed statement names" in err


def test_a_tag_whose_record_was_edited_is_refused(cli, signed):
    message = git(signed, "tag", "-l", "--format=%(contents)", TAG)
    edited = message.replace('"accuracy": 0.9', '"accuracy": 0.99')
    assert edited != message
    sha = git(signed, "rev-parse", f"{TAG}^{{commit}}")
    git(signed, "tag", "-f", "-a", TAG, "-m", edited, sha)
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: record: the tag's record has blake3" in err
    assert "is not the one that was signed" in err


def test_a_swapped_artifact_is_refused_by_name(cli, signed):
    (signed / "model.bin").write_text("weights from elsewhere\n")
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: artifact model.bin: sha256 " in err and "in the signed statement" in err


def test_a_record_with_a_swapped_artifact_hash_is_refused_by_name(cli, signed, keys):
    """A version whose record names other weights than the signed statement: re-signed by an
    attacker's key, so the record digest matches; the artifact link names both hashes."""
    from lepton_ci.trust.signer import KeySigner

    st = _statement(signed)
    st["subject"][0]["annotations"]["dev.lepton-ci.record-hash"] = "blake3:" + "ab" * 32
    payload = json.dumps(st).encode()
    bundle = KeySigner(keys["priv"], "test").sign(payload)
    git(signed, "update-ref", "-d", store.ref_of(TAG))
    store.write(Git(signed), TAG, {store.STATEMENT: bundle.encode()})
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: artifact model.bin: blake3 " in err
    assert "in the tag's record, blake3 abababababab.. in the signed statement" in err


def test_a_statement_changed_after_signing_is_refused(cli, signed):
    bundle = json.loads(git(signed, "cat-file", "blob", f"{store.ref_of(TAG)}:{store.STATEMENT}"))
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    st["predicate"]["runDetails"]["builder"]["id"] = "https://example.com/evil"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    git(signed, "update-ref", "-d", store.ref_of(TAG))
    store.write(Git(signed), TAG, {store.STATEMENT: json.dumps(bundle).encode()})
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert "signature: the signature does not verify with keys/release.pub: the signed " in err
    assert "statement was changed after signing" in err


def test_a_version_signed_by_a_key_the_policy_does_not_list_is_refused(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    assert cli("register", "--signing-key", str(keys["other_priv"]))[0] == 0
    code, _, err = cli("verify", TAG)
    assert code == 1
    assert f"{TAG}: signature: signed with key " in err
    assert "which `trust.keys` does not list (accepted: keys/release.pub" in err


def test_promote_and_accept_tag_refuse_an_unsigned_version_under_require(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    assert cli("register")[0] == 0  # unsigned: require is not on yet
    cfg = toy_repo / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("require: false", "require: true"))
    commit_all(toy_repo, "chore: require signatures")
    code, _, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 1
    assert "promotion of toy@v0.1.0 to staging refused by `trust.require: true`" in err
    assert "the version is not signed" in err
    assert git(toy_repo, "tag", "-l", "toy#*") == ""
    # a stage tag pushed by hand is refused the same way, and deleted
    sha = git(toy_repo, "rev-parse", f"{TAG}^{{commit}}")
    git(toy_repo, "tag", "-a", "toy#staging#1", "-m", "Promote", sha)
    code, _, err = cli("accept-tag", "toy#staging#1")
    assert code == 1 and "refused by `trust.require: true`" in err
    assert "the tag toy#staging#1 was deleted again" in err
    assert git(toy_repo, "tag", "-l", "toy#*") == ""


def test_promote_under_require_accepts_a_signed_version(cli, toy_repo, keys, monkeypatch):
    trust_repo(toy_repo, keys["pub"], require=True)
    assert cli("run")[0] == 0
    monkeypatch.setenv("LEPTON_SIGNING_KEY", str(keys["priv"]))
    assert cli("register")[0] == 0
    monkeypatch.delenv("LEPTON_SIGNING_KEY")
    code, out, err = cli("promote", "toy", "v0.1.0", "staging")
    assert code == 0, err
    assert "promoted toy@v0.1.0 to staging" in out


def test_a_fresh_clone_fetches_the_bundles_and_verifies(cli, signed, tmp_path, keys, monkeypatch):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(signed, "remote", "add", "origin", str(remote))
    git(signed, "push", "-q", "origin", "main")
    monkeypatch.setenv("LEPTON_SIGNING_KEY", str(keys["priv"]))
    set_params(signed, lr=0.2)
    commit_all(signed, "fix: second")
    git(signed, "push", "-q", "origin", "main")
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--push")
    assert code == 0, err
    pushed = git(remote, "for-each-ref", "--format=%(refname)")
    assert "refs/tags/toy@v0.1.1" in pushed
    assert "refs/lepton-ci/attestations/toy@v0.1.1" in pushed
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    assert "refs/lepton-ci" not in git(clone, "for-each-ref")  # not fetched by a clone
    code, _, err = Cli(clone, cli.capsys)("verify", "toy@v0.1.1")
    assert code == 0, err
    assert "refs/lepton-ci/attestations/toy@v0.1.1" in git(clone, "for-each-ref")


def test_the_tag_and_its_attestations_are_pushed_atomically(cli, toy_repo, keys, tmp_path):
    """A remote that refuses the attestation ref gets neither; locally both are undone."""
    trust_repo(toy_repo, keys["pub"])
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    hook = remote / "hooks" / "update"
    hook.write_text(
        '#!/bin/sh\ncase "$1" in refs/lepton-ci/*) echo "policy: no attestation refs" >&2; '
        "exit 1;; esac\nexit 0\n"
    )
    hook.chmod(0o755)
    git(toy_repo, "remote", "add", "origin", str(remote))
    git(toy_repo, "push", "-q", "origin", "main")
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--push", "--signing-key", str(keys["priv"]))
    assert code == 1 and "was refused; the local tag was removed again" in err
    # the remote's own reason, not git's closing "failed to push some refs"
    assert "policy: no attestation refs" in err and "[remote rejected]" in err
    assert "another run took this version" not in err
    assert git(remote, "for-each-ref", "refs/tags", "refs/lepton-ci") == ""
    assert git(toy_repo, "tag") == "" and git(toy_repo, "for-each-ref", "refs/lepton-ci") == ""


def test_gto_still_reads_the_registry_beside_the_attestation_refs(signed):
    from gto import api as gto

    assert git(signed, "for-each-ref", "refs/lepton-ci") != ""
    versions = [v["version"] for v in gto.show(str(signed), "toy", table=False)]
    assert versions == ["v0.1.0"]


def test_trust_policy_mistakes_name_file_field_and_fix(cli, toy_repo, keys):
    cfg = toy_repo / "lepton.yaml"
    base = cfg.read_text()
    cfg.write_text(base + "trust:\n  require: true\n")
    code, _, err = cli("verify", TAG)
    assert code == 1 and "`trust`: `require: true` with no `keys` or `identities`" in err
    (toy_repo / "release.pem").write_bytes(keys["priv"].read_bytes())
    cfg.write_text(base + "trust:\n  keys: [release.pem]\n")
    code, _, err = cli("trust", "cluster-policy")
    assert code == 1
    assert "lepton.yaml: trust.keys[0]: release.pem holds a PRIVATE key" in err
    assert "openssl pkey -in release.pem -pubout" in err
    key_pair(toy_repo, "rsa", "rsa")
    cfg.write_text(base + "trust:\n  keys: [rsa.pub]\n")
    code, _, err = cli("trust", "cluster-policy")
    assert code == 1 and "trust.keys[0]: rsa.pub is a RSA key" in err
    cfg.write_text(
        base + "trust:\n  identities:\n    - {repository: acme/models, workflow: main.yml}\n"
    )
    code, _, err = cli("trust", "cluster-policy")
    assert code == 1 and "is not a workflow path such as .github/workflows/model-main.yml" in err


def test_a_bad_signing_key_is_named_and_nothing_is_written(cli, toy_repo, keys, tmp_path):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--signing-key", str(keys["pub"]))
    assert code == 1 and f"--signing-key: {keys['pub']} is not a PEM private key" in err
    rsa_priv, _ = key_pair(tmp_path, "rsa", "rsa")
    code, _, err = cli("register", "--signing-key", str(rsa_priv))
    assert code == 1 and "lepton-ci signs with ECDSA P-256 or Ed25519 keys" in err
    assert git(toy_repo, "tag") == ""


def test_register_refuses_to_sign_an_artifact_changed_since_the_run(cli, toy_repo, keys):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    (toy_repo / "model.bin").write_text("poisoned after the run\n")
    code, _, err = cli("register", "--signing-key", str(keys["priv"]))
    assert code == 1
    assert "artifact model.bin on disk is not the one the record names" in err
    assert git(toy_repo, "tag") == ""


def test_the_actions_key_input_signs_and_lives_only_as_long_as_the_step(
    cli, toy_repo, keys, gh_files, tmp_path, monkeypatch
):
    from lepton_ci.gha_entry import KEY_FILE

    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    monkeypatch.setenv("RUNNER_TEMP", str(runner_temp))
    monkeypatch.setenv("LEPTON_INPUT_SIGNING_KEY", keys["priv"].read_text())
    code, out, err = cli("gha", "register")
    assert code == 0, err
    assert "signed by key" in out
    assert not list(runner_temp.glob(f"*{KEY_FILE}"))
    assert cli("verify", TAG)[0] == 0
    monkeypatch.setenv("LEPTON_INPUT_SIGNING_KEY", "${{ secrets.NOT_SET }}")
    code, _, err = cli("gha", "register")
    assert code == 1 and "the `signing-key` input is not a PEM private key" in err


def test_the_setup_adds_the_trust_extra_only_where_a_step_signs_or_verifies(toy_repo, keys):
    from lepton_ci.core import extras
    from lepton_ci.core.config import load

    cfg = load(toy_repo / "lepton.yaml")
    assert extras.needed(cfg, "register", env={}) == []
    assert extras.needed(cfg, "register", env={"LEPTON_SIGNS": "false"}) == []
    assert extras.needed(cfg, "register", env={"LEPTON_SIGNS": "true"}) == ["trust"]
    assert extras.needed(cfg, "build", env={"ACTIONS_ID_TOKEN_REQUEST_URL": "x"}) == ["trust"]
    assert extras.needed(cfg, "promote", env={}) == []
    assert extras.needed(cfg, "pull", env={}) == []  # nobody to check a signature against
    trust_repo(toy_repo, keys["pub"], require=True)
    cfg = load(toy_repo / "lepton.yaml")
    for step in ("promote", "accept-tag", "build", "deploy", "pull"):
        assert extras.needed(cfg, step, env={}) == ["trust"], step
    assert extras.needed(cfg, "run", env={"LEPTON_SIGNS": "true"}) == []


def test_a_verifier_that_cannot_run_is_a_refusal_and_the_stage_tag_goes(cli, signed, monkeypatch):
    import sys

    cfg = signed / "lepton.yaml"
    cfg.write_text(cfg.read_text().replace("require: false", "require: true"))
    commit_all(signed, "chore: require signatures")
    sha = git(signed, "rev-parse", f"{TAG}^{{commit}}")
    git(signed, "tag", "-a", "toy#staging#1", "-m", "Promote", sha)
    for name in [m for m in sys.modules if m.split(".")[0] == "cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the trust extra were missing
    monkeypatch.setitem(sys.modules, "cryptography", None)
    code, _, err = cli("accept-tag", "toy#staging#1")
    assert code == 1
    assert "it cannot be verified here: the Python package `cryptography" in err
    assert "the tag toy#staging#1 was deleted again" in err
    assert git(signed, "tag", "-l", "toy#*") == ""


def test_the_key_bundle_verifies_with_securesystemslib_and_sigstore_too(signed, keys):
    """Three implementations agree on one bundle: ours (cryptography), securesystemslib's
    DSSE envelope and sigstore-python's; and a byte changed is refused by all three."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey
    from sigstore import dsse

    from lepton_ci.trust.signer import fingerprint

    bundle = json.loads(store.statement(Git(signed), TAG))
    public = load_pem_public_key(keys["pub"].read_bytes())
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == fingerprint(public)
    key = SSlibKey.from_crypto(public, keyid=fingerprint(public))
    Envelope.from_dict(copy.deepcopy(bundle["dsseEnvelope"])).verify([key], 1)  # (it pops)
    envelope = dsse.Envelope._from_json(json.dumps(bundle["dsseEnvelope"]))
    assert dsse._verify(public, envelope) == _payload(bundle)
    payload = _payload(bundle).replace(b"model.bin", b"model.xyz")
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(bundle["dsseEnvelope"])).verify([key], 1)
    with pytest.raises(Exception, match="DSSE"):
        dsse._verify(public, dsse.Envelope._from_json(json.dumps(bundle["dsseEnvelope"])))


def _payload(bundle: dict) -> bytes:
    return base64.b64decode(bundle["dsseEnvelope"]["payload"])


def test_the_readmes_by_hand_verification_holds(signed, keys, tmp_path):
    """The docs' shell recipe (the trust model page), run as written (the version and folder
    swapped for the toy's): fetch, model-signing's verifier, openssl over DSSE's encoding, the
    record digest."""
    import re

    from tests.conftest import ROOT

    page = (ROOT / "docs" / "explanation" / "trust-model.md").read_text()
    script = re.search(r"\*\*By hand\*\*.*?```sh\n(.*?)```", page, re.S)[1]
    script = script.replace("digits@v1.2.0", TAG).replace("examples/digits", ".")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(signed, "remote", "add", "origin", str(remote))
    git(signed, "push", "-q", "origin", "main", TAG, f"{store.ref_of(TAG)}:{store.ref_of(TAG)}")
    git(signed, "update-ref", "-d", store.ref_of(TAG))  # as in a fresh clone: fetched first
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=signed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verification succeeded" in proc.stdout  # model_signing
    assert "Verified OK" in proc.stdout  # openssl
    record_sha, signed_sha = proc.stdout.strip().splitlines()[-2:]
    assert record_sha.split()[0] == signed_sha


def test_a_key_setting_holding_the_pem_itself_is_refused_without_printing_it(
    cli, toy_repo, keys, monkeypatch
):
    """`LEPTON_SIGNING_KEY="$(cat release.pem)"` is an easy slip; the error used to say
    `cannot read the signing key -----BEGIN PRIVATE KEY-----...`, the key in the job's log."""
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    pem = keys["priv"].read_text()
    secret_line = pem.splitlines()[1]
    monkeypatch.setenv("LEPTON_SIGNING_KEY", pem)
    for args in (("register",), ("--debug", "register")):
        code, out, err = cli(*args)
        assert code == 1
        assert "LEPTON_SIGNING_KEY: holds the key itself (PEM text), not the path" in err
        assert secret_line not in out + err
    monkeypatch.delenv("LEPTON_SIGNING_KEY")
    code, out, err = cli("register", "--signing-key", pem)
    assert code == 1 and "--signing-key: holds the key itself" in err
    assert secret_line not in out + err
    assert git(toy_repo, "tag") == ""


def test_a_key_on_another_curve_is_named_once(cli, toy_repo, keys, tmp_path):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    p384 = tmp_path / "p384.pem"
    curve = ["-pkeyopt", "ec_paramgen_curve:P-384"]
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", *curve, "-out", str(p384)],
        check=True,
        capture_output=True,
    )
    code, _, err = cli("register", "--signing-key", str(p384))
    assert code == 1
    assert f"--signing-key: {p384} is an EC secp384r1 key; lepton-ci signs with" in err


def test_an_image_reference_without_a_full_digest_is_refused_before_any_registry(
    cli, toy_repo, keys
):
    """`toy@sha256:abc` used to be read as docker.io/toy and asked of docker.io five times."""
    trust_repo(toy_repo, keys["pub"])
    for target in ("toy@sha256:abc", "127.0.0.1:9/toy@sha256:" + "0" * 63 + "Z"):
        code, _, err = cli("verify", target)
        assert code == 1
        assert f"{target}: an image is verified by its full digest" in err
        assert "unreachable" not in err


def test_register_under_require_refuses_a_key_the_policy_does_not_list(cli, toy_repo, keys):
    """It used to sign and push a version that no promote could ever accept."""
    trust_repo(toy_repo, keys["pub"], require=True)
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--signing-key", str(keys["other_priv"]))
    assert code == 1
    assert "(--signing-key) is not one `trust.keys` lists (accepted: keys/release.pub" in err
    assert "nothing was written" in err
    assert git(toy_repo, "tag") == ""
    assert git(toy_repo, "for-each-ref", store.PREFIX) == ""


def test_register_without_require_says_a_key_the_policy_does_not_list_will_not_verify(
    cli, toy_repo, keys
):
    trust_repo(toy_repo, keys["pub"])
    assert cli("run")[0] == 0
    code, _, err = cli("register", "--signing-key", str(keys["other_priv"]))
    assert code == 0
    assert "is not one `trust.keys` lists" in err and "so what it signs will not verify" in err


def test_verify_says_when_the_ref_is_empty_or_the_remote_does_not_exist(cli, signed):
    """Both used to say "the version is not signed (no refs/...)", the ref being right there."""
    code, _, err = cli("verify", TAG, "--remote", "nope")
    assert code == 0, err  # this clone has the ref: no remote is asked
    git(signed, "update-ref", "-d", store.ref_of(TAG))
    code, _, err = cli("verify", TAG, "--remote", "nope")
    assert code == 1
    assert f"(no {store.ref_of(TAG)} here, and there is no remote `nope` to fetch it from)" in err
    store.write(Git(signed), TAG, {"other.json": b"{}"})
    code, _, err = cli("verify", TAG)
    assert code == 1 and f"{TAG}: signature: {store.ref_of(TAG)} holds no {store.STATEMENT}" in err
