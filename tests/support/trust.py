"""Keys and trust policies for the signing tests: real key pairs, written as PEM files."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import commit_all


def key_pair(folder: Path, name: str, kind: str = "p256") -> tuple[Path, Path]:
    """(private, public) PEM files of a new key: p256, ed25519 or rsa."""
    if kind == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def trust_repo(repo: Path, public: Path, *, require: bool = False, extra: str = "") -> None:
    """Commit `public` into the repository and name it in lepton.yaml's `trust:`."""
    (repo / "keys").mkdir(exist_ok=True)
    (repo / "keys" / public.name).write_bytes(public.read_bytes())
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text()
        + f"trust:\n  require: {str(require).lower()}\n  keys: [keys/{public.name}]\n"
        + extra
    )
    commit_all(repo, "chore: trust the release key")
