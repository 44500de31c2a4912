"""Server-rendered dashboard pages (Jinja2), zh-CN and en. Charts use vendored JS (static/)."""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import urllib.parse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth import (
    SESSION_COOKIE,
    Principal,
    check_password,
    issue_token,
    principal_for_token,
    revoke_token,
)
from server.i18n import pick_language, translator
from server.normalize import event_public

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent / "templates"
_env = None


def templates():
    global _env
    if _env is None:
        import jinja2

        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                  autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    return _env


def page_user(request: Request) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return principal_for_token(request.app.state.store, token, request.app.state.config.api_token)


def language(request: Request) -> str:
    return pick_language(request.query_params.get("lang"), request.cookies.get("lang"),
                         request.headers.get("accept-language"))


def local_time(value: str | None, tz) -> str:
    """An API time string (UTC, ...Z) as the office's local wall-clock time."""
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def render(request: Request, name: str, user: Principal | None, status_code: int = 200, **context) -> HTMLResponse:
    lang = language(request)
    tz = request.app.state.store.tz
    context.setdefault("local", lambda value: local_time(value, tz))
    context.setdefault("tz_name", getattr(tz, "key", "UTC"))  # live (JS) times use the same zone as the tables
    html = templates().get_template(name).render(request=request, user=user, t=translator(lang), lang=lang,
                                                 path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") == lang:
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="strict")
    return response


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?next=" + urllib.parse.quote(target, safe=""), status_code=303)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _set_session(request: Request, response: Response, token: str) -> None:
    config = request.app.state.config
    response.set_cookie(SESSION_COOKIE, token, max_age=int(config.session_hours * 3600), httponly=True,
                        samesite="strict", secure=config.http.secure_cookies)


@router.get("/login")
def login_page(request: Request, next: str | None = None):  # noqa: A002 - the query parameter's name
    return render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login_submit(request: Request, username: str = Form(..., max_length=64),
                 password: str = Form(..., max_length=256), next: str = Form("/", max_length=2000)):  # noqa: A002
    store = request.app.state.store
    principal = check_password(store, username, password)
    if principal is None:
        store.audit(username, "login_failed", "web")
        return render(request, "login.html", None, status_code=401, next=_safe_next(next),
                      error=translator(language(request))("bad_login"))
    token = issue_token(store, principal.username, "session", dt.timedelta(hours=request.app.state.config.session_hours))
    store.audit(principal.username, "login", "web")
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session(request, response, token)
    return response


@router.get("/auth")
def token_login(request: Request, token: str = "", next: str = "/"):  # noqa: A002
    """Open the dashboard with an API token (the link `checkgate demo` prints)."""
    if principal_for_token(request.app.state.store, token, request.app.state.config.api_token) is None:
        return RedirectResponse("/login", status_code=303)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session(request, response, token)
    return response


@router.post("/logout")
def logout(request: Request):
    token = request.cookies.get(SESSION_COOKIE)
    if token and token != request.app.state.config.api_token:
        revoke_token(request.app.state.store, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- dashboard pages -------------------------------------------------------------------

def reason_labels(lang: str) -> dict[str, str]:
    try:
        from edge.reasons import MESSAGES
    except ImportError:
        return {}
    index = 1 if lang == "en" else 0
    return {code: texts[index] for code, texts in MESSAGES.items()}


def _local_midnight_utc(store) -> dt.datetime:
    midnight = dt.datetime.now(store.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(dt.UTC).replace(tzinfo=None)


def overview_data(store) -> dict:
    since = _local_midnight_utc(store)
    until = since + dt.timedelta(days=1)
    totals = store.totals(since=since, until=until)
    outcomes = ("pass", "deny", "retry", "manual")
    per_gate = []
    for gate_id in sorted(totals["per_gate"]):
        counts = totals["per_gate"][gate_id]
        per_gate.append({"gate_id": gate_id, **{o: counts.get(o, 0) for o in outcomes},
                         "total": sum(counts.values())})
    overall = {o: sum(g[o] for g in per_gate) for o in outcomes}
    overall["total"] = sum(g["total"] for g in per_gate)
    reasons = sorted(((outcome, reason, n) for (outcome, reason), n in totals["reasons"].items()),
                     key=lambda x: -x[2])
    hours = [since + dt.timedelta(hours=h) for h in range(24)]
    series = {o: [0] * 24 for o in outcomes}
    for r in store.stats(since=since, until=until, bucket="hour", by_gate=False, totals_only=True):
        if r.outcome not in series:
            continue
        idx = int((r.bucket - since).total_seconds() // 3600)
        if 0 <= idx < 24:
            series[r.outcome][idx] += r.count
    labels = [h.replace(tzinfo=dt.UTC).astimezone(store.tz).strftime("%H:00") for h in hours]
    fever_today = sum(n for (outcome, reason), n in totals["reasons"].items() if reason == "fever")
    return {"per_gate": per_gate, "overall": overall, "reasons": reasons, "fever_today": fever_today,
            "chart": {"labels": labels, "series": series}}


@router.get("/", name="overview_page")
def overview(request: Request):
    user = page_user(request)
    if user is None:
        return to_login(request)
    store = request.app.state.store
    lang = language(request)
    data = overview_data(store)
    # the live stream carries on from here, so nothing stored while the page renders is missed
    stream_after = store.last_event_id()
    alerts, _ = store.search_events(alert=True, since=_local_midnight_utc(store), limit=20)
    rows, _ = store.search_events(limit=15)
    if user.sees_personal:
        store.audit(user.username, "view_overview", "page")
    return render(request, "overview.html", user, data=data, labels=reason_labels(lang),
                  alerts=[event_public(r, user.sees_personal) for r in alerts],
                  events=[event_public(r, user.sees_personal) for r in rows],
                  dead_letters=store.dead_letter_count(), stream_after=stream_after)


@router.get("/gates")
def gates_page(request: Request):
    user = page_user(request)
    if user is None:
        return to_login(request)
    from server.api import gate_public
    from server.store import utcnow

    store, config = request.app.state.store, request.app.state.config
    now = utcnow()
    gates = [gate_public(g, now, config.gate_stale_after_s) for g in store.gates()]
    gaps = {g["gate_id"]: store.gaps(g["gate_id"], 5) for g in gates if g["missing"]}
    letters = [{"at": r.received_at.isoformat() + "Z", "topic": r.topic, "reason": r.reason}
               for r in store.dead_letters(20)]
    return render(request, "gates.html", user, gates=gates, gaps=gaps, letters=letters,
                  letters_total=store.dead_letter_count())


def _page_filters(request: Request, user: Principal, tz) -> tuple[dict, list[str]]:
    """Event-log filters from the query string; bad values are reported, never fatal."""
    import re

    q = request.query_params
    filters: dict = {}
    errors: list[str] = []
    gate = q.get("gate", "").strip()
    if gate:
        if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", gate):
            filters["gate"] = gate
        else:
            errors.append("gate")
    outcome = q.get("outcome", "")
    if outcome in ("pass", "deny", "retry", "manual"):
        filters["outcome"] = outcome
    reason = q.get("reason", "").strip()
    if reason:
        if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", reason):
            filters["reason"] = reason
        else:
            errors.append("reason")
    subject = q.get("subject", "").strip()
    if subject and user.sees_personal:
        filters["subject"] = subject[:64]
    for key in ("since", "until"):
        text = q.get(key, "").strip()
        if not text:
            continue
        try:
            value = dt.datetime.fromisoformat(text)
            if value.tzinfo is None:
                value = value.replace(tzinfo=tz)  # the form's datetime-local is the office's time
            filters[key] = value.astimezone(dt.UTC).replace(tzinfo=None)
        except (ValueError, OverflowError):
            errors.append(key)
    if q.get("alert") == "1":
        filters["alert"] = True
    return filters, errors


@router.get("/events")
def events_page(request: Request):
    user = page_user(request)
    if user is None:
        return to_login(request)
    store = request.app.state.store
    filters, errors = _page_filters(request, user, store.tz)
    cursor = request.query_params.get("cursor") or None
    try:
        rows, next_cursor = store.search_events(**filters, cursor=cursor, limit=100)
    except ValueError:
        rows, next_cursor = [], None
        errors.append("cursor")
    if user.sees_personal and rows:
        store.audit(user.username, "view_events", filters.get("gate"), {"page": True, "rows": len(rows)})
    keep = {k: v for k, v in request.query_params.items() if k not in ("cursor", "lang") and v}
    next_url = ("/events?" + urllib.parse.urlencode({**keep, "cursor": next_cursor})) if next_cursor else None
    csv_params = {k: v for k, v in keep.items() if k in ("gate", "outcome", "reason", "subject", "alert")}
    for key in ("since", "until"):
        if key in filters:
            csv_params[key] = filters[key].isoformat() + "Z"
    csv_url = "/api/v1/events.csv?" + urllib.parse.urlencode(csv_params)
    gate_ids = [g.gate_id for g in store.gates()]
    return render(request, "events.html", user, events=[event_public(r, user.sees_personal) for r in rows],
                  q=request.query_params, errors=errors, next_url=next_url, csv_url=csv_url, gate_ids=gate_ids,
                  labels=reason_labels(language(request)))


@router.get("/report")
def report_page(request: Request):
    user = page_user(request)
    if user is None:
        return to_login(request)
    from server.api import build_daily_report

    store = request.app.state.store
    date = None
    text = request.query_params.get("date", "")
    if text:
        try:
            date = dt.date.fromisoformat(text)
        except ValueError:
            date = None
    try:
        report = build_daily_report(store, date)
    except Exception:  # an out-of-range date: show today instead
        report = build_daily_report(store, None)
    return render(request, "report.html", user, report=report, labels=reason_labels(language(request)))


def _admin_page(request: Request) -> Principal | Response:
    user = page_user(request)
    if user is None:
        return to_login(request)
    if not user.is_admin:
        return render(request, "forbidden.html", user, status_code=403)
    return user


@router.get("/passes")
def passes_page(request: Request):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    control = request.app.state.control
    request.app.state.store.audit(user.username, "view_passes", "page")
    return render(request, "passes.html", user, passes=control.list_passes(200), msg=request.query_params.get("msg"),
                  can_sign=control.signer is not None)


def _back(path: str, msg: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?msg={urllib.parse.quote(msg[:300])}", status_code=303)


@router.post("/passes")
def passes_issue(request: Request, kind: str = Form(..., max_length=16), name: str = Form("", max_length=128),
                 id_number: str = Form("", max_length=64), phone: str = Form("", max_length=32),
                 zones: str = Form("", max_length=255), expires: str = Form("", max_length=32)):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    from server.control import ControlError

    try:
        issued = request.app.state.control.issue_pass(
            user.username, kind=kind, name=name or None, id_number=id_number or None, phone=phone or None,
            zones=[z.strip() for z in zones.split(",") if z.strip()], expires=expires or None)
    except ControlError as err:
        return _back("/passes", f"error: {err}")
    return _back("/passes", f"issued {issued['pass_id']} ({issued['subject']})")


@router.post("/passes/{pass_id}/revoke")
def passes_revoke(request: Request, pass_id: str, reason: str = Form("revoked by administrator", max_length=255)):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    try:
        request.app.state.control.revoke_pass(user.username, pass_id[:40], reason or "revoked")
    except KeyError:
        return _back("/passes", "error: unknown pass")
    return _back("/passes", f"revoked {pass_id[:40]} (publish the status list to reach the gates)")


@router.get("/passes/cards")
def pass_cards_page(request: Request, issued_on: str = ""):
    """Printable sheet of cards (credit-card size) for every active pass, or those issued on one day."""
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    import segno

    passes = [p for p in request.app.state.control.list_passes(500) if not p["revoked"] and p["payload"]]
    if issued_on:
        passes = [p for p in passes if (p["issued_at"] or "").startswith(issued_on[:10])]
    cards = [{"p": p, "qr_svg": segno.make_qr(p["payload"], error="m").svg_inline(scale=4, border=2)}
             for p in passes]
    request.app.state.store.audit(user.username, "print_passes", issued_on or "all", {"cards": len(cards)})
    return render(request, "cards.html", user, cards=cards)


@router.get("/passes/{pass_id}/card")
def pass_card_page(request: Request, pass_id: str):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    import segno

    found = request.app.state.control.get_pass(pass_id[:40])
    if found is None or not found["payload"]:
        return render(request, "forbidden.html", user, status_code=404)
    qr_svg = segno.make_qr(found["payload"], error="m").svg_inline(scale=5, border=2)
    request.app.state.store.audit(user.username, "print_pass", pass_id[:40])
    return render(request, "card.html", user, p=found, qr_svg=qr_svg)


async def _upload_text(request: Request) -> str | None:
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return None
    data = await upload.read(5 * 1024 * 1024 + 1)
    if len(data) > 5 * 1024 * 1024:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


@router.post("/passes/import")
async def passes_import(request: Request):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    from fastapi.concurrency import run_in_threadpool

    from server.control import ControlError

    text = await _upload_text(request)
    if text is None:
        return _back("/passes", "error: choose a UTF-8 CSV file (5 MB at most)")
    try:
        result = await run_in_threadpool(request.app.state.control.import_passes_csv, user.username, text)
    except ControlError as err:
        return _back("/passes", f"error: {err}")
    errors = "; ".join(f"line {e['line']}: {e['error']}" for e in result["errors"][:5])
    return _back("/passes", f"issued {result['issued']}" + (f"; {errors}" if errors else ""))


@router.get("/status")
def status_page(request: Request):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    control = request.app.state.control
    request.app.state.store.audit(user.username, "view_status", "page")
    return render(request, "status.html", user, entries=control.status_entries(), docs=control.documents(20),
                  msg=request.query_params.get("msg"), can_sign=control.signer is not None)


@router.post("/status/import")
async def status_import(request: Request):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    from server.control import ControlError

    text = await _upload_text(request)
    if text is None:
        return _back("/status", "error: choose a UTF-8 CSV file (5 MB at most)")
    try:
        n = request.app.state.control.import_status_csv(user.username, text)
    except ControlError as err:
        return _back("/status", f"error: {err}")
    return _back("/status", f"imported {n} entries (publish to send them to the gates)")


@router.post("/status/publish")
def status_publish(request: Request, what: str = Form("status", max_length=16)):
    user = _admin_page(request)
    if isinstance(user, Response):
        return user
    from server.control import ControlError

    control = request.app.state.control
    try:
        result = control.publish_trust(user.username) if what == "trust" else control.publish_status(user.username)
    except ControlError as err:
        return _back("/status", f"error: {err}")
    return _back("/status", f"published {result['doc_type']} version {result['version']}")
