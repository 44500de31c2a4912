"""Signed control documents: policy/config, trust list and status list.

The server signs, the gate verifies before it uses anything, so whoever can publish to
the broker still cannot change what a gate trusts. The envelope is JSON (readable with
`mosquitto_sub`) around the exact signed bytes:

    {"format": "checkgate.signed/1", "kid": K, "payload": b64url(JSON), "sig": b64url(Ed25519)}

with payload = {"type", "version", "issued_at" (unix seconds), "body"} and the signature
over b"checkgate.signed/1\\0" + payload. Versions only go forward: a gate passes the
version it holds as `min_version` so an old retained message cannot roll it back.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.credentials.keys import valid_kid

logger = logging.getLogger(__name__)

FORMAT = "checkgate.signed/1"
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class DocumentRejected(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SignedDocument:
    doc_type: str
    version: int
    issued_at: dt.datetime
    kid: str
    body: dict

    def age_s(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (now - self.issued_at).total_seconds()


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64d(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _message(payload: bytes) -> bytes:
    return FORMAT.encode() + b"\0" + payload


def sign_document(doc_type: str, version: int, body: dict, private_key: ed25519.Ed25519PrivateKey, kid: str,
                  issued_at: dt.datetime | None = None) -> bytes:
    if not valid_kid(kid):
        raise ValueError(f"bad key id {kid!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError("version must be a non-negative integer")
    issued = issued_at.timestamp() if issued_at else time.time()
    payload = json.dumps({"type": doc_type, "version": version, "issued_at": round(issued, 3), "body": body},
                         ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    envelope = {"format": FORMAT, "kid": kid, "payload": _b64e(payload), "sig": _b64e(private_key.sign(_message(payload)))}
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def verify_document(data: bytes, trusted_keys: Mapping[str, ed25519.Ed25519PublicKey], doc_type: str,
                    min_version: int | None = None) -> SignedDocument:
    """Check signature, type and version; raises DocumentRejected(reason) on any problem."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes | bytearray) or not data:
        raise DocumentRejected("empty document")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentRejected("document too large")
    try:
        envelope = json.loads(data)
    except (ValueError, RecursionError):
        raise DocumentRejected("not a signed document (not JSON)") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise DocumentRejected("unsigned or unknown document format")
    if "sig" not in envelope or "payload" not in envelope:
        raise DocumentRejected("unsigned document")
    kid = envelope.get("kid")
    if not isinstance(kid, str) or kid not in trusted_keys:
        raise DocumentRejected(f"unknown signing key {kid!r}" if isinstance(kid, str) else "missing key id")
    try:
        payload, sig = _b64d(envelope["payload"]), _b64d(envelope["sig"])
    except (ValueError, binascii.Error):
        raise DocumentRejected("payload or signature is not base64") from None
    try:
        trusted_keys[kid].verify(sig, _message(payload))
    except InvalidSignature:
        raise DocumentRejected("bad signature") from None
    try:
        content = json.loads(payload)
    except (ValueError, RecursionError):
        raise DocumentRejected("signed payload is not JSON") from None
    if not isinstance(content, dict) or not isinstance(content.get("body"), dict):
        raise DocumentRejected("signed payload has no body")
    if content.get("type") != doc_type:
        raise DocumentRejected(f"wrong document type {content.get('type')!r}, expected {doc_type!r}")
    version, issued = content.get("version"), content.get("issued_at")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise DocumentRejected("bad version")
    if isinstance(issued, bool) or not isinstance(issued, int | float) or not (0 <= issued < 2**40):
        raise DocumentRejected("bad issue time")
    if min_version is not None and version < min_version:
        raise DocumentRejected(f"version {version} is older than {min_version}")
    return SignedDocument(doc_type=doc_type, version=version, kid=kid, body=content["body"],
                          issued_at=dt.datetime.fromtimestamp(issued, dt.UTC))
