"""The project's own signed passes: compact, offline-verifiable, printable.

Wire format (documented in docs/credentials.md):

    "CG1:" + base45( CBOR [kid: text, claims: bstr, signature: bstr] )

`claims` is a CBOR map with small integer keys (see `Claim`) and the signature is
Ed25519 over CBOR ["CG1", kid, claims]. The claims are kept as the exact signed bytes
and only parsed after the signature verifies. No zlib: an Ed25519 signature does not
compress, and a typical pass stays around 150 characters, a version-6/7 alphanumeric QR.
The claims hold a pseudonymous subject id only, never a name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import re
from collections.abc import Iterable, Mapping, Sequence

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.credentials._cbor import CborRejected, strict_loads
from edge.credentials.keys import valid_kid

logger = logging.getLogger(__name__)

PREFIX = "CG1:"
SIGNING_CONTEXT = "CG1"
MAX_PAYLOAD_CHARS = 1024
PASS_KINDS = ("resident", "worker", "visitor", "vehicle")
_KIND_CODES = {name: i + 1 for i, name in enumerate(PASS_KINDS)}
SUBJECT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")
ZONE_RE = re.compile(r"^[A-Za-z0-9._-]{1,24}$")
WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Claim(enum.IntEnum):
    SUBJECT = 1
    KIND = 2
    ZONES = 3
    NOT_BEFORE = 4
    EXPIRES = 5
    HOUSEHOLD = 6
    WINDOW = 7  # [start minute of day, end minute of day], local time
    ISSUED_AT = 8


class PassRejected(ValueError):
    """A pass that must not be honoured; `reason` is a stable code from edge.reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class PassClaims:
    subject: str
    kind: str
    zones: tuple[str, ...]
    not_before: int | None
    expires: int | None
    household: str | None
    window: tuple[str, str] | None
    issued_at: int | None


@dataclasses.dataclass(frozen=True)
class ParsedPass:
    kid: str
    claims_bytes: bytes
    signature: bytes

    def signed_message(self) -> bytes:
        return signing_input(self.kid, self.claims_bytes)


def signing_input(kid: str, claims_bytes: bytes) -> bytes:
    return cbor2.dumps([SIGNING_CONTEXT, kid, claims_bytes])


def _to_unix(value: dt.datetime | int | float | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("pass times must be timezone-aware")
        return int(value.timestamp())
    return int(value)


def _window_minutes(window: Sequence[str] | None) -> list[int] | None:
    if window is None:
        return None
    if len(window) != 2:
        raise ValueError("a time window is two 'HH:MM' strings")
    out = []
    for item in window:
        m = WINDOW_RE.match(item)
        if not m:
            raise ValueError(f"time window bound {item!r} is not HH:MM")
        out.append(int(m.group(1)) * 60 + int(m.group(2)))
    return out


def _minutes_to_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def issue_pass(private_key: ed25519.Ed25519PrivateKey, kid: str, subject: str, kind: str,
               zones: Iterable[str] = (), not_before: dt.datetime | int | None = None,
               expires: dt.datetime | int | None = None, household: str | None = None,
               window: Sequence[str] | None = None, issued_at: dt.datetime | int | None = None) -> str:
    """Sign one pass and return its QR payload ("CG1:...")."""
    if not valid_kid(kid):
        raise ValueError(f"bad key id {kid!r}")
    if not SUBJECT_RE.match(subject or ""):
        raise ValueError("subject must be a pseudonymous id of 1-40 characters [A-Za-z0-9._:-]")
    if kind not in _KIND_CODES:
        raise ValueError(f"kind must be one of {', '.join(PASS_KINDS)}")
    zones = [zones] if isinstance(zones, str) else list(zones)  # "north" is one zone, not five letters
    for zone in zones:
        if not ZONE_RE.match(zone):
            raise ValueError(f"zone {zone!r} must be 1-24 characters [A-Za-z0-9._-]")
    if household is not None and not SUBJECT_RE.match(household):
        raise ValueError("household must be a pseudonymous id of 1-40 characters")
    claims: dict[int, object] = {Claim.SUBJECT: subject, Claim.KIND: _KIND_CODES[kind]}
    if zones:
        claims[Claim.ZONES] = zones
    for key, value in ((Claim.NOT_BEFORE, not_before), (Claim.EXPIRES, expires), (Claim.ISSUED_AT, issued_at)):
        if value is not None:
            claims[key] = _to_unix(value)
    if household is not None:
        claims[Claim.HOUSEHOLD] = household
    minutes = _window_minutes(window)
    if minutes is not None:
        claims[Claim.WINDOW] = minutes
    claims_bytes = cbor2.dumps({int(k): v for k, v in claims.items()})
    signature = private_key.sign(signing_input(kid, claims_bytes))
    body = cbor2.dumps([kid, claims_bytes, signature])
    return PREFIX + base45.b45encode(body).decode("ascii")


def parse_pass(payload: str) -> ParsedPass:
    """Structure only: prefix, base45, the CBOR envelope. Raises PassRejected."""
    if not isinstance(payload, str) or not payload.startswith(PREFIX):
        raise PassRejected("unknown_format", "not a CG1 pass")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise PassRejected("malformed", "payload too long")
    try:
        raw = base45.b45decode(payload[len(PREFIX):])
    except (ValueError, TypeError) as err:
        raise PassRejected("malformed", f"base45: {err}") from None
    try:
        envelope = strict_loads(raw, MAX_PAYLOAD_CHARS)
    except CborRejected as err:
        raise PassRejected("malformed", str(err)) from None
    if not isinstance(envelope, Sequence) or isinstance(envelope, str | bytes) or len(envelope) != 3:
        raise PassRejected("malformed", "envelope is not [kid, claims, signature]")
    kid, claims_bytes, signature = envelope
    if not isinstance(kid, str) or not valid_kid(kid):
        raise PassRejected("malformed", "bad key id")
    if not isinstance(claims_bytes, bytes) or not isinstance(signature, bytes):
        raise PassRejected("malformed", "claims and signature must be byte strings")
    if len(signature) != 64:
        raise PassRejected("bad_signature", "an Ed25519 signature is 64 bytes")
    return ParsedPass(kid, claims_bytes, signature)


def _int_time(claims: Mapping, key: Claim) -> int | None:
    value = claims.get(int(key))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < 2**40):
        raise PassRejected("malformed", f"claim {key.name.lower()} is not a time")
    return value


def parse_claims(claims_bytes: bytes) -> PassClaims:
    """Parse signed claims bytes (only after the signature has verified)."""
    try:
        claims = strict_loads(claims_bytes, MAX_PAYLOAD_CHARS)
    except CborRejected as err:
        raise PassRejected("malformed", f"claims: {err}") from None
    if not isinstance(claims, Mapping):
        raise PassRejected("malformed", "claims are not a map")
    known = {int(c) for c in Claim}
    if any(isinstance(k, bool) or k not in known for k in claims):
        raise PassRejected("malformed", "unknown claim")
    subject = claims.get(int(Claim.SUBJECT))
    if not isinstance(subject, str) or not SUBJECT_RE.match(subject):
        raise PassRejected("malformed", "bad subject")
    kind_code = claims.get(int(Claim.KIND))
    kinds = {v: k for k, v in _KIND_CODES.items()}
    if isinstance(kind_code, bool) or kind_code not in kinds:
        raise PassRejected("malformed", "bad kind")
    zones = claims.get(int(Claim.ZONES), [])
    if not isinstance(zones, Sequence) or isinstance(zones, str | bytes) or not all(
            isinstance(z, str) and ZONE_RE.match(z) for z in zones):
        raise PassRejected("malformed", "bad zones")
    household = claims.get(int(Claim.HOUSEHOLD))
    if household is not None and (not isinstance(household, str) or not SUBJECT_RE.match(household)):
        raise PassRejected("malformed", "bad household")
    window = claims.get(int(Claim.WINDOW))
    if window is not None:
        if (not isinstance(window, Sequence) or isinstance(window, str | bytes) or len(window) != 2
                or not all(isinstance(m, int) and not isinstance(m, bool) and 0 <= m < 1440 for m in window)):
            raise PassRejected("malformed", "bad time window")
        window = (_minutes_to_hhmm(window[0]), _minutes_to_hhmm(window[1]))
    return PassClaims(subject=subject, kind=kinds[kind_code], zones=tuple(zones),
                      not_before=_int_time(claims, Claim.NOT_BEFORE), expires=_int_time(claims, Claim.EXPIRES),
                      household=household, window=window, issued_at=_int_time(claims, Claim.ISSUED_AT))


def verify_signature(parsed: ParsedPass, public_key: ed25519.Ed25519PublicKey) -> None:
    try:
        public_key.verify(parsed.signature, parsed.signed_message())
    except InvalidSignature:
        raise PassRejected("bad_signature", f"signature does not verify under key {parsed.kid}") from None


def check_times(claims: PassClaims, now: dt.datetime, skew_s: int = 0) -> None:
    ts = now.timestamp()
    if claims.not_before is not None and ts + skew_s < claims.not_before:
        raise PassRejected("not_yet_valid")
    if claims.expires is not None and ts > claims.expires + skew_s:
        raise PassRejected("expired")
