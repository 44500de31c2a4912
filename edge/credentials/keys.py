"""Issuer key pairs (Ed25519): generation, loading, and the key id used for rotation.

A key id ("kid") names a key inside a pass or a signed document, so a gate can hold
several issuer keys at once while keys are rotated. By default it is derived from the
public key (first 8 bytes of SHA-256 of the raw key, hex); an explicit kid chosen at
keygen is written as a comment line above the PEM block and read back from there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

logger = logging.getLogger(__name__)

KID_LINE = "checkgate-kid:"
KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class KeyFileError(ValueError):
    """A key file that cannot be used (wrong type, unreadable, bad kid)."""


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def valid_kid(kid: str) -> bool:
    return isinstance(kid, str) and bool(KID_RE.match(kid))


def generate_keypair(out_dir: str | os.PathLike, kid: str | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `<kid>.key` (private, mode 0600) and `<kid>.pub.pem`; returns both paths."""
    if kid is not None and not valid_kid(kid):
        raise KeyFileError(f"key id {kid!r} must be 1-32 characters of A-Z a-z 0-9 . _ -")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_key = ed25519.Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    kid = kid or key_id(public_key)
    header = f"{KID_LINE} {kid}\n".encode()
    priv_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub_pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_path, pub_path = out / f"{kid}.key", out / f"{kid}.pub.pem"
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(header + priv_pem)
    pub_path.write_bytes(header + pub_pem)
    logger.info("generated issuer key %s in %s", kid, out)
    return priv_path, pub_path


def _read(path: str | os.PathLike) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read key file: {err.strerror or err}") from None


def _kid_from_text(data: bytes) -> str | None:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(KID_LINE):
            kid = line[len(KID_LINE):].strip()
            return kid if valid_kid(kid) else None
        if line.startswith("-----BEGIN"):
            break
    return None


def load_private_key(path: str | os.PathLike) -> ed25519.Ed25519PrivateKey:
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"{path}: not a PEM private key: {err}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: issuer keys must be Ed25519, got {type(key).__name__}")
    return key


def load_public_key(path: str | os.PathLike) -> ed25519.Ed25519PublicKey:
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"{path}: not a PEM public key: {err}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError(f"{path}: issuer keys must be Ed25519, got {type(key).__name__}")
    return key


def kid_of_file(path: str | os.PathLike) -> str:
    """The kid recorded in a key file, or the one derived from its public key."""
    data = _read(path)
    kid = _kid_from_text(data)
    if kid:
        return kid
    if b"PRIVATE KEY" in data:
        return key_id(load_private_key(path).public_key())
    return key_id(load_public_key(path))


def public_raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_from_raw(raw: bytes) -> ed25519.Ed25519PublicKey:
    if not isinstance(raw, bytes | bytearray) or len(raw) != 32:
        raise KeyFileError("an Ed25519 public key is 32 raw bytes")
    return ed25519.Ed25519PublicKey.from_public_bytes(bytes(raw))
