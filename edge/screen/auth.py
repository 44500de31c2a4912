"""Volunteer sign-in: PIN check against argon2 hashes, lock-out, shift sessions.

A session is a signed token (HMAC with a key kept in the gate's data folder), so a
volunteer stays signed in across a daemon restart, and nothing secret is stored in the
browser besides the token itself. Wrong PINs are counted per operator id and per
client address; after `max_attempts` in a row the id (or address) is locked for a while.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pathlib
import secrets
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

TOKEN_VERSION = "v1"
# Unknown ids are verified against this hash (of a throw-away string, default argon2 parameters)
# so that they take as long as known ones; made once, not at every start, as hashing is slow on a Pi.
DECOY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$qTpr1PIsdLgaRQ+TRiIMRw$nIBd+LCu67p+cWXFgO7wuQ+ZO+GSoGAcoCHuIdV4tDA"


@dataclasses.dataclass(frozen=True)
class SignInResult:
    ok: bool
    reason: str | None = None  # unknown_operator | wrong_pin | locked | bad_request
    token: str | None = None
    retry_after_s: float | None = None
    attempts_left: int | None = None


@dataclasses.dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


def load_or_create_key(path: pathlib.Path) -> bytes:
    """The session-signing key; created once (owner-readable only) in the data folder."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
        logger.warning("session key %s too short; making a new one (volunteers sign in again)", path.name)
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    tmp.replace(path)
    return key


class VolunteerAuth:
    def __init__(self, volunteers: dict[str, str] | Callable[[], dict[str, str]], key: bytes, *, max_attempts: int = 5,
                 lockout_s: float = 300.0, shift_s: float = 4.5 * 3600, clock=time.time):
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()
        # a callable is asked each time: the list can change while the gate runs (pushed by the centre)
        self._volunteers = volunteers if callable(volunteers) else (lambda: dict(volunteers))
        self._key = key
        self.max_attempts = max_attempts
        self.lockout_s = lockout_s
        self.shift_s = shift_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}
        self._signed_out: dict[str, float] = {}  # operator -> tokens issued before this are void
        self._decoy = DECOY_HASH

    @property
    def volunteers(self) -> dict[str, str]:
        return self._volunteers()

    def operators(self) -> list[str]:
        return sorted(self.volunteers)

    def sign_in(self, operator: str, pin: str, client: str = "?") -> SignInResult:
        from argon2.exceptions import InvalidHashError, VerificationError

        now = self._clock()
        keys = (f"op:{operator}", f"ip:{client}")
        with self._lock:
            locked = max((self._failures.get(k, _Failures()).locked_until for k in keys), default=0.0)
        if locked > now:
            logger.warning("sign-in refused for %r from %s: locked for %.0f s", operator, client, locked - now)
            return SignInResult(False, "locked", retry_after_s=round(locked - now, 1))
        stored = self.volunteers.get(operator)
        try:
            self._hasher.verify(stored or self._decoy, pin)
            good = stored is not None
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            reason = "unknown_operator" if stored is None else "wrong_pin"
            left = self._count_failure(keys, now)
            logger.warning("sign-in refused for %r from %s: %s (%d attempts left)", operator, client, reason, left)
            if left == 0:
                return SignInResult(False, "locked", retry_after_s=self.lockout_s, attempts_left=0)
            return SignInResult(False, reason, attempts_left=left)
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
        logger.info("volunteer %s signed in from %s", operator, client)
        return SignInResult(True, token=self._issue(operator, now))

    def _count_failure(self, keys: tuple[str, ...], now: float) -> int:
        left = self.max_attempts
        with self._lock:
            for k in keys:
                f = self._failures.setdefault(k, _Failures())
                f.count += 1
                if f.count >= self.max_attempts:
                    f.locked_until, f.count = now + self.lockout_s, 0
                    left = 0
                else:
                    left = min(left, self.max_attempts - f.count)
        return left

    def _issue(self, operator: str, now: float) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            {"op": operator, "iat": now, "exp": now + self.shift_s}, separators=(",", ":")).encode()).decode()
        return f"{TOKEN_VERSION}.{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, f"{TOKEN_VERSION}.{body}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def operator_for(self, token: str | None) -> str | None:
        """The signed-in operator id for a session token, or None (expired, forged, signed out)."""
        if not token:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            return None
        if not hmac.compare_digest(self._sign(parts[1]), parts[2]):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1]))
            operator, issued, expires = claims["op"], float(claims["iat"]), float(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if self._clock() > expires or operator not in self.volunteers:
            return None
        with self._lock:
            if issued <= self._signed_out.get(operator, -1.0):
                return None
        return operator

    def sign_out(self, operator: str) -> None:
        with self._lock:
            self._signed_out[operator] = self._clock()
        logger.info("volunteer %s signed out", operator)
