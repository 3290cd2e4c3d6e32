"""Who signs: a PEM private key (local and air-gapped), or Sigstore keyless in GitHub Actions.

Both write a Sigstore bundle (JSON, v0.3) around a DSSE envelope of the in-toto statement:
- key:      the envelope is signed by securesystemslib's CryptoSigner (ECDSA P-256 or Ed25519);
            the bundle names the key by its id (`verificationMaterial.publicKey.hint`), as
            cosign's key-based bundles do; there is no transparency log entry.
- keyless:  sigstore-python's `Signer.sign_dsse` with the job's ambient OIDC token: Fulcio
            certifies the workflow's identity, Rekor logs the signature.
No cryptography is written here; the libraries are imported when a signer is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lepton_ci.core.errors import TrustError
from lepton_ci.trust.statement import PAYLOAD_TYPE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    from lepton_ci.core.config import LoadedConfig

BUNDLE_MEDIA = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEY_ENV = "LEPTON_SIGNING_KEY"
SIGSTORE_ENV = "LEPTON_SIGSTORE_TRUST_CONFIG"  # a client trust config for a private instance


class Signer(Protocol):
    """Signs one in-toto statement; returns a Sigstore bundle as JSON text."""

    description: str

    def sign(self, statement: bytes) -> str: ...


def _load_private(path: Path, where: str) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = path.read_bytes()
    except OSError as e:
        raise TrustError(
            f"{where}: cannot read the signing key {path} ({e.strerror or e})",
            hint="point it at a PEM private key, e.g. one made with "
            "`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out release.pem`",
        ) from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise TrustError(
            f"{where}: the signing key {path} is encrypted with a password",
            hint="give an unencrypted PEM key (keep it in a secret store, not in git)",
        ) from None
    except ValueError:
        raise TrustError(
            f"{where}: {path} is not a PEM private key",
            hint="a key begins with `-----BEGIN PRIVATE KEY-----` (PKCS#8) or "
            "`-----BEGIN EC PRIVATE KEY-----`",
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    kind = (
        f"an EC {key.curve.name}"
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else f"an {type(key).__name__.removesuffix('PrivateKey')}"
    )
    raise TrustError(
        f"{where}: {path} is {kind} key; lepton-ci signs with ECDSA P-256 or Ed25519 keys",
        hint="make one: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
        "-out release.pem` (or `-algorithm ed25519`)",
    )


@dataclass
class KeySigner:
    """DSSE with a PEM private key, through securesystemslib's CryptoSigner."""

    path: Path
    where: str  # which setting named the key: said in every error about it

    def __post_init__(self) -> None:
        from securesystemslib.signer import CryptoSigner, SSlibKey

        self._key = _load_private(self.path, self.where)
        public = self._key.public_key()
        # The key's id is its fingerprint (sha256 of the DER public key), which a verifier
        # computes from the PEM alone; securesystemslib would use an id of its own.
        self.keyid: str = fingerprint(public)  # type: ignore[arg-type]
        self._signer = CryptoSigner(self._key, SSlibKey.from_crypto(public, keyid=self.keyid))
        self.description = f"key {self.keyid[:12]} ({self.path.name})"

    @property
    def is_ec(self) -> bool:
        """model_signing signs with elliptic-curve keys only (not Ed25519)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        return isinstance(self._key, ec.EllipticCurvePrivateKey)

    def sign(self, statement: bytes) -> str:
        from securesystemslib.dsse import Envelope

        envelope = Envelope(payload=statement, payload_type=PAYLOAD_TYPE, signatures={})
        envelope.sign(self._signer)
        return to_json(
            {
                "mediaType": BUNDLE_MEDIA,
                "verificationMaterial": {"publicKey": {"hint": self.keyid}},
                "dsseEnvelope": envelope.to_dict(),
            }
        )


class KeylessSigner:
    """Sigstore keyless: a Fulcio certificate for the job's OIDC identity, logged in Rekor."""

    def __init__(self, token: str, trust_config: Path | None) -> None:
        from sigstore.oidc import IdentityError, IdentityToken

        try:
            self._token = IdentityToken(token)
        except IdentityError as e:
            raise TrustError(
                f"the job's OIDC token is not one Sigstore can use: {e}",
                hint="give the release job `permissions: {id-token: write}`",
            ) from None
        self.raw_token = token  # model-signing signs the model files with it too
        self.trust_config = trust_config
        self.description = f"{self._token.identity} (issuer {self._token.issuer})"

    def sign(self, statement: bytes) -> str:
        from sigstore.dsse import Statement
        from sigstore.models import ClientTrustConfig
        from sigstore.sign import SigningContext

        try:
            config = (
                ClientTrustConfig.from_json(self.trust_config.read_text())
                if self.trust_config is not None
                else ClientTrustConfig.production()
            )
            context = SigningContext.from_trust_config(config)
            with context.signer(self._token, cache=True) as signer:
                return signer.sign_dsse(Statement(statement)).to_json()
        except TrustError:
            raise
        except Exception as e:  # network, Fulcio or Rekor refusals: one clear error, no trace
            raise TrustError(
                f"keyless signing as {self.description} failed: {type(e).__name__}: {e}",
                hint="check that Fulcio and Rekor are reachable from the runner (or give a "
                f"signing key: {KEY_ENV})",
            ) from None


def fingerprint(public: EllipticCurvePublicKey | Ed25519PublicKey) -> str:
    """A public key's id, as bundles name it: sha256 of its DER SubjectPublicKeyInfo (what
    `openssl pkey -pubin -outform DER | sha256sum` prints)."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def to_json(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc, indent=None, sort_keys=True, separators=(",", ":"))


def key_path(
    cfg: LoadedConfig, env: Mapping[str, str], flag: str | None
) -> tuple[Path, str] | None:
    """The signing key's path and which setting named it: --signing-key, LEPTON_SIGNING_KEY,
    then `trust.signing_key` (a path from lepton.yaml's folder)."""
    if flag:
        return _as_path(flag, "--signing-key"), "--signing-key"
    if env.get(KEY_ENV):
        return _as_path(env[KEY_ENV], KEY_ENV), KEY_ENV
    configured = cfg.config.trust.signing_key
    if configured:
        return cfg.root / configured, f"{cfg.path.name}: trust.signing_key"
    return None


def _as_path(value: str, where: str) -> Path:
    """A key setting is a path. One that holds the key itself (a secret pasted in) is
    refused without echoing it: the error would print the private key into the job's log."""
    if "-----BEGIN" in value or "\n" in value:
        raise TrustError(
            f"{where}: holds the key itself (PEM text), not the path of a key file",
            hint="write the key to a file readable only by you (`umask 077`) and give its "
            "path; in Actions, pass the secret as the `signing-key` input",
        )
    return Path(value)


def ambient_token(env: Mapping[str, str]) -> str | None:
    """The job's OIDC token for Sigstore (audience `sigstore`), when the job may have one:
    GitHub Actions with `id-token: write` sets the request URL and token."""
    if not (env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")):
        return None
    import requests

    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    sep = "&" if "?" in url else "?"
    try:
        resp = requests.get(
            f"{url}{sep}audience=sigstore",
            headers={"Authorization": f"bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
            timeout=30,
        )
        value = resp.json().get("value") if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        value = None
    if not value:
        raise TrustError(
            "the job may sign keyless (id-token: write) but GitHub gave no OIDC token",
            hint="re-run the job; if it persists, check the workflow's `permissions:`",
        )
    return str(value)


def choose(cfg: LoadedConfig, env: Mapping[str, str], flag: str | None = None) -> Signer | None:
    """The signer this job has: a key if one is named, else keyless when the job holds an
    ambient OIDC token, else None (nothing is signed)."""
    found = key_path(cfg, env, flag)
    if found is not None:
        return KeySigner(*found)
    token = ambient_token(env)
    if token is None:
        return None
    trust = env.get(SIGSTORE_ENV) or (
        str(cfg.root / cfg.config.trust.sigstore) if cfg.config.trust.sigstore else None
    )
    return KeylessSigner(token, Path(trust) if trust else None)
