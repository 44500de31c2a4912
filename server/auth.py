"""Users, roles, password hashing, session and API tokens.

Roles: `admin` (everything) and `steward` (view only, never personal fields).
Tokens are random; only their SHA-256 is stored. Pages use the same tokens in an
HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import secrets

import sqlalchemy as sa

from server import models as m
from server.store import Store, utcnow

logger = logging.getLogger(__name__)

ROLES = ("admin", "steward")
SESSION_COOKIE = "checkgate_session"


@dataclasses.dataclass(frozen=True)
class Principal:
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_personal(self) -> bool:
        return self.role == "admin"


_hash_params = {"time_cost": 3, "memory_cost": 65536, "parallelism": 4}


def configure_password_hashing(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Cost of new hashes (from config.password_hash); existing hashes keep their own."""
    _hash_params.update(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher(**_hash_params)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserError(ValueError):
    pass


def create_user(store: Store, username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError("username: 1-64 letters, digits, '-', '_' or '.'")
    if len(password) < 8:
        raise UserError("password must have at least 8 characters")
    pw_hash = _hasher().hash(password)
    with store.writing() as conn:
        existing = conn.execute(sa.select(m.users.c.id).where(m.users.c.username == username)).scalar()
        if existing is not None:
            conn.execute(m.users.update().where(m.users.c.id == existing)
                         .values(password_hash=pw_hash, role=role, disabled=False))
        else:
            conn.execute(sa.insert(m.users).values(username=username, password_hash=pw_hash, role=role,
                                                   created_at=utcnow()))


def check_password(store: Store, username: str, password: str) -> Principal | None:
    from argon2.exceptions import InvalidHashError, VerificationError

    with store.engine.connect() as conn:
        user = conn.execute(sa.select(m.users).where(m.users.c.username == username,
                                                     m.users.c.disabled.is_(False))).first()
    if user is None:
        _hasher().hash(password)  # same work whether or not the user exists
        return None
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return Principal(user.username, user.role)


def issue_token(store: Store, username: str, kind: str, lifetime: dt.timedelta | None) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with store.writing() as conn:
        user_id = conn.execute(sa.select(m.users.c.id).where(m.users.c.username == username)).scalar_one()
        conn.execute(sa.insert(m.auth_tokens).values(
            token_hash=token_digest(token), user_id=user_id, kind=kind, created_at=now,
            expires_at=(now + lifetime) if lifetime else None))
    return token


def revoke_token(store: Store, token: str) -> None:
    with store.writing() as conn:
        conn.execute(m.auth_tokens.delete().where(m.auth_tokens.c.token_hash == token_digest(token)))


def principal_for_token(store: Store, token: str, static_admin_token: str | None) -> Principal | None:
    if not token or len(token) > 512:
        return None
    if static_admin_token and hmac.compare_digest(token.encode(), static_admin_token.encode()):
        return Principal("api-token", "admin")
    t, u = m.auth_tokens.c, m.users.c
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(u.username, u.role, t.expires_at)
                           .join_from(m.auth_tokens, m.users, t.user_id == u.id)
                           .where(t.token_hash == token_digest(token), u.disabled.is_(False))).first()
    if row is None or (row.expires_at is not None and row.expires_at < utcnow()):
        return None
    return Principal(row.username, row.role)
