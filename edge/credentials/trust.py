"""The trust list: which issuer keys a gate accepts for passes (and, optionally, which
EU DCC signer certificates), with its version and issue time so its age is known.

Lookups are a dict by kid, so their cost does not grow with the number of keys.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import pathlib
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.credentials import keys as keyfiles
from edge.credentials.signed import SignedDocument, verify_document

logger = logging.getLogger(__name__)

DOC_TYPE = "trust"


class TrustListError(ValueError):
    pass


class TrustList:
    """Issuer public keys by kid. `version`/`issued_at` are None for a local, pinned set."""

    def __init__(self, keys: Mapping[str, ed25519.Ed25519PublicKey] | None = None, version: int | None = None,
                 issued_at: dt.datetime | None = None, dcc_certs: Iterable[bytes] = (), source: str = "local"):
        self.keys: dict[str, ed25519.Ed25519PublicKey] = dict(keys or {})
        self.version = version
        self.issued_at = issued_at
        self.dcc_certs: tuple[bytes, ...] = tuple(dcc_certs)
        self.source = source

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self.keys

    def get(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        return self.keys.get(kid)

    def age_s(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since the list was issued; None for a pinned local list (never stale)."""
        if self.issued_at is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        return (now - self.issued_at).total_seconds()

    def add(self, kid: str, public_key: ed25519.Ed25519PublicKey) -> None:
        self.keys[kid] = public_key

    # --- loading -----------------------------------------------------------

    @classmethod
    def from_key_files(cls, paths: Iterable[str | os.PathLike]) -> TrustList:
        """PEM public key files (kid from the file's kid line, else derived)."""
        trust = cls(source="files")
        for path in paths:
            trust.add(keyfiles.kid_of_file(path), keyfiles.load_public_key(path))
        return trust

    @classmethod
    def from_document(cls, data: bytes, signer_keys: Mapping[str, ed25519.Ed25519PublicKey],
                      min_version: int | None = None) -> TrustList:
        """A signed trust document (retained MQTT message or file); raises DocumentRejected."""
        return cls.from_signed(verify_document(data, signer_keys, DOC_TYPE, min_version))

    @classmethod
    def from_signed(cls, doc: SignedDocument) -> TrustList:
        body = doc.body
        entries = body.get("keys", [])
        if not isinstance(entries, list):
            raise TrustListError("trust list body: 'keys' must be a list")
        found: dict[str, ed25519.Ed25519PublicKey] = {}
        for entry in entries:
            try:
                kid = entry["kid"]
                raw = base64.urlsafe_b64decode(entry["public_key"] + "=" * (-len(entry["public_key"]) % 4))
                if not keyfiles.valid_kid(kid):
                    raise ValueError("bad kid")
                found[kid] = keyfiles.public_from_raw(raw)
            except (KeyError, TypeError, ValueError, binascii.Error) as err:
                raise TrustListError(f"trust list entry {entry!r:.80}: {err}") from None
        dcc = []
        for item in body.get("dcc_certs", []):
            try:
                dcc.append(base64.b64decode(item, validate=True))
            except (TypeError, ValueError, binascii.Error):
                raise TrustListError("trust list: a DCC certificate is not base64 DER") from None
        return cls(found, version=doc.version, issued_at=doc.issued_at, dcc_certs=dcc, source=f"signed:{doc.kid}")

    @classmethod
    def from_file(cls, path: str | os.PathLike,
                  signer_keys: Mapping[str, ed25519.Ed25519PublicKey] | None = None) -> TrustList:
        """A PEM public key, or a signed trust document (then `signer_keys` are required)."""
        path = pathlib.Path(path)
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return cls.from_key_files([path])
        if signer_keys is None:
            raise TrustListError(f"{path}: a trust document needs the keys that sign it")
        return cls.from_document(data, signer_keys)


def trust_body(keys: Mapping[str, ed25519.Ed25519PublicKey], dcc_certs: Iterable[bytes] = ()) -> dict:
    """The body of a trust document for `sign_document("trust", ...)`."""
    return {
        "keys": [{"kid": kid, "public_key": base64.urlsafe_b64encode(keyfiles.public_raw(k)).decode().rstrip("=")}
                 for kid, k in sorted(keys.items())],
        "dcc_certs": [base64.b64encode(der).decode() for der in dcc_certs],
    }


def dump_keys_json(keys: Mapping[str, ed25519.Ed25519PublicKey]) -> str:
    return json.dumps(trust_body(keys), indent=1)
