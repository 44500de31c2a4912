"""EU Digital COVID Certificate ("HC1:") verification, fully offline.

The pipeline follows ../shared/specs/dcc-verification.md (summarised in
docs/credentials.md): strict base45, zlib with an output cap, COSE_Sign1 with ES256 or
PS256 and a kid lookup, CWT claims checked against an injected clock and the signer
certificate's validity, the DCC's shape, JSON schema and value sets, the signer's key
usage, then DCC-level revocation hashes. Every failure returns one stable reason code
naming the step ("dcc_base45", "dcc_signature", ...); nothing here raises on bad input.

COSE verification is a few lines over `cryptography` (the spec recommends this over
pycose, which trips over cbor2 6's tuples). Schemas and value sets are data, loaded
from folders so they can be refreshed without a code change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import pathlib
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence

import base45
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.credentials._cbor import CborRejected, strict_loads

logger = logging.getLogger(__name__)

PREFIX = "HC1:"
BASE45_RE = re.compile(r"^[0-9A-Z $%*+\-./:]*$")
MAX_INFLATED = 64 * 1024
ALG_ES256, ALG_PS256 = -7, -37
COSE_SIGN1_TAG, CWT_TAG = 18, 61
HCERT_CLAIM, DCC_KEY = -260, 1
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT = 1, 4, 6

# DSC extended key usage OIDs per DCC type: the current form and the legacy one.
KEY_USAGE_OIDS = {
    "1.3.6.1.4.1.1847.2021.1.1": "t", "1.3.6.1.4.1.0.1847.2021.1.1": "t",
    "1.3.6.1.4.1.1847.2021.1.2": "v", "1.3.6.1.4.1.0.1847.2021.1.2": "v",
    "1.3.6.1.4.1.1847.2021.1.3": "r", "1.3.6.1.4.1.0.1847.2021.1.3": "r",
}

# Which value set each field of each DCC entry type is checked against.
VALUE_SET_FILES = {
    "tg": "disease-agent-targeted.json", "vp": "vaccine-prophylaxis.json", "mp": "vaccine-medicinal-product.json",
    "ma_v": "vaccine-mah-manf.json", "co": "country-2-codes.json", "tt": "test-type.json",
    "tr": "test-result.json", "ma_t": "test-manf-example.json",
}
VALUE_SET_FIELDS = {"v": ("tg", "vp", "mp", "ma_v", "co"), "t": ("tg", "tt", "tr", "co"), "r": ("tg", "co")}
RAT_TEST_TYPE = "LP217198-3"


@dataclasses.dataclass(frozen=True)
class DccResult:
    ok: bool
    reason: str = ""
    detail: str = ""
    issuer: str | None = None  # country (CWT iss)
    subject: str | None = None  # pseudonym derived from the certificate id, never the name
    dcc_type: str | None = None
    issued_at: float | None = None
    expires: float | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class Signer:
    """One document signer certificate (DSC) and what it may sign."""

    kid: bytes
    public_key: object
    not_before: dt.datetime
    not_after: dt.datetime
    allowed_types: frozenset[str] | None  # None: no DCC key usage, may sign every type
    country: str | None = None  # the DSC subject's C; None: the certificate names none

    @classmethod
    def from_der(cls, der: bytes) -> Signer:
        cert = x509.load_der_x509_certificate(der)
        return cls(kid=hashlib.sha256(der).digest()[:8], public_key=cert.public_key(),
                   not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                   allowed_types=_allowed_types(cert), country=_country(cert))


def _country(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
    value = names[0].value if names else None
    return value.upper() if isinstance(value, str) and value else None


def _allowed_types(cert: x509.Certificate) -> frozenset[str] | None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # an empty EKU sequence (RFC 5280 forbids it; real DSCs have it): no DCC OID
        return None
    types = {KEY_USAGE_OIDS[oid.dotted_string] for oid in eku if oid.dotted_string in KEY_USAGE_OIDS}
    return frozenset(types) or None


class DccTrustStore:
    """DSCs by kid (a list per kid: kids can collide), plus schemas and value sets."""

    def __init__(self, signers: Iterable[Signer] = (), valuesets: Mapping[str, frozenset[str]] | None = None,
                 schemas: Mapping[str, dict] | None = None, revoked_hashes: Iterable[bytes] = (),
                 issued_at: dt.datetime | None = None):
        self.by_kid: dict[bytes, list[Signer]] = {}
        for signer in signers:
            self.by_kid.setdefault(signer.kid, []).append(signer)
        self.valuesets = dict(valuesets) if valuesets is not None else None
        self.schemas = dict(schemas) if schemas is not None else None
        self.revoked_hashes = frozenset(revoked_hashes)
        self.issued_at = issued_at
        self._validators: dict[str, object] = {}
        if self.valuesets is None or self.schemas is None:
            logger.warning("EU DCC: no %s loaded: those checks are skipped",
                           " and ".join(n for n, v in (("schemas", self.schemas), ("value sets", self.valuesets)) if v is None))

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kid.values())

    def validator(self, version: str):
        """The compiled JSON schema validator for a DCC version (built once per store)."""
        cached = self._validators.get(version)
        if cached is None:
            from jsonschema import Draft202012Validator

            # no format checker: the spec validates without format assertions
            cached = self._validators[version] = Draft202012Validator(self.schemas[version])
        return cached

    def age_s(self, now: dt.datetime | None = None) -> float | None:
        if self.issued_at is None:
            return None
        return ((now or dt.datetime.now(dt.UTC)) - self.issued_at).total_seconds()

    @classmethod
    def from_base64_certs(cls, certs: Iterable[str], valuesets_dir: str | os.PathLike | None = None,
                          schemas_dir: str | os.PathLike | None = None, **kw) -> DccTrustStore:
        import base64

        signers = [Signer.from_der(base64.b64decode(c, validate=True)) for c in certs]
        data_dir = default_data_dir()
        vs_dir = valuesets_dir or (data_dir / "valuesets" if data_dir else None)
        sc_dir = schemas_dir or (data_dir / "schemas" if data_dir else None)
        return cls(signers, valuesets=load_valuesets(vs_dir) if vs_dir else None,
                   schemas=load_schemas(sc_dir) if sc_dir else None, **kw)


    @classmethod
    def from_file(cls, path: str | os.PathLike, valuesets_dir: str | os.PathLike | None = None,
                  schemas_dir: str | os.PathLike | None = None) -> DccTrustStore:
        """Signer certificates from a file: PEM certificates, or base64 DER one per line
        ('#' comments allowed), or JSON {"certs": [base64 DER, ...]}."""
        import base64

        path = pathlib.Path(path)
        data = path.read_bytes()
        if b"-----BEGIN CERTIFICATE" in data:
            from cryptography.hazmat.primitives.serialization import Encoding

            ders = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
            certs = [base64.b64encode(d).decode() for d in ders]
        elif data.lstrip().startswith(b"{"):
            certs = json.loads(data)["certs"]
        else:
            certs = [line.strip() for line in data.decode("ascii").splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
        store = cls.from_base64_certs(certs, valuesets_dir=valuesets_dir, schemas_dir=schemas_dir,
                                      issued_at=None)
        logger.info("EU DCC trust store %s: %d signer certificates", path.name, len(store))
        return store

    @classmethod
    def with_certs(cls, ders: Iterable[bytes], like: DccTrustStore | None = None,
                   issued_at: dt.datetime | None = None) -> DccTrustStore:
        """A store for new signer certificates (e.g. from a signed trust list), keeping the
        schemas, value sets and revocation data of `like`."""
        return cls([Signer.from_der(d) for d in ders], valuesets=like.valuesets if like is not None else None,
                   schemas=like.schemas if like is not None else None,
                   revoked_hashes=like.revoked_hashes if like is not None else (), issued_at=issued_at)


def default_data_dir() -> pathlib.Path | None:
    """The public DCC reference data beside the repository (../shared/data/dcc), when present."""
    here = pathlib.Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "dcc"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    env = os.environ.get("CHECKGATE_DCC_DATA")
    return pathlib.Path(env) if env and pathlib.Path(env).is_dir() else None


def load_valuesets(folder: str | os.PathLike) -> dict[str, frozenset[str]]:
    folder = pathlib.Path(folder)
    out = {}
    for field, filename in VALUE_SET_FILES.items():
        data = json.loads((folder / filename).read_text(encoding="utf-8"))
        out[field] = frozenset(data["valueSetValues"])
    return out


def load_schemas(folder: str | os.PathLike) -> dict[str, dict]:
    """version -> combined JSON schema, from `<folder>/<version>/*.json`."""
    out = {}
    for sub in sorted(pathlib.Path(folder).iterdir()):
        files = sorted(sub.glob("*.json")) if sub.is_dir() else []
        if files:
            out[sub.name] = json.loads(files[0].read_text(encoding="utf-8"))
    return out




# --- the pipeline ------------------------------------------------------------------

def verify_hc1(payload: str, store: DccTrustStore, now: dt.datetime, check_time: bool = True,
               skew_s: float = 0) -> DccResult:
    try:
        return _verify(payload, store, now, check_time, skew_s)
    except _Reject as rej:
        logger.debug("DCC rejected: %s %s", rej.reason, rej.detail)
        return DccResult(False, rej.reason, rej.detail)


def _verify(payload: str, store: DccTrustStore, now: dt.datetime, check_time: bool, skew_s: float) -> DccResult:
    if not isinstance(payload, str) or not payload.startswith(PREFIX):
        raise _Reject("dcc_prefix")
    body = payload[len(PREFIX):]
    if not BASE45_RE.match(body):
        raise _Reject("dcc_base45", "character outside the base45 alphabet")
    try:
        compressed = base45.b45decode(body)
    except (ValueError, TypeError) as err:
        raise _Reject("dcc_base45", str(err)) from None
    cose_bytes = _inflate(compressed)
    protected_bytes, protected, unprotected, cwt_bytes, signature = _parse_cose(cose_bytes)
    kid = protected[4] if 4 in protected else unprotected.get(4)
    alg = protected[1] if 1 in protected else unprotected.get(1)
    if not isinstance(kid, bytes) or not kid:
        raise _Reject("dcc_kid", "no kid")
    signers = store.by_kid.get(kid)
    if not signers:
        raise _Reject("dcc_kid", f"unknown kid {kid.hex()}")
    if alg not in (ALG_ES256, ALG_PS256) or isinstance(alg, bool):
        raise _Reject("dcc_signature", f"unsupported algorithm {alg!r}")
    message = cbor2.dumps(["Signature1", protected_bytes, b"", cwt_bytes])
    signer = next((s for s in signers if _signature_ok(s, alg, signature, message)), None)
    if signer is None:
        raise _Reject("dcc_signature")
    # Only now that the signature holds is any content acted upon.
    claims = _cwt_claims(cwt_bytes)
    iss, iat, exp, dcc = claims
    if check_time:
        ts = now.timestamp()
        if iat is not None and iat > ts + skew_s:
            raise _Reject("dcc_time", "issued in the future")
        if exp is not None and ts > exp + skew_s:
            raise _Reject("dcc_time", "expired")
        if iat is not None and iat < signer.not_before.timestamp():
            raise _Reject("dcc_time", "issued before the signer certificate was valid")
        if exp is not None and exp > signer.not_after.timestamp():
            raise _Reject("dcc_time", "expires after the signer certificate")
    # A signer certified for one country cannot vouch for another country's certificates.
    if signer.country and iss and iss.upper() != signer.country:
        raise _Reject("dcc_issuer", f"issued by {iss!r}, signed by a {signer.country} signer")
    dcc_type, entry = _check_dcc(dcc, store)
    if signer.allowed_types is not None and dcc_type not in signer.allowed_types:
        raise _Reject("dcc_key_usage", f"signer may sign {sorted(signer.allowed_types)}, not {dcc_type}")
    uvci = entry.get("ci") if isinstance(entry.get("ci"), str) else ""
    if store.revoked_hashes and _revocation_hashes(alg, signature, uvci, iss) & store.revoked_hashes:
        raise _Reject("revoked", "DCC revoked")
    subject = "dcc_" + hashlib.sha256((uvci or signature.hex()).encode()).hexdigest()[:12]
    return DccResult(True, issuer=iss, subject=subject, dcc_type=dcc_type, issued_at=iat, expires=exp)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED)
    except zlib.error as err:
        raise _Reject("dcc_zlib", str(err)) from None
    if inflater.unconsumed_tail:
        raise _Reject("dcc_zlib", f"inflates beyond {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise _Reject("dcc_zlib", "truncated stream")
    return out


def _is_seq(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _parse_cose(data: bytes):
    try:
        obj = strict_loads(data, MAX_INFLATED)
    except CborRejected as err:
        raise _Reject("dcc_cose", str(err)) from None
    if isinstance(obj, cbor2.CBORTag) and obj.tag == CWT_TAG:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise _Reject("dcc_cose", f"unexpected CBOR tag {obj.tag}")
        obj = obj.value
    if not _is_seq(obj) or len(obj) != 4:
        raise _Reject("dcc_cose", "not a COSE_Sign1 array")
    protected_bytes, unprotected, cwt_bytes, signature = obj
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, Mapping) \
            or not isinstance(cwt_bytes, bytes) or not isinstance(signature, bytes):
        raise _Reject("dcc_cose", "COSE_Sign1 member types")
    if protected_bytes:
        try:
            protected = strict_loads(protected_bytes, 4096)
        except CborRejected as err:
            raise _Reject("dcc_cose", f"protected header: {err}") from None
        if not isinstance(protected, Mapping):
            raise _Reject("dcc_cose", "protected header is not a map")
    else:
        protected = {}
    return protected_bytes, protected, unprotected, cwt_bytes, signature


def _signature_ok(signer: Signer, alg: int, signature: bytes, message: bytes) -> bool:
    key = signer.public_key
    try:
        if alg == ALG_ES256:
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1" or len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == ALG_PS256:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _numeric_date(value, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 2**40:
        raise _Reject("dcc_cwt", f"claim {name} is not a NumericDate")
    return float(value)


def _cwt_claims(cwt_bytes: bytes):
    try:
        claims = strict_loads(cwt_bytes, MAX_INFLATED)
    except CborRejected as err:
        raise _Reject("dcc_cwt", str(err)) from None
    if not isinstance(claims, Mapping):
        raise _Reject("dcc_cwt", "claims are not a map")
    iss = claims.get(CLAIM_ISS)
    if iss is not None and not isinstance(iss, str):
        raise _Reject("dcc_cwt", "iss is not text")
    iat = _numeric_date(claims.get(CLAIM_IAT), "iat")
    exp = _numeric_date(claims.get(CLAIM_EXP), "exp")
    hcert = claims.get(HCERT_CLAIM)
    if not isinstance(hcert, Mapping) or not isinstance(hcert.get(DCC_KEY), Mapping):
        raise _Reject("dcc_cwt", "no hcert/DCC claim")
    return iss, iat, exp, hcert[DCC_KEY]


def _to_json(value):
    """CBOR-decoded values -> plain JSON types for schema validation."""
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise _Reject("dcc_schema", "non-text key in the DCC")
        return {k: _to_json(v) for k, v in value.items()}
    if _is_seq(value):
        return [_to_json(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _Reject("dcc_schema", f"unexpected {type(value).__name__} in the DCC")


def _check_dcc(dcc: Mapping, store: DccTrustStore) -> tuple[str, dict]:
    doc = _to_json(dcc)
    present = [k for k in ("v", "t", "r") if k in doc]
    if len(present) != 1:
        raise _Reject("dcc_schema", f"expected exactly one of v/t/r, found {present}")
    dcc_type = present[0]
    entries = doc[dcc_type]
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise _Reject("dcc_schema", "expected exactly one entry")
    if store.schemas is not None:
        version = doc.get("ver") if isinstance(doc.get("ver"), str) else ""
        schema = store.schemas.get(version) or store.schemas.get("1.3.0")
        if schema is None:
            raise _Reject("dcc_schema", "no schema available")
        errors = list(store.validator(version if version in store.schemas else "1.3.0").iter_errors(doc))
        if errors:
            raise _Reject("dcc_schema", errors[0].message[:200])
    entry = entries[0]
    if store.valuesets is not None:
        fields = list(VALUE_SET_FIELDS[dcc_type])
        if dcc_type == "t" and entry.get("tt") == RAT_TEST_TYPE:
            fields.append("ma_t")
        for field in fields:
            key = field.split("_")[0]
            if key not in entry:  # optional in the schema version used (e.g. "ma" of a 1.0.0 RAT)
                continue
            if entry.get(key) not in store.valuesets[field]:
                raise _Reject("dcc_value_set", f"{key}={entry.get(key)!r:.40} not in the value set")
    return dcc_type, entry


def _revocation_hashes(alg: int, signature: bytes, uvci: str, iss: str | None) -> set[bytes]:
    sig_part = signature[:32] if alg == ALG_ES256 else signature
    items = {hashlib.sha256(sig_part).digest()[:16]}
    if uvci:
        items.add(hashlib.sha256(uvci.encode()).digest()[:16])
        items.add(hashlib.sha256(((iss or "") + uvci).encode()).digest()[:16])
    return items


def revocation_hash_for_uvci(uvci: str) -> bytes:
    return hashlib.sha256(uvci.encode()).digest()[:16]
