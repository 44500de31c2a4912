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


def render(request: Request, name: str, user: Principal | None, status_code: int = 200, **context) -> HTMLResponse:
    lang = language(request)
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


@router.get("/")
def overview(request: Request):
    user = page_user(request)
    if user is None:
        return to_login(request)
    store = request.app.state.store
    rows, _ = store.search_events(limit=50)
    events = [event_public(r, user.sees_personal) for r in rows]
    return render(request, "overview.html", user, events=events)
