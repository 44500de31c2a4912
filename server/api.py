"""REST API under /api/v1 (OpenAPI at /openapi.json). Every route needs credentials."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import time
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from server.auth import UserError, check_password, create_user, issue_token
from server.control import ControlError, ControlService, NoSigningKey
from server.deps import AdminDep, ConfigDep, StoreDep, UserDep, to_utc_naive
from server.normalize import event_public, parse_payload_json
from server.store import utcnow

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


# --- CSV export ---------------------------------------------------------------

EVENT_CSV_PUBLIC = ["event_id", "gate_id", "seq", "ts", "received_at", "late", "type", "outcome", "reasons",
                    "alert", "credential_kind"]
EVENT_CSV_PERSONAL = ["subject", "temperature_c", "credential_status", "operator"]


def csv_response(rows_iter, header: list[str], filename: str) -> StreamingResponse:
    def generate():
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write("\ufeff")  # so spreadsheet programs read the file as UTF-8 (Chinese text)
        writer.writerow(header)
        for row in rows_iter:
            writer.writerow(row)
            if buf.tell() > 64 * 1024:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(generate(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/events.csv", tags=["events", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_events(store: StoreDep, user: UserDep, filters: FiltersDep,
                  limit: Annotated[int, Query(ge=1, le=5_000_000)] = 1_000_000):
    """The filtered event log as CSV (personal columns for administrators only)."""
    _check_subject_filter(filters, user)
    header = EVENT_CSV_PUBLIC + (EVENT_CSV_PERSONAL if user.sees_personal else [])
    store.audit(user.username, "export_events", filters.gate,
                {"filters": filters.model_dump(exclude_none=True, mode="json"), "personal": user.sees_personal})

    def rows():
        page_cursor = None
        sent = 0
        while sent < limit:
            batch, page_cursor = store.search_events(**filters.model_dump(), cursor=page_cursor,
                                                     limit=min(5000, limit - sent))
            for r in batch:
                e = event_public(r, user.sees_personal)
                e["reasons"] = " ".join(e["reasons"])
                yield [e.get(k) for k in header]
            sent += len(batch)
            if page_cursor is None:
                return

    return csv_response(rows(), header, "checkgate-events.csv")


# --- statistics -----------------------------------------------------------------

class StatRow(BaseModel):
    bucket: str
    gate_id: str
    outcome: str
    reason: str
    count: int


class StatsOut(BaseModel):
    bucket: Literal["hour", "day"]
    since: str
    until: str
    items: list[StatRow]


def _default_range(store, since, until) -> tuple[dt.datetime, dt.datetime]:
    now = utcnow()
    if since is None:
        local_midnight = dt.datetime.now(store.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        since = local_midnight.astimezone(dt.UTC).replace(tzinfo=None)
    if until is None:
        until = now + dt.timedelta(hours=1)
    if until <= since:
        raise HTTPException(422, "until must be after since")
    return since, until


@router.get("/stats", response_model=StatsOut, tags=["stats"])
def get_stats(store: StoreDep, user: UserDep,
              since: Annotated[dt.datetime | None, Query(description="default: start of today (local)")] = None,
              until: dt.datetime | None = None, gate: GateId | None = None,
              bucket: Literal["hour", "day"] = "hour",
              by_gate: Annotated[bool, Query(description="false: summed over all gates (gate_id '*')")] = True,
              totals_only: Annotated[bool, Query(description="only the per-outcome totals (reason '*')")] = False,
              ) -> dict:
    """Counts per gate per hour (UTC) or day (the office's local day) by outcome and reason.

    reason "*" is the total per outcome; other rows count one reason each. Served from
    rollups, never from raw events.
    """
    since, until = _default_range(store, to_utc_naive(since, "since"), to_utc_naive(until, "until"))
    rows = store.stats(since=since, until=until, bucket=bucket, gate=gate, by_gate=by_gate, totals_only=totals_only)
    return {"bucket": bucket, "since": since.isoformat() + "Z", "until": until.isoformat() + "Z",
            "items": [{"bucket": r.bucket.isoformat(), "gate_id": r.gate_id, "outcome": r.outcome,
                       "reason": r.reason, "count": int(r.count)} for r in rows]}


@router.get("/stats.csv", tags=["stats", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_stats(store: StoreDep, user: UserDep, since: dt.datetime | None = None, until: dt.datetime | None = None,
                 gate: GateId | None = None, bucket: Literal["hour", "day"] = "hour"):
    since, until = _default_range(store, to_utc_naive(since, "since"), to_utc_naive(until, "until"))
    rows = store.stats(since=since, until=until, bucket=bucket, gate=gate)
    store.audit(user.username, "export_stats", gate, {"bucket": bucket})
    return csv_response(([r.bucket.isoformat(), r.gate_id, r.outcome, r.reason, r.count] for r in rows),
                        [bucket, "gate_id", "outcome", "reason", "count"], f"checkgate-stats-{bucket}.csv")


class ReportOut(BaseModel):
    date: str
    timezone: str
    gates: list[dict]
    totals: dict
    reasons: list[dict]


@router.get("/reports/daily", response_model=ReportOut, tags=["stats"])
def daily_report(store: StoreDep, user: UserDep,
                 date: Annotated[dt.date | None, Query(description="local date, default today")] = None) -> dict:
    """The checkpoint office's daily report: people screened, passed, denied, fevers, per gate."""
    return build_daily_report(store, date)


@router.get("/reports/daily.csv", tags=["stats", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def daily_report_csv(store: StoreDep, user: UserDep, date: dt.date | None = None):
    report = build_daily_report(store, date)
    store.audit(user.username, "export_daily_report", report["date"])
    cols = ["gate_id", "screened", "pass", "deny", "retry", "manual", "fever", "status_red", "status_yellow"]
    rows = [[g[c] for c in cols] for g in report["gates"]]
    rows.append(["TOTAL", *[report["totals"][c] for c in cols[1:]]])
    return csv_response(rows, cols, f"checkgate-daily-{report['date']}.csv")


def build_daily_report(store, date: dt.date | None) -> dict:
    today = dt.datetime.now(store.tz).date()
    date = date or today
    if not dt.date(2000, 1, 1) <= date <= dt.date(2200, 1, 1):
        raise HTTPException(422, "date out of range")
    start = dt.datetime.combine(date, dt.time(), tzinfo=store.tz)
    rows = store.stats(since=start, until=start + dt.timedelta(days=1), bucket="day")
    per_gate: dict[str, dict] = {}
    reasons: dict[str, int] = {}
    for r in rows:
        g = per_gate.setdefault(r.gate_id, {"gate_id": r.gate_id, "screened": 0, "pass": 0, "deny": 0, "retry": 0,
                                            "manual": 0, "fever": 0, "status_red": 0, "status_yellow": 0})
        if r.reason == "*":
            g["screened"] += r.count
            if r.outcome in g:
                g[r.outcome] += r.count
        else:
            reasons[r.reason] = reasons.get(r.reason, 0) + r.count
            if r.reason in ("fever", "status_red", "status_yellow"):
                g[r.reason] += r.count
    gates_list = [per_gate[k] for k in sorted(per_gate)]
    keys = ["screened", "pass", "deny", "retry", "manual", "fever", "status_red", "status_yellow"]
    totals = {k: sum(g[k] for g in gates_list) for k in keys}
    return {"date": date.isoformat(), "timezone": str(store.tz), "gates": gates_list, "totals": totals,
            "reasons": [{"reason": k, "count": v} for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]}


# --- gates ----------------------------------------------------------------------

class GateOut(BaseModel):
    gate_id: str
    status: Literal["online", "offline", "stale", "unknown"]
    online: bool | None
    last_seen: str | None
    state_at: str | None
    last_event_at: str | None
    health: dict | None
    queue_depth: int | None
    list_versions: dict | None
    devices: dict[str, str]
    faults: list[str]
    event_count: int
    max_seq: int | None
    missing: int


def gate_status(online: bool | None, last_seen: dt.datetime | None, now: dt.datetime, stale_after_s: float) -> str:
    """online / offline from the retained state; "stale" when it claims online but is silent too long."""
    if online is None:
        return "unknown"
    if not online:
        return "offline"
    if last_seen is None or (now - last_seen).total_seconds() > stale_after_s:
        return "stale"
    return "online"


def _find_number(health: dict | None, *names: str) -> int | None:
    if not health:
        return None
    stack = [health]
    while stack:
        node = stack.pop()
        for k, v in node.items():
            if k in names and isinstance(v, int | float) and not isinstance(v, bool):
                return int(v)
            if isinstance(v, dict):
                stack.append(v)
    return None


def _find_dict(health: dict | None, *names: str) -> dict | None:
    if not health:
        return None
    for name in names:
        if isinstance(health.get(name), dict):
            return health[name]
    return None


def _queue_depth(health: dict | None) -> int | None:
    queue = (health or {}).get("queue")
    if isinstance(queue, dict) and isinstance(queue.get("pending"), int):
        return queue["pending"]  # the edge daemon's outbox: events decided but not yet delivered
    return _find_number(health, "queue_depth", "queued", "pending", "outbox_pending")


def _list_versions(health: dict | None) -> dict | None:
    lists = _find_dict(health, "lists", "list_versions")
    if lists is None:
        return None
    out = {}
    for name, value in lists.items():
        if isinstance(value, dict) and "version" in value:
            out[name] = {"version": value.get("version"), "age_s": value.get("age_s")}
        elif isinstance(value, int | str) and not isinstance(value, bool):
            out[name] = {"version": value, "age_s": None}
    return out


def _devices(health: dict | None) -> dict[str, str]:
    """Device name -> state for every health entry shaped like {"state": ...}."""
    out = {}
    for name, value in (health or {}).items():
        if isinstance(value, dict) and isinstance(value.get("state"), str):
            out[name] = value["state"][:40]
        elif isinstance(value, dict) and isinstance(value.get("connected"), bool):
            out[name] = "connected" if value["connected"] else "disconnected"
    return out


def gate_public(row, now: dt.datetime, stale_after_s: float) -> dict:
    health = parse_payload_json(row.health)
    last_seen = max([t for t in (row.last_seen, row.state_at if row.online else None) if t], default=None)
    expected = (row.max_seq - row.min_seq + 1) if row.max_seq is not None and row.min_seq is not None else 0
    first_missing = (row.min_seq - 1) if row.min_seq else 0
    return {
        "gate_id": row.gate_id,
        "status": gate_status(row.online, last_seen, now, stale_after_s),
        "online": row.online,
        "last_seen": last_seen.isoformat(timespec="seconds") + "Z" if last_seen else None,
        "state_at": row.state_at.isoformat(timespec="seconds") + "Z" if row.state_at else None,
        "last_event_at": row.last_event_at.isoformat(timespec="seconds") + "Z" if row.last_event_at else None,
        "health": health,
        "queue_depth": _queue_depth(health),
        "list_versions": _list_versions(health),
        "devices": _devices(health),
        "faults": [str(f)[:64] for f in (health or {}).get("faults", []) if isinstance(f, str)]
        if isinstance((health or {}).get("faults"), list) else [],
        "event_count": int(row.event_count or 0),
        "max_seq": row.max_seq,
        "missing": max(0, expected - int(row.event_count or 0)) + max(0, first_missing),
    }


@router.get("/gates", response_model=list[GateOut], tags=["gates"])
def list_gates(store: StoreDep, user: UserDep, config: ConfigDep) -> list[dict]:
    """Every known gate: online/offline from its retained state, last seen, health, queue, missing seq."""
    now = utcnow()
    return [gate_public(g, now, config.gate_stale_after_s) for g in store.gates()]


@router.get("/gates.csv", tags=["gates", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_gates(store: StoreDep, user: UserDep, config: ConfigDep):
    now = utcnow()
    cols = ["gate_id", "status", "last_seen", "last_event_at", "queue_depth", "event_count", "max_seq", "missing"]
    rows = ([g[c] for c in cols] for g in (gate_public(r, now, config.gate_stale_after_s) for r in store.gates()))
    return csv_response(rows, cols, "checkgate-gates.csv")


@router.get("/dead-letters.csv", tags=["ingest", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_dead_letters(store: StoreDep, user: UserDep):
    rows = ([r.id, r.received_at.isoformat(), r.topic, r.reason] for r in store.dead_letters(100_000))
    return csv_response(rows, ["id", "received_at", "topic", "reason"], "checkgate-dead-letters.csv")


class GapsOut(BaseModel):
    gate_id: str
    gaps: list[tuple[int, int]]


@router.get("/gates/{gate_id}/gaps", response_model=GapsOut, tags=["gates"])
def gate_gaps(store: StoreDep, user: UserDep,
              gate_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
              limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> dict:
    """Missing sequence ranges (first, last) of one gate: events the gate decided that never arrived."""
    if store.gate(gate_id) is None:
        raise HTTPException(404, "unknown gate")
    return {"gate_id": gate_id, "gaps": store.gaps(gate_id, limit)}


# --- alerts -----------------------------------------------------------------------

class AlertsOut(BaseModel):
    items: list[EventOut]
    last_id: int


@router.get("/alerts", response_model=AlertsOut, response_model_exclude_unset=True, tags=["alerts"])
def list_alerts(store: StoreDep, user: UserDep, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    """Fever and forged-code events after `after_id` (poll with the returned last_id)."""
    rows = store.alerts_after(after_id, limit) if after_id else list(reversed(_recent_alerts(store, limit)))
    if user.sees_personal and rows:
        store.audit(user.username, "view_alerts", None, {"rows": len(rows)})
    return {"items": [event_public(r, user.sees_personal) for r in rows],
            "last_id": rows[-1].id if rows else (after_id or store.last_event_id())}


def _recent_alerts(store, limit: int) -> list:
    rows, _ = store.search_events(alert=True, limit=limit)
    return rows


@router.get("/alerts/stream", tags=["alerts"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def alert_stream(request: Request, store: StoreDep, user: UserDep,
                       duration_s: Annotated[int, Query(ge=1, le=86400)] = 3600,
                       after_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                       last_event_id: Annotated[str | None, Header()] = None):
    """Server-sent events: one `alert` event per fever/forged-code event as it is stored.

    Alerts stored by every server instance on the shared subscription arrive (the
    process's alert feed reads the database). A reconnecting browser sends the id of the
    last alert it got (`Last-Event-ID`) and gets what it missed first; `after_id` does
    the same for a page that already shows the alerts up to that event id.
    """
    resume = after_id
    # only the browser sets it, from ids we sent: anything else is ignored, so a stream never fails on it
    if last_event_id is not None and last_event_id.strip().isdigit() and len(last_event_id.strip()) <= 18:
        resume = int(last_event_id.strip())
    personal = user.sees_personal
    if personal:
        await run_in_threadpool(store.audit, user.username, "watch_alerts", None)
    feed = request.app.state.alert_feed
    await run_in_threadpool(feed.start)
    position = feed.position
    # at most the newest 100 of what was missed
    missed = await run_in_threadpool(partial(store.alerts_after, resume, 100, newest=True)) if resume is not None else []
    deadline = time.monotonic() + duration_s

    def sse(row) -> str:
        return f"id: {row.id}\nevent: alert\ndata: {json.dumps(event_public(row, personal))}\n\n"

    async def events():
        nonlocal position
        sent = {r.id for r in missed}
        last_beat = time.monotonic()
        yield ": connected\n\n"
        for row in missed:
            yield sse(row)
        while time.monotonic() < deadline and not await request.is_disconnected():
            rows, position = feed.rows_after(position)  # memory only: no query per viewer
            for row in rows:
                if row.id not in sent:
                    yield sse(row)
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- dead letters, audit, users --------------------------------------------------

class DeadLetterOut(BaseModel):
    id: int
    received_at: str
    topic: str
    reason: str
    payload_preview: str | None = None


class DeadLettersOut(BaseModel):
    total: int
    items: list[DeadLetterOut]


@router.get("/dead-letters", response_model=DeadLettersOut, response_model_exclude_unset=True, tags=["ingest"])
def list_dead_letters(store: StoreDep, user: UserDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """Messages the ingest rejected, with the reason (payloads for administrators only)."""
    items = []
    if user.sees_personal:
        store.audit(user.username, "view_dead_letters", None, {"limit": limit})
    for r in store.dead_letters(limit):
        item = {"id": r.id, "received_at": r.received_at.isoformat(timespec="seconds") + "Z", "topic": r.topic,
                "reason": r.reason}
        if user.sees_personal:
            item["payload_preview"] = (r.payload or b"")[:500].decode("utf-8", "replace")
        items.append(item)
    return {"total": store.dead_letter_count(), "items": items}


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str | None
    detail: str | None


@router.get("/audit", response_model=list[AuditOut], tags=["admin"])
def list_audit(store: StoreDep, admin: AdminDep, limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[dict]:
    """Who viewed or exported personal data, and every change."""
    return [{"id": r.id, "at": r.at.isoformat(timespec="seconds") + "Z", "actor": r.actor, "action": r.action,
             "target": r.target, "detail": r.detail} for r in store.audit_entries(limit)]


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["admin", "steward"]


class UserOut(BaseModel):
    username: str
    role: str


@router.post("/users", response_model=UserOut, status_code=201, tags=["admin"])
def save_user(store: StoreDep, admin: AdminDep, body: UserIn) -> dict:
    """Create a user or reset their password and role."""
    try:
        create_user(store, body.username, body.password, body.role)
    except UserError as err:
        raise HTTPException(422, str(err)) from None
    store.audit(admin.username, "user_saved", body.username, {"role": body.role})
    return {"username": body.username, "role": body.role}


@router.get("/me", response_model=UserOut, tags=["auth"])
def whoami(user: UserDep) -> dict:
    return {"username": user.username, "role": user.role}


# --- passes, registry, status list, control documents ----------------------------

class PassIn(BaseModel):
    kind: Literal["resident", "worker", "visitor", "vehicle"]
    subject: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,40}$")
    name: str | None = Field(None, max_length=128)
    id_number: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=32)
    household: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,40}$")
    zones: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,24}$")]] = Field(default_factory=list, max_length=16)
    not_before: dt.date | None = None
    expires: dt.date | None = None


class PassOut(BaseModel):
    pass_id: str
    subject: str
    kind: str
    zones: list[str]
    not_before: str | None
    expires: str | None
    issued_at: str
    issued_by: str
    kid: str | None
    payload: str | None
    revoked: bool
    revoked_at: str | None
    revoke_reason: str | None
    name: str | None
    id_number: str | None
    phone: str | None
    household: str | None


def _control(request: Request) -> ControlService:
    return request.app.state.control


ControlDep = Annotated[ControlService, Depends(_control)]


def _control_call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except NoSigningKey as err:
        raise HTTPException(503, str(err)) from None
    except ControlError as err:
        raise HTTPException(422, str(err)) from None


@router.post("/passes", response_model=PassOut, status_code=201, tags=["passes"])
def create_pass(control: ControlDep, admin: AdminDep, body: PassIn) -> dict:
    """Issue one signed pass; the person's details stay in the server's registry only."""
    data = body.model_dump()
    for key in ("not_before", "expires"):
        data[key] = data[key].isoformat() if data[key] else None
    return _control_call(control.issue_pass, admin.username, **data)


@router.get("/passes", response_model=list[PassOut], tags=["passes"])
def list_passes(control: ControlDep, store: StoreDep, admin: AdminDep,
                subject: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> list[dict]:
    store.audit(admin.username, "view_passes", subject)
    return control.list_passes(limit, subject)


@router.get("/passes.csv", tags=["passes", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_passes(control: ControlDep, store: StoreDep, admin: AdminDep):
    store.audit(admin.username, "export_passes")
    cols = ["pass_id", "subject", "name", "id_number", "phone", "household", "kind", "zones", "expires",
            "issued_at", "revoked", "payload"]
    rows = ([(" ".join(p[c]) if c == "zones" else p[c]) for c in cols] for p in control.list_passes(1_000_000))
    return csv_response(rows, cols, "checkgate-passes.csv")


PassIdPath = Annotated[str, Path(pattern=r"^ps_[0-9a-f]{16}$")]


@router.get("/passes/{pass_id}", response_model=PassOut, tags=["passes"])
def get_pass(control: ControlDep, store: StoreDep, admin: AdminDep, pass_id: PassIdPath) -> dict:
    found = control.get_pass(pass_id)
    if found is None:
        raise HTTPException(404, "unknown pass")
    store.audit(admin.username, "view_pass", pass_id)
    return found


class RevokeIn(BaseModel):
    reason: str = Field(min_length=1, max_length=255)


@router.post("/passes/{pass_id}/revoke", response_model=PassOut, tags=["passes"])
def revoke_pass(control: ControlDep, admin: AdminDep, pass_id: PassIdPath, body: RevokeIn) -> dict:
    """Revoke a pass; it reaches the gates with the next published status list."""
    try:
        return control.revoke_pass(admin.username, pass_id, body.reason)
    except KeyError:
        raise HTTPException(404, "unknown pass") from None


@router.get("/passes/{pass_id}/card.png", tags=["passes"], response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def pass_card_png(control: ControlDep, store: StoreDep, admin: AdminDep, pass_id: PassIdPath) -> Response:
    """The pass's QR code as a PNG, for printing on a card."""
    import segno

    found = control.get_pass(pass_id)
    if found is None or not found["payload"]:
        raise HTTPException(404, "unknown pass")
    buf = io.BytesIO()
    segno.make_qr(found["payload"], error="m").save(buf, kind="png", scale=8, border=4)
    store.audit(admin.username, "print_pass", pass_id)
    return Response(buf.getvalue(), media_type="image/png")


class ImportOut(BaseModel):
    issued: int
    pass_ids: list[str]
    errors: list[dict]


MAX_UPLOAD = 5 * 1024 * 1024


async def _read_csv_upload(file: UploadFile) -> str:
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, "file too large (5 MB at most)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, "the CSV file must be UTF-8") from None


@router.post("/passes/import", response_model=ImportOut, tags=["passes"])
async def import_passes(control: ControlDep, admin: AdminDep, file: UploadFile) -> dict:
    """Bulk issue from CSV: subject,name,id_number,phone,household,kind,zones,expires."""
    text = await _read_csv_upload(file)
    return await run_in_threadpool(_control_call, control.import_passes_csv, admin.username, text)


class StatusEntryOut(BaseModel):
    subject: str
    status: str
    updated_at: str
    source: str | None


class StatusSetIn(BaseModel):
    status: Literal["green", "yellow", "red"]


@router.get("/status", response_model=list[StatusEntryOut], tags=["status"])
def list_status(control: ControlDep, store: StoreDep, admin: AdminDep) -> list[dict]:
    store.audit(admin.username, "view_status")
    return [{"subject": r.subject, "status": r.status, "updated_at": r.updated_at.isoformat(timespec="seconds") + "Z",
             "source": r.source} for r in control.status_entries()]


@router.get("/status.csv", tags=["status", "export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_status(control: ControlDep, store: StoreDep, admin: AdminDep):
    store.audit(admin.username, "export_status")
    return csv_response(([r.subject, r.status, r.updated_at.isoformat(), r.source] for r in control.status_entries()),
                        ["subject", "status", "updated_at", "source"], "checkgate-status.csv")


@router.put("/status/{subject}", response_model=StatusEntryOut, tags=["status"])
def set_status(control: ControlDep, admin: AdminDep,
               subject: Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,40}$")], body: StatusSetIn) -> dict:
    _control_call(control.set_status, admin.username, {subject: body.status}, "api")
    row = next(r for r in control.status_entries() if r.subject == subject)
    return {"subject": row.subject, "status": row.status, "updated_at": row.updated_at.isoformat() + "Z",
            "source": row.source}


class CountOut(BaseModel):
    count: int


@router.post("/status/import", response_model=CountOut, tags=["status"])
async def import_status(control: ControlDep, admin: AdminDep, file: UploadFile) -> dict:
    """Import yellow/red (or green, to clear) subjects from CSV: subject,status."""
    text = await _read_csv_upload(file)
    return {"count": await run_in_threadpool(_control_call, control.import_status_csv, admin.username, text)}


class PublishedOut(BaseModel):
    doc_type: str
    target: str
    version: int
    topic: str
    bytes: int


@router.post("/status/publish", response_model=PublishedOut, tags=["status"])
def publish_status(control: ControlDep, admin: AdminDep) -> dict:
    """Sign the current status list (yellow, red, revoked) and publish it retained to all gates."""
    return _control_call(control.publish_status, admin.username)


class TrustIn(BaseModel):
    extra_keys: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")],
                     Annotated[str, Field(max_length=100)]] = Field(default_factory=dict, max_length=64)
    dcc_certs: list[Annotated[str, Field(max_length=8192)]] = Field(default_factory=list, max_length=256)


@router.post("/trust/publish", response_model=PublishedOut, tags=["control"])
def publish_trust(control: ControlDep, admin: AdminDep, body: TrustIn) -> dict:
    """Sign and publish the trust list: the server's pass key plus extra issuer keys and DCC signer certificates."""
    return _control_call(control.publish_trust, admin.username, body.extra_keys, body.dcc_certs)


class PolicyIn(BaseModel):
    body: dict = Field(description="the policy/config document for the gate (see docs/policy.md)")


@router.put("/gates/{gate_id}/config", response_model=PublishedOut, tags=["control"])
def publish_gate_config(control: ControlDep, admin: AdminDep,
                        gate_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")], body: PolicyIn) -> dict:
    """Sign and publish (retained) a policy/config document for one gate."""
    if len(json.dumps(body.body)) > 64 * 1024:
        raise HTTPException(413, "document too large")
    return _control_call(control.publish_document, admin.username, "config", gate_id, body.body)


class DocumentOut(BaseModel):
    id: int
    doc_type: str
    target: str
    version: int
    published_at: str
    published_by: str


@router.get("/control-documents", response_model=list[DocumentOut], tags=["control"])
def list_documents(control: ControlDep, user: UserDep) -> list[dict]:
    """Published control documents, newest first."""
    return [{"id": d.id, "doc_type": d.doc_type, "target": d.target, "version": d.version,
             "published_at": d.published_at.isoformat(timespec="seconds") + "Z", "published_by": d.published_by}
            for d in control.documents()]
