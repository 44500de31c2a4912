"""Cross-site request forgery protection for the dashboard and the API.

The session cookie is SameSite=Strict already; this is the second wall, for old
browsers and for a sibling site on the same domain. Browsers say where a request
comes from: `Sec-Fetch-Site` (every current browser) or, failing that, `Origin`.
A state-changing request whose browser says it comes from another origin is
refused. Requests carrying neither header do not come from a browser (scripts
with an API token, curl), and a cookie-less script cannot ride a user's session.
No token has to be threaded through forms, so it also covers every API route
that a session cookie can reach.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def cross_origin_reason(method: str, headers: Headers, trusted_origins: frozenset[str]) -> str | None:
    """Why a request must be refused as cross-origin, or None if it may go on (pure)."""
    if method.upper() in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() in trusted_origins:
        return None
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):  # "none": typed in the address bar or a bookmark
            return None
        return f"Sec-Fetch-Site is {site!r}"
    if origin is None:
        return None  # not a browser
    host = headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        return f"Origin {origin!r} is not this server ({host!r})"
    return None


class CrossOriginProtection:
    """ASGI middleware refusing state-changing requests a browser sent from another origin."""

    def __init__(self, app: ASGIApp, trusted_origins: list[str] | tuple[str, ...] = ()):
        self.app = app
        self.trusted_origins = frozenset(o.rstrip("/").lower() for o in trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = cross_origin_reason(scope["method"], Headers(scope=scope), self.trusted_origins)
            if reason is not None:
                logger.warning("refused a cross-origin %s %s: %s", scope["method"], scope.get("path"), reason)
                response = JSONResponse({"detail": f"cross-origin request refused: {reason}"}, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
