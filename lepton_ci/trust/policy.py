"""Who is trusted: `trust:` in lepton.yaml as public keys and keyless identities.

A bundle is accepted when a listed key verifies its DSSE signature, or when Sigstore verifies
its certificate chain and log entry and the certificate names a listed identity (issuer and
the release workflow at its ref).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_ci.core.config import LoadedConfig, TrustIdentity
from lepton_ci.core.errors import TrustError
from lepton_ci.trust.signer import SIGSTORE_ENV, fingerprint

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True)
class TrustedKey:
    path: str  # as lepton.yaml names it
    pem: str
    public: EllipticCurvePublicKey | Ed25519PublicKey
    keyid: str  # sha256 of the key's DER SubjectPublicKeyInfo: the bundle's key hint


@dataclass
class Policy:
    require: bool
    keys: list[TrustedKey] = field(default_factory=list)
    identities: list[TrustIdentity] = field(default_factory=list)
    sigstore: Path | None = None  # client trust config of a private instance
    source: str = "lepton.yaml"

    @property
    def empty(self) -> bool:
        return not self.keys and not self.identities

    def describe(self) -> str:
        keys = [f"key {k.path}" for k in self.keys]
        ids = [i.subject for i in self.identities]
        return ", ".join(keys + ids) or "nobody"


def load(cfg: LoadedConfig, env: Mapping[str, str] | None = None) -> Policy:
    """The trust policy of a config, its key files read and checked now (a bad file is an
    error that names the file, the field and the fix, whichever command reads it)."""
    trust = cfg.config.trust
    where = cfg.path.name
    keys = [
        _public_key(cfg.root / p, p, f"{where}: trust.keys[{i}]") for i, p in enumerate(trust.keys)
    ]
    override = (env or {}).get(SIGSTORE_ENV)
    sigstore = (
        Path(override) if override else (cfg.root / trust.sigstore if trust.sigstore else None)
    )
    return Policy(trust.require, keys, list(trust.identities), sigstore, where)


def _public_key(path: Path, named: str, where: str) -> TrustedKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TrustError(
            f"{where}: cannot read {path} ({getattr(e, 'strerror', None) or e})",
            hint="list the path of a public key (PEM), relative to lepton.yaml",
        ) from None
    if "PRIVATE KEY" in text:
        raise TrustError(
            f"{where}: {named} holds a PRIVATE key; a trust policy lists public keys only",
            hint=f"write the public half (`openssl pkey -in {named} -pubout -out release.pub`), "
            "list that, and take the private key out of the repository",
        )
    try:
        pub = load_pem_public_key(text.encode())
    except ValueError:
        raise TrustError(
            f"{where}: {named} is not a PEM public key",
            hint="a public key begins with `-----BEGIN PUBLIC KEY-----`",
        ) from None
    if isinstance(pub, ed25519.Ed25519PublicKey) or (
        isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    ):
        return TrustedKey(named, text, pub, fingerprint(pub))
    raise TrustError(
        f"{where}: {named} is a {type(pub).__name__.removesuffix('PublicKey')} key; "
        "lepton-ci verifies ECDSA P-256 and Ed25519 keys",
        hint="make a P-256 key pair: `openssl genpkey -algorithm EC -pkeyopt "
        "ec_paramgen_curve:P-256 -out release.pem`",
    )


def identity_policy(identities: list[TrustIdentity]) -> Any:
    """sigstore-python's verification policy: any one of the identities (issuer + SAN)."""
    from sigstore.verify.policy import AnyOf, Identity

    return AnyOf([Identity(identity=i.subject, issuer=i.issuer) for i in identities])


def trusted_root(policy: Policy) -> Any:
    """The Sigstore trusted root keyless bundles are checked against (public-good by default,
    read offline from sigstore-python's own copy when there is no network)."""
    from sigstore.models import ClientTrustConfig

    if policy.sigstore is not None:
        try:
            return ClientTrustConfig.from_json(policy.sigstore.read_text()).trusted_root
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise TrustError(
                f"{policy.source}: trust.sigstore: {policy.sigstore} is not a Sigstore client "
                f"trust config ({e})",
                hint="give the JSON `sigstore --trust-config` takes",
            ) from None
    try:
        return ClientTrustConfig.production().trusted_root
    except Exception:  # no network: TUF cannot refresh; the bundled root still verifies
        return ClientTrustConfig.production(offline=True).trusted_root
