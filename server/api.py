"""REST API under /api/v1 (OpenAPI at /openapi.json). Every route needs credentials."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel

from server.auth import check_password, issue_token
from server.deps import StoreDep, UserDep, to_utc_naive
from server.normalize import event_public

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

GateId = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
OutcomeQ = Literal["pass", "deny", "retry", "manual"]


class EventOut(BaseModel):
    event_id: str
    gate_id: str
    seq: int
    ts: str
    received_at: str
    late: bool
    type: str
    outcome: str | None
    reasons: list[str]
    alert: bool
    credential_kind: str | None
    # personal fields: administrators only
    subject: str | None = None
    temperature_c: float | None = None
    credential_status: str | None = None
    operator: str | None = None
    purged: bool | None = None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class EventFilters(BaseModel):
    gate: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    outcome: OutcomeQ | None = None
    reason: str | None = None
    subject: str | None = None
    late: bool | None = None
    alert: bool | None = None


def event_filters(
    gate: GateId | None = None,
    since: Annotated[dt.datetime | None, Query(description="decided at or after (ISO 8601; naive = UTC)")] = None,
    until: Annotated[dt.datetime | None, Query(description="decided before")] = None,
    outcome: OutcomeQ | None = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    late: bool | None = None,
    alert: bool | None = None,
) -> EventFilters:
    return EventFilters(gate=gate, since=to_utc_naive(since, "since"), until=to_utc_naive(until, "until"),
                        outcome=outcome, reason=reason, subject=subject, late=late, alert=alert)


FiltersDep = Annotated[EventFilters, Depends(event_filters)]


def _check_subject_filter(filters: EventFilters, user) -> None:
    if filters.subject and not user.sees_personal:
        raise HTTPException(403, "filtering by subject is for administrators")


@router.get("/events", response_model=EventPage, response_model_exclude_unset=True, tags=["events"])
def list_events(store: StoreDep, user: UserDep, filters: FiltersDep,
                cursor: Annotated[str | None, Query(max_length=200)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """Stored events, newest first (by decision time), with cursor pagination."""
    _check_subject_filter(filters, user)
    try:
        rows, next_cursor = store.search_events(**filters.model_dump(), cursor=cursor, limit=limit)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    if user.sees_personal and rows:
        store.audit(user.username, "view_events", filters.gate, {"filters": filters.model_dump(exclude_none=True),
                                                                 "rows": len(rows)})
    return {"items": [event_public(r, user.sees_personal) for r in rows], "next_cursor": next_cursor}


class TokenOut(BaseModel):
    token: str
    role: str
    expires_in_s: int


_basic = HTTPBasic(auto_error=False, description="username and password")


@router.post("/tokens", response_model=TokenOut, tags=["auth"])
def create_token(store: StoreDep,
                 creds: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> dict:
    """Exchange a username and password (HTTP Basic) for an API token valid 30 days."""
    if creds is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Basic"})
    principal = check_password(store, creds.username[:64], creds.password[:256])
    if principal is None:
        store.audit(creds.username[:64], "login_failed", "api")
        raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Basic"})
    lifetime = dt.timedelta(days=30)
    token = issue_token(store, principal.username, "api", lifetime)
    store.audit(principal.username, "token_issued", "api")
    return {"token": token, "role": principal.role, "expires_in_s": int(lifetime.total_seconds())}
