"""FastAPI dependencies: the app's services and the caller's identity."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.auth import SESSION_COOKIE, Principal, principal_for_token
from server.config import ServerConfig
from server.store import Store

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="A user token (POST /api/v1/tokens) or the configured api_token")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_config(request: Request) -> ServerConfig:
    return request.app.state.config


def optional_principal(request: Request,
                       creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
    token = creds.credentials if creds else request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return principal_for_token(request.app.state.store, token, request.app.state.config.api_token)


def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return principal


def current_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "administrators only")
    return principal


StoreDep = Annotated[Store, Depends(get_store)]
ConfigDep = Annotated[ServerConfig, Depends(get_config)]
UserDep = Annotated[Principal, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(current_admin)]

_EARLIEST = dt.datetime(2000, 1, 1)
_LATEST = dt.datetime(2200, 1, 1)


def to_utc_naive(value: dt.datetime | None, name: str) -> dt.datetime | None:
    """Query times: naive means UTC; out-of-range values are a bad request, not a crash."""
    if value is None:
        return None
    try:
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise HTTPException(422, f"{name}: time out of range") from None
    if not _EARLIEST <= value <= _LATEST:
        raise HTTPException(422, f"{name}: time out of range (2000..2200)")
    return value
