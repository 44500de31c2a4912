"""A small private PKI for the broker: one CA, a server certificate, gate client certificates.

Everything is built with `cryptography`; keys are ECDSA P-256 (small, fast on a Pi, and
accepted by every OpenSSL that Mosquitto and paho link against). Mosquitto password
hashes are written in Mosquitto 2's own PBKDF2-SHA512 format, so no broker tool is
needed on the machine that provisions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import pathlib
import secrets
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Mosquitto 2 password file: `user:$7$<iterations>$<salt b64>$<sha512 b64>`.
MOSQUITTO_PBKDF2_ID = "7"
PASSWORD_ITERATIONS = 10_000  # mosquitto_passwd uses 101; a connect costs ~5 ms more at 10k
CA_DAYS = 3650
LEAF_DAYS = 825


class PkiError(ValueError):
    """A key or certificate that cannot be used; the message says which file and why."""


def new_password() -> str:
    """A random password that survives YAML, shell and the install sheet without quoting."""
    return secrets.token_urlsafe(24)


def mosquitto_password_hash(password: str, iterations: int = PASSWORD_ITERATIONS,
                            salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"${MOSQUITTO_PBKDF2_ID}${iterations}${salt_b64}${digest_b64}"


def check_mosquitto_password(password: str, hashed: str) -> bool:
    """True when `password` matches a `$7$...` hash (used by tests and `provision check`)."""
    try:
        _, ident, iterations, salt_b64, digest_b64 = hashed.split("$")
        if ident != MOSQUITTO_PBKDF2_ID:
            return False
        digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"),
                                     base64.b64decode(salt_b64), int(iterations))
    except ValueError:
        return False
    return secrets.compare_digest(base64.b64encode(digest).decode(), digest_b64)


@dataclass
class KeyPair:
    """A private key with the certificate for it (both `cryptography` objects)."""

    key: object
    cert: object

    def key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def common_name(self) -> str:
        from cryptography.x509.oid import NameOID

        return self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


def _name(common_name: str, organisation: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def make_ca(common_name: str = "checkgate broker CA", organisation: str = "checkgate",
            days: int = CA_DAYS) -> KeyPair:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name, organisation)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a gate clock a little behind
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def issue_cert(ca: KeyPair, common_name: str, *, server_names: list[str] | None = None,
               client: bool = False, days: int = LEAF_DAYS, organisation: str = "checkgate") -> KeyPair:
    """A leaf certificate signed by `ca`: a server one when `server_names` is given
    (DNS names and IP addresses go into subjectAltName), a client one when `client`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    usages = []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organisation))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if server_names:
        alt = []
        for item in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(item)))
            except ValueError:
                alt.append(x509.DNSName(item))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


def write_pair(pair: KeyPair, cert_path: pathlib.Path, key_path: pathlib.Path | None) -> None:
    """Write the certificate (0644) and, when `key_path` is given, the key (0600)."""
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(pair.cert_pem())
    if key_path is not None:
        write_secret(key_path, pair.key_pem())


def write_secret(path: pathlib.Path, data: bytes | str, mode: int = 0o600) -> None:
    """Create `path` with `mode` (owner only by default) before any secret byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.chmod(path, mode)  # O_CREAT's mode does not apply to a file that already existed


def load_pair(cert_path: pathlib.Path, key_path: pathlib.Path) -> KeyPair:
    """Load a certificate and its key (a CA you bring); checks that they belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(pathlib.Path(cert_path).read_bytes())
    except (OSError, ValueError) as err:
        raise PkiError(f"{cert_path}: not a readable PEM certificate ({err})") from None
    try:
        key = serialization.load_pem_private_key(pathlib.Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise PkiError(f"{key_path}: not a readable unencrypted PEM private key ({err})") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if cert.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise PkiError(f"{key_path} is not the key of {cert_path}")
    return KeyPair(key, cert)


def load_cert(cert_path: pathlib.Path):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pathlib.Path(cert_path).read_bytes())
    except (OSError, ValueError) as err:
        raise PkiError(f"{cert_path}: not a readable PEM certificate ({err})") from None


def is_ca(cert) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def make_crl(ca: KeyPair, revoked_serials: list[int], days: int = 365) -> bytes:
    """A PEM CRL listing revoked client certificates (Mosquitto's `crlfile`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=days)))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
