"""What Streamlit's web server does not do by itself, added in front of it by ``serve.py`` (ASGI middleware).

* **Security headers** on every HTTP response: ``Content-Security-Policy: frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` (no other site may frame Scute and trick a volunteer into clicks),
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``. Streamlit has no option for them.
* **``/_stcore/metrics`` closed** (404): it tells anyone the server's sessions and memory, and Streamlit
  has no option to turn it off or put it behind sign-in.
* **Uploads only from signed-in sessions, and capped.** Streamlit accepts a file upload from any connected
  browser session, widget or not, and keeps every file in memory until the session ends (ten minutes
  after the tab closes). So an upload is refused (403) unless the session is signed in
  (:func:`ui.context.signed_in_user_id`), and refused (413) once the session keeps the files or bytes of
  ``ui.upload_limits``; signing out frees them.

* **The session cookie set by the server, ``HttpOnly``** (no page script can read it): the page hands
  ``/scute/session`` a one-time ticket (``ui.context.sync_cookie``) and the answer sets the cookie.

A reverse proxy in front should add the same headers and close the same path: see ``docs/deploy/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ui import context as ctx
from ui import upload_limits

log = logging.getLogger("scute.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
CLOSED_PATHS = ("/_stcore/metrics",)

_UPLOAD_PATH = re.compile(r"/_stcore/upload_file/(?P<session>[^/]+)/[^/]+$")


class HttpGuard:
    """ASGI middleware: headers on every response, closed paths, and the upload gate (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        max_session_files: int | None = None,
        max_session_bytes: int | None = None,
        kept_uploads: Callable[[str], tuple[int, int]] | None = None,
    ) -> None:
        self.app = app
        self.max_session_files = max_session_files
        self.max_session_bytes = max_session_bytes
        self.kept_uploads = kept_uploads or upload_limits.kept

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.rstrip("/").endswith(CLOSED_PATHS):
            await _plain(send, 404, "Not found.")
            return
        if path.rstrip("/").endswith("/" + ctx.COOKIE_PATH):
            await _session_cookie(scope, send)
            return
        refusal = self._upload_refusal(scope) if scope.get("method") in ("PUT", "POST") else None
        if refusal is not None:
            status, text = refusal
            await _plain(send, status, text)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _HEADER_NAMES]
                message["headers"] = headers + _ENCODED_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)

    def _upload_refusal(self, scope: Scope) -> tuple[int, str] | None:
        match = _UPLOAD_PATH.search(scope.get("path", ""))
        if match is None:
            return None
        session_id = match.group("session")
        if ctx.signed_in_user_id(session_id) is None:
            log.warning("Refused an upload from a browser session that is not signed in")
            return 403, "Please sign in before uploading photos."
        files, size = self.kept_uploads(session_id)
        reason = upload_limits.refusal(
            files, size, _content_length(scope), self.max_session_files, self.max_session_bytes
        )
        if reason is not None:
            log.warning("Refused an upload: the session keeps %d files, %d bytes", files, size)
            return 413, reason
        return None


_HEADER_NAMES = {name.lower().encode("latin-1") for name, _ in SECURITY_HEADERS}
_ENCODED_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS]


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + _ENCODED_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _session_cookie(scope: Scope, send: Send) -> None:
    """``POST`` with a one-time ticket sets the session cookie ``HttpOnly``; ``DELETE`` clears it.

    The ticket travels in a custom header, so a cross-site page cannot send it without a CORS preflight,
    which this path never grants.
    """
    method = scope.get("method")
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    if method == "DELETE":
        value, max_age = "", 0
    elif method == "POST":
        ticket = dict(scope.get("headers", [])).get(b"x-scute-ticket", b"").decode("latin-1")
        token = ctx.redeem_cookie_ticket(ticket) if ticket else None
        if token is None:
            await _plain(send, 403, "This sign-in link has expired; sign in again.")
            return
        value, max_age = token, ctx.SESSION_MAX_AGE_S
    else:
        await _plain(send, 405, "Method not allowed.")
        return
    cookie = f"{ctx.COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    headers = [(b"set-cookie", cookie.encode("latin-1")), (b"cache-control", b"no-store"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 204, "headers": headers + _ENCODED_HEADERS})
    await send({"type": "http.response.body", "body": b""})
