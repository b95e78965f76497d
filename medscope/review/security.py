"""What keeps the workspace to the person who started it: host check, access token, CSRF, browser headers.

- **Host**: a request must name the host the server was started on (or localhost), so a web page elsewhere
  cannot reach this server through DNS rebinding.
- **Token**: when one is set (required to bind anything but loopback), every request carries it: the
  ``?token=`` of the printed link once (then an HttpOnly cookie), or ``Authorization: Bearer``. Compared in
  constant time.
- **CSRF**: each browser gets a random session cookie (SameSite=Strict); a state-changing request must carry
  ``hmac(server secret, session)`` in its form field ``csrf`` or its ``X-CSRF-Token`` header, and an
  ``Origin``, when sent, must be this server.
- **Headers**: a Content-Security-Policy allowing only this server's scripts and media (no CDN, no inline
  script), no framing, no sniffing, no referrer to other sites.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from typing import Any

from starlette.datastructures import URL, FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "medscope_session"
TOKEN_COOKIE = "medscope_token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; media-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # "no-referrer" would make Chromium send "Origin: null" with form posts
}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class Guard:
    """ASGI middleware: host check, token, the CSRF session cookie and the headers (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str | None, host: str, secret: bytes | None = None) -> None:
        self.app = app
        self.token = token or None
        self.hosts = {*LOOPBACK, host.strip("[]")}
        self.secret = secret or secrets.token_bytes(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        hostname = (request.url.hostname or "").strip("[]")
        if hostname not in self.hosts:
            await _send(PlainTextResponse(f"unknown Host {hostname!r}: open the workspace by the address "
                                          "`medscope review` printed", status_code=400), scope, receive, send)
            return
        set_cookies: list[str] = []
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and _same(given, self.token):
                # the printed link's token becomes a cookie, and leaves the address bar (and the history)
                query = urllib.parse.urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(str(URL(scope=scope).replace(query=query)), status_code=303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                await _send(response, scope, receive, send)
                return
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not (_same(request.cookies.get(TOKEN_COOKIE, ""), self.token) or _same(bearer, self.token)):
                await _send(PlainTextResponse("this workspace needs its access token: open the link that "
                                              "`medscope review` printed (it ends in ?token=...)", status_code=401),
                            scope, receive, send)
                return
        session = request.cookies.get(SESSION_COOKIE, "")
        if len(session) < 32:
            session = secrets.token_urlsafe(32)
            set_cookies.append(f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict")
        scope.setdefault("state", {})["csrf"] = self.csrf_token(session)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
                headers += [(b"set-cookie", c.encode()) for c in set_cookies]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def csrf_token(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *((k.encode(), v.encode()) for k, v in HEADERS.items())]
        await send(message)

    await response(scope, receive, with_headers)


def csrf_problem(request: Request, form: FormData | None) -> str | None:
    """Why a state-changing request is refused, or None when its CSRF token and origin are right."""
    origin = request.headers.get("origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get("host", ""):
        return f"request from another site ({origin}) refused"
    sent = request.headers.get("x-csrf-token") or (str(form.get("csrf", "")) if form is not None else "")
    expected: Any = request.state.csrf if hasattr(request.state, "csrf") else None
    if not sent or not isinstance(expected, str) or not _same(sent, expected):
        return "missing or stale CSRF token: reload the page and try again"
    return None

