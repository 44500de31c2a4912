"""The volunteer screen: a FastAPI app served by the gate daemon on the local network.

Routes (all local; every asset is in this package, nothing comes from the internet):
- `GET /` the page (server-rendered in the chosen language, then kept live by screen.js);
- `GET /api/stream` server-sent events: a snapshot, then events, health, prompts, timers;
- `GET /api/state`, `GET /api/locales/{lang}`, `GET /api/preview.jpg`, `GET /healthz`;
- `POST /api/session` sign in with a PIN, `DELETE /api/session` sign out;
- `POST /api/override`, `POST /api/recheck`, `DELETE /api/recheck/{id}` (signed-in volunteers only).
Every volunteer action is handed to the daemon, which records it as an event with the
operator id (through the outbox, so it reaches the server like any decision).
"""


import asyncio
import contextlib
import ipaddress
import json
import logging
import pathlib
import re
import threading
import time
from typing import Literal

from pydantic import Field, field_validator

from checkgate.config import StrictModel
from checkgate.csrf import CrossOriginProtection

logger = logging.getLogger(__name__)

HERE = pathlib.Path(__file__).parent
SESSION_COOKIE = "checkgate_screen_session"
LANG_COOKIE = "checkgate_screen_lang"
HEALTH_POLL_S = 2.0
KEEPALIVE_S = 15.0
MAX_STREAMS = 16  # open pages per gate; each holds a connection and a queue
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SignInRequest(StrictModel):
    operator: str = Field(min_length=1, max_length=64)
    pin: str = Field(min_length=1, max_length=64)


# six or more digits in a row look like an ID-card, phone or passport number: events must not carry them
LONG_NUMBER = re.compile(r"\d{6,}")


def _free_text(v: str) -> str:
    v = " ".join(v.split())
    if LONG_NUMBER.search(v):
        raise ValueError("no ID-card or phone numbers in notes (events carry pseudonymous ids only)")
    return v


class OverrideRequest(StrictModel):
    outcome: Literal["pass", "deny"]
    reason: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=200)

    _note = field_validator("note")(_free_text)


class RecheckRequest(StrictModel):
    label: str = Field(default="", max_length=40)
    minutes: float | None = Field(default=None, gt=0, le=240)

    _label = field_validator("label")(_free_text)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sse(message: dict) -> str:
    return f"data: {json.dumps(message, default=str, ensure_ascii=False)}\n\n"


def current_volunteers(daemon) -> dict[str, str]:
    """Volunteers configured on the gate, updated by the centre's signed config document.

    The document's body may carry `volunteers: {operator id: argon2 hash, or null to remove}`;
    it is applied only after the daemon has verified its signature.
    """
    volunteers = dict(daemon.config.screen.volunteers)
    doc = getattr(getattr(daemon, "credentials", None), "config_doc", None)
    pushed = getattr(doc, "body", None)
    pushed = pushed.get("volunteers") if isinstance(pushed, dict) else None
    if isinstance(pushed, dict):
        for operator, pin_hash in pushed.items():
            if not isinstance(operator, str) or not 0 < len(operator) <= 64:
                continue
            if pin_hash is None:
                volunteers.pop(operator, None)
            elif isinstance(pin_hash, str) and pin_hash.startswith("$argon2"):
                volunteers[operator] = pin_hash
    return volunteers


def create_app(daemon, *, should_exit=lambda: False):
    """The screen app for one daemon. `should_exit` ends the live streams at shutdown."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates
    from starlette.concurrency import run_in_threadpool

    from edge.screen.auth import VolunteerAuth, load_or_create_key
    from edge.screen.hub import ScreenHub
    from edge.screen.i18n import LANGUAGES, catalogue, normalise_language
    from edge.screen.preview import PreviewEncoder

    cfg = daemon.config.screen
    data_dir = pathlib.Path(getattr(daemon, "data_dir", "."))
    auth = VolunteerAuth(lambda: current_volunteers(daemon), load_or_create_key(data_dir / "screen-session.key"),
                         max_attempts=cfg.pin_max_attempts, lockout_s=cfg.pin_lockout_s,
                         shift_s=cfg.shift_hours * 3600)
    hub = ScreenHub(daemon, data_dir / "screen-timers.json")
    preview = PreviewEncoder(lambda: getattr(daemon, "camera", None), width=cfg.preview_width, fps=cfg.preview_fps)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    remeasure_s = float(getattr(getattr(daemon.config, "flow", None), "window_s", 10.0))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        hub.attach(asyncio.get_running_loop())
        poller = asyncio.create_task(poll_health())
        try:
            yield
        finally:
            poller.cancel()
            hub.detach()

    async def poll_health():
        """Uplink and queue figures change without a daemon notice; refresh them every few seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEALTH_POLL_S)
            try:
                notices = hub.health_notices
                hub.polled_health(await loop.run_in_executor(None, daemon.health), notices)
            except Exception as err:
                logger.warning("screen: cannot read gate health: %s", err)

    app = FastAPI(title="checkgate volunteer screen", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.hub, app.state.auth = hub, auth
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    # an override opens the gate: no other site's page may post one with the volunteer's cookie
    app.add_middleware(CrossOriginProtection)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")}
                    for e in exc.errors()]
        logger.warning("screen: rejected %s %s: %s", request.method, request.url.path, problems)
        return JSONResponse({"error": "bad_request", "problems": problems}, status_code=422)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    def language_of(request: Request) -> str:
        return normalise_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
                                  normalise_language(cfg.language))

    def operator_of(request: Request) -> str | None:
        return auth.operator_for(request.cookies.get(SESSION_COOKIE))

    def not_signed_in() -> JSONResponse:
        return JSONResponse({"error": "not_signed_in"}, status_code=401)

    def page_config(lang: str, operator: str | None) -> dict:
        return {"lang": lang, "languages": list(LANGUAGES), "gate_id": daemon.config.gate_id,
                "operators": auth.operators(), "operator": operator,
                "override_reasons": cfg.override_reasons, "recheck_minutes": cfg.recheck_minutes,
                "preview_fps": cfg.preview_fps, "remeasure_s": remeasure_s, "strings": catalogue(lang)}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        lang = language_of(request)
        operator = operator_of(request)
        response = templates.TemplateResponse(request, "index.html", {
            "lang": lang, "t": catalogue(lang), "gate_id": daemon.config.gate_id, "operator": operator,
            "config_json": json.dumps(page_config(lang, operator), ensure_ascii=False).replace("</", "<\\/")})
        if request.query_params.get("lang"):
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict")
        return response

    @app.get("/healthz")
    def healthz():
        return {"ok": True, "gate_id": daemon.config.gate_id}

    @app.get("/api/locales/{lang}")
    def locale(lang: str):
        if lang not in LANGUAGES:
            return JSONResponse({"error": "unknown_language", "languages": list(LANGUAGES)}, status_code=404)
        return catalogue(lang)

    @app.get("/api/operators")
    def operators():
        return {"operators": auth.operators()}

    # routes that touch the hub run on the event loop (the hub is not thread-safe); slow work
    # (argon2, the daemon's queue) runs in the thread pool
    @app.get("/api/state")
    async def state(request: Request):
        return {**hub.snapshot(), "operator": operator_of(request)}

    @app.get("/api/stream")
    async def stream(request: Request):
        if hub.subscriber_count() >= MAX_STREAMS:
            logger.warning("screen: refused a live stream from %s: %d already open", client_of(request), MAX_STREAMS)
            return JSONResponse({"error": "too_many_screens"}, status_code=503, headers={"Retry-After": "5"})
        q = hub.subscribe()

        async def messages():
            try:
                yield "retry: 1000\n\n"
                yield _sse({**hub.snapshot(), "operator": operator_of(request)})
                idle = 0.0
                while not (hub.closing or should_exit()):
                    try:
                        message = await asyncio.wait_for(q.get(), 0.5)
                    except TimeoutError:
                        idle += 0.5
                        if idle >= KEEPALIVE_S:
                            idle = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    if message is None:
                        break
                    idle = 0.0
                    yield _sse(message)
            finally:
                hub.unsubscribe(q)

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/preview.jpg")
    async def preview_jpg(request: Request):
        # faces are personal data: the kiosk on the gate itself sees the preview, other devices
        # on the network only once a volunteer has signed in on them
        allowed = cfg.preview_fps > 0 and (is_loopback(client_of(request)) or operator_of(request) is not None)
        jpeg = await asyncio.get_running_loop().run_in_executor(None, preview.latest_jpeg) if allowed else None
        if jpeg is None:  # no camera (yet): a placeholder, so the page never shows a broken image
            return Response((HERE / "static" / "no-camera.svg").read_bytes(), media_type="image/svg+xml",
                            headers={"Cache-Control": "no-store"})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/session")
    def sign_in(body: SignInRequest, request: Request):
        result = auth.sign_in(body.operator, body.pin, client_of(request))
        if not result.ok:
            status = 429 if result.reason == "locked" else 401
            headers = {"Retry-After": str(int(result.retry_after_s or 1))} if status == 429 else None
            return JSONResponse({"error": result.reason, "attempts_left": result.attempts_left,
                                 "retry_after_s": result.retry_after_s}, status_code=status, headers=headers)
        daemon.submit_operator_action({"type": "shift", "outcome": None, "reasons": ["sign_in"],
                                       "operator": body.operator, "note": None})
        response = JSONResponse({"operator": body.operator})
        response.set_cookie(SESSION_COOKIE, result.token, max_age=int(cfg.shift_hours * 3600), httponly=True,
                            samesite="strict")
        return response

    @app.delete("/api/session")
    def sign_out(request: Request):
        operator = operator_of(request)
        response = JSONResponse({"operator": None})
        response.delete_cookie(SESSION_COOKIE, samesite="strict")
        if operator is not None:
            auth.sign_out(operator)
            daemon.submit_operator_action({"type": "shift", "outcome": None, "reasons": ["sign_out"],
                                           "operator": operator, "note": None})
        return response

    @app.post("/api/override")
    def override(body: OverrideRequest, request: Request):
        operator = operator_of(request)
        if operator is None:
            return not_signed_in()
        if body.reason not in cfg.override_reasons.get(body.outcome, []):
            logger.warning("screen: override by %s refused: reason %r not in the %s list",
                           operator, body.reason, body.outcome)
            return JSONResponse({"error": "unknown_reason", "allowed": cfg.override_reasons.get(body.outcome, [])},
                                status_code=422)
        action = {"type": "override", "outcome": body.outcome, "reasons": [body.reason],
                  "operator": operator, "note": body.note or None}
        daemon.submit_operator_action(action)
        logger.info("override %s by %s (%s)", body.outcome, operator, body.reason)
        return JSONResponse({"recorded": True, "action": action}, status_code=202)

    @app.post("/api/recheck")
    async def recheck(body: RecheckRequest, request: Request):
        operator = operator_of(request)
        if operator is None:
            return not_signed_in()
        minutes = body.minutes or cfg.recheck_minutes
        label = " ".join(body.label.split())
        timer = hub.add_timer(minutes, label, operator)
        await run_in_threadpool(daemon.submit_operator_action, {
            "type": "recheck", "outcome": None, "reasons": ["sent_to_rest"], "operator": operator,
            "note": f"{minutes:g} min"})
        return JSONResponse(timer.as_dict(), status_code=201)

    @app.delete("/api/recheck/{timer_id}")
    async def recheck_done(timer_id: int, request: Request):
        if operator_of(request) is None:
            return not_signed_in()
        if not hub.remove_timer(timer_id):
            return JSONResponse({"error": "no_such_timer"}, status_code=404)
        return Response(status_code=204)

    return app


def start_screen_server(daemon, *, ready_timeout: float = 10.0):
    """Serve the screen on `config.screen.host:port` in a background thread; returns the uvicorn.Server.

    The caller stops it with `server.should_exit = True`. If the port cannot be bound the
    gate keeps screening without a page; the error is logged.
    """
    import uvicorn

    cfg = daemon.config.screen
    holder: dict = {}
    app = create_app(daemon, should_exit=lambda: holder["server"].should_exit)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the daemon owns SIGTERM/SIGINT (uvicorn < 0.29)
    holder["server"] = server

    def run():
        try:
            server.run()
        except SystemExit:  # uvicorn exits this way when the port is taken
            logger.error("volunteer screen could not listen on %s:%d", cfg.host, cfg.port)

    thread = threading.Thread(target=run, name="screen", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if server.started:
        logger.info("volunteer screen on http://%s:%d/", cfg.host, cfg.port)
    server.thread = thread
    return server
