"""Keyless signing end to end, against a Sigstore of our own (tests/support/sigstore_world.py).

A local OIDC issuer mints the release job's token; @sigstore/mock's Fulcio certifies it (after
checking it against the issuer's key) and its Rekor logs the signature; lepton.yaml's
`trust.sigstore` names the client trust config that lists them. `register` signs keyless with
the job's token, `lepton-ci verify` accepts the version only when `trust.identities` names the
workflow and ref that signed, and the same bundle verifies with sigstore-python's own Verifier,
with sigstore-js's verifier, and the model files with model_signing's verifier.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lepton_ci.core.config import GITHUB_ISSUER
from lepton_ci.core.git import Git
from lepton_ci.trust import store
from tests.conftest import commit_all, git
from tests.support import sigstore_world
from tests.support.sigstore_world import SigstoreWorld
from tests.support.trust import key_pair, trust_repo

pytestmark = pytest.mark.e2e

TAG = "toy@v0.1.0"
RELEASE = "acme/models/.github/workflows/model-main.yml@refs/heads/main"
SAN = f"https://github.com/{RELEASE}"
BUILD_SIGNER_URI = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.9")  # Fulcio's GitHub extensions
SOURCE_REPO_REF = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.14")
FULCIO_OIDS = (BUILD_SIGNER_URI, SOURCE_REPO_REF)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not sigstore_world.available():
        pytest.fail("the Sigstore stand-ins are missing: run `bash .ci/setup` (it installs them)")
    w = SigstoreWorld(tmp_path_factory.mktemp("sigstore"))
    yield w
    w.close()


@pytest.fixture
def release_repo(toy_repo, world, tmp_path):
    """lepton.yaml trusts the release workflow on main, through the world's trust config."""
    (toy_repo / "sigstore").mkdir()
    world.trust_config(toy_repo / "sigstore" / "trust.json")
    _, pub = key_pair(tmp_path / "keys", "unused")  # a key is listed too: keyless must not need it
    trust_repo(
        toy_repo,
        pub,
        extra="  sigstore: sigstore/trust.json\n"
        "  identities:\n"
        "    - {repository: acme/models, workflow: .github/workflows/model-main.yml,"
        " ref: refs/heads/main}\n",
    )
    return toy_repo


def _register_as(cli, world, monkeypatch, token: str) -> tuple[int, str, str]:
    for k, v in world.actions_env(token).items():
        monkeypatch.setenv(k, v)
    assert cli("run")[0] == 0
    return cli("register")


def test_a_release_job_signs_keyless_and_verify_accepts_its_workflow_at_its_ref(
    cli, release_repo, world, monkeypatch, tmp_path
):
    code, out, err = _register_as(cli, world, monkeypatch, world.mint(RELEASE))
    assert code == 0, err
    assert "signed by repo:acme/models:ref:refs/heads/main" in out
    files = store.read(Git(release_repo), TAG, None)
    assert set(files) == {store.STATEMENT, store.MODEL_SIG}
    bundle = json.loads(files[store.STATEMENT])
    der = base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"])
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == [SAN]
    fulcio = {e.oid: e.value.value for e in cert.extensions if e.oid in FULCIO_OIDS}
    assert SAN.encode() in fulcio[BUILD_SIGNER_URI]
    assert b"refs/heads/main" in fulcio[SOURCE_REPO_REF]
    assert bundle["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"] == "dsse"

    code, out, err = cli("verify", TAG)
    assert code == 0, err
    assert f"{TAG}: verified, signed by {SAN}" in out

    # sigstore-python's own Verifier, with the trust root and identity named by hand
    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    root = ClientTrustConfig.from_json(
        (release_repo / "sigstore" / "trust.json").read_text()
    ).trusted_root
    kind, payload = Verifier(trusted_root=root).verify_dsse(
        Bundle.from_json(files[store.STATEMENT]), Identity(identity=SAN, issuer=GITHUB_ISSUER)
    )
    statement = json.loads(payload)
    assert kind == "application/vnd.in-toto+json"
    assert statement["predicate"]["buildDefinition"]["externalParameters"]["tag"] == TAG

    # sigstore-js's verifier: accepts it for the release workflow, refuses it for another
    path = tmp_path / "statement.sigstore.json"
    path.write_bytes(files[store.STATEMENT])
    js = world.verify_js(path, SAN)
    assert (js["san"], js["issuer"]) == (SAN, GITHUB_ISSUER)
    assert json.loads(js["payload"]) == statement
    other = world.verify_js(path, SAN.replace("refs/heads/main", "refs/heads/dev"))
    assert not other["verified"]
    assert other["error"].startswith("PolicyError: certificate identity error")

    # the model files, with model_signing's own verifier
    from model_signing import verifying

    sig = tmp_path / "model.sig"
    sig.write_bytes(files[store.MODEL_SIG])
    config = verifying.Config().use_sigstore_verifier(
        identity=SAN,
        oidc_issuer=GITHUB_ISSUER,
        trust_config=release_repo / "sigstore" / "trust.json",
    )
    config.set_ignore_unsigned_files(True).verify(release_repo, sig)
    (release_repo / "model.bin").write_text("swapped weights\n")
    with pytest.raises(ValueError, match=r"model\.bin"):
        config.verify(release_repo, sig)


@pytest.mark.parametrize(
    "signer",
    [
        "acme/models/.github/workflows/train.yml@refs/heads/main",  # another workflow
        "acme/models/.github/workflows/model-main.yml@refs/heads/feature",  # another ref
        "evil/models/.github/workflows/model-main.yml@refs/heads/main",  # another repository
    ],
)
def test_a_version_signed_by_another_workflow_or_ref_is_refused(
    cli, release_repo, world, monkeypatch, signer
):
    code, _, err = _register_as(cli, world, monkeypatch, world.mint(signer))
    assert code == 0, err  # Fulcio certifies whoever the issuer vouches for...
    assert git(release_repo, "for-each-ref", "--format=%(refname)", "refs/lepton-ci") != ""
    code, _, err = cli("verify", TAG)
    assert code == 1  # ...but the policy names one workflow at one ref
    assert f"{TAG}: signature or signer: Sigstore refused the bundle signed by " in err
    assert f"https://github.com/{signer}" in err
    assert f"(accepted: {SAN})" in err


def test_a_token_the_issuer_did_not_sign_gets_no_certificate_and_nothing_is_written(
    cli, release_repo, world, monkeypatch, tmp_path
):
    forged = world.mint(RELEASE, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    code, _, err = _register_as(cli, world, monkeypatch, forged)
    assert code == 1
    assert "keyless signing as repo:acme/models:ref:refs/heads/main" in err
    assert "FulcioClientError" in err
    assert git(release_repo, "tag") == ""
    assert git(release_repo, "for-each-ref", "refs/lepton-ci") == ""
    log = Path(world.log.name).read_text()
    assert "401 the OIDC token does not verify: signature verification failed" in log


def test_an_oidc_issuer_that_does_not_answer_fails_model_signing_cleanly(
    cli, release_repo, world, monkeypatch
):
    """model-signing reads the issuer's OpenID configuration even when it is given a token;
    when that fails, register names it (it was an `unexpected error`) and writes nothing."""
    world.trust_config(release_repo / "sigstore" / "trust.json", oidc=f"{world.url}/no-issuer")
    commit_all(release_repo, "chore: an issuer URL that answers 404")
    code, _, err = _register_as(cli, world, monkeypatch, world.mint(RELEASE))
    assert code == 1
    assert "model-signing could not sign the model files: IssuerError: HTTPError: 404" in err
    assert "`oidcUrls`" in err
    assert git(release_repo, "tag") == ""
    assert git(release_repo, "for-each-ref", "refs/lepton-ci") == ""
