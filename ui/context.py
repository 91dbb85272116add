"""The process's :class:`~core.service.app.App` and each browser session's sign-in state.

The app is created once per process with ``st.cache_resource``, keyed by the settings read from the
environment, so tests that point ``SCUTE_HOME`` elsewhere get their own. Pages call ``core.service`` with
it; gallery indexes follow the gallery's fingerprint there, so a decision or an import is seen by the
next search.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import ScuteError
from core.service import accounts
from core.service.accounts import SESSION_MAX_AGE_S, SessionError, User
from core.service.app import App
from core.settings import Settings
from ui import upload_limits

log = logging.getLogger("scute.app")
T = TypeVar("T")

TOKEN_KEY = "auth.token"
COOKIE_KEY = "auth.cookie_pending"
COOKIE_AT_KEY = "auth.cookie_written_at"
SIGNED_OUT_KEY = "auth.signed_out"
COOKIE_NAME = "scute_session"
COOKIE_REFRESH_S = 600
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.-]{1,512}")  # what core.review.sessions issues: safe inside a JS string
NOTICE_KEY = "auth.notice"
ROLE_LABELS = {"volunteer": "Volunteer", "reviewer": "Reviewer", "admin": "Admin"}


@st.cache_resource(show_spinner=False, max_entries=4)
def _app(settings: Settings) -> App:
    log.info("Opening the gallery in %s", settings.home)
    return App(settings)


def app() -> App:
    """This deployment (database migrated on first use; the models load when a page first needs them)."""
    return _app(Settings.from_env())


# --- which browser sessions are signed in (read by serve.py's upload gate) --------------------------

_signed_in_sessions: dict[str, int] = {}
_signed_in_lock = threading.Lock()


def _streamlit_session_id() -> str | None:
    run = get_script_run_ctx()
    return run.session_id if run is not None else None


def _mark_session(user_id: int | None) -> None:
    """Record whether this browser session is signed in, so uploads from signed-out sessions can be refused."""
    session_id = _streamlit_session_id()
    if session_id is None:
        return
    with _signed_in_lock:
        if user_id is None:
            _signed_in_sessions.pop(session_id, None)
        elif session_id not in _signed_in_sessions:  # a new entry: forget those of tabs closed meanwhile
            _forget_closed_sessions()
        if user_id is not None:
            _signed_in_sessions[session_id] = user_id


def _forget_closed_sessions() -> None:
    from streamlit.runtime import Runtime

    if Runtime.exists():
        runtime = Runtime.instance()
        for closed in [sid for sid in _signed_in_sessions if not runtime.is_active_session(sid)]:
            del _signed_in_sessions[closed]


def _release_uploads() -> None:
    """Drop what Streamlit keeps of this session's uploads now, not ten minutes after the tab is gone."""
    from streamlit.runtime import Runtime

    session_id = _streamlit_session_id()
    if session_id is not None and Runtime.exists():
        Runtime.instance().uploaded_file_mgr.remove_session_files(session_id)


def upload_notice() -> str | None:
    """Why this tab may upload nothing more (``ui.upload_limits``), in words; None while it may."""
    return upload_limits.notice(_streamlit_session_id())


def signed_in_user_id(session_id: str) -> int | None:
    """The account signed in on this Streamlit session as of its latest page run; None if signed out."""
    with _signed_in_lock:
        return _signed_in_sessions.get(session_id)


# --- signing in ------------------------------------------------------------------------------------


def client_address() -> str | None:
    """The browser's address for sign-in throttling; None when unknown (localhost, or a proxy on the same
    host that sends no ``X-Forwarded-For``), so that one guesser cannot make everybody wait."""
    try:
        return st.context.ip_address
    except Exception:  # no browser context (bare scripts)
        return None


def start_session(token: str) -> None:
    """Remember the signed token of a server-side session, never the ``User``: a disable, a password change
    or a sign-out elsewhere then counts.

    The token also goes into a cookie, so reloading the page (or a phone browser discarding the tab
    while the camera app is open) does not sign the volunteer out; signing out revokes it on the server,
    so a copy of that cookie is useless afterwards.
    """
    st.session_state[TOKEN_KEY] = token
    st.session_state[COOKIE_KEY] = ("set", token)


def sign_out(notice: str | None = None) -> None:
    """Revoke the session on the server, then forget the token and everything this session held (uploads,
    results), like a fresh visit."""
    token = st.session_state.get(TOKEN_KEY)
    if token is not None:
        try:
            accounts.sign_out(app(), token)
        except ScuteError:
            log.exception("Could not revoke a session on sign-out")
    _mark_session(None)
    _release_uploads()
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[SIGNED_OUT_KEY] = True  # the browser may still send the old cookie until reload
    st.session_state[COOKIE_KEY] = ("clear", "")
    if notice:
        st.session_state[NOTICE_KEY] = notice


def current_user() -> User | None:
    """The signed-in account, checked and re-read from the database on every run; None when signed out.

    The token is refreshed on each run, so a session ends after two hours without activity and after a
    day at most (``core.review.sessions``); a disabled account or a changed password ends it at once.
    """
    token = st.session_state.get(TOKEN_KEY)
    from_cookie = False
    if token is None and not st.session_state.get(SIGNED_OUT_KEY):
        token = _cookie_token()
        from_cookie = token is not None
    if token is None:
        _mark_session(None)
        return None
    try:
        user, refreshed = accounts.resume(app(), token)
    except SessionError as exc:
        sign_out(None if from_cookie else str(exc))
        return None
    st.session_state[TOKEN_KEY] = refreshed
    _mark_session(user.id)
    last = float(st.session_state.get(COOKIE_AT_KEY, 0.0))
    if time.time() - last > COOKIE_REFRESH_S:  # keep the cookie's idle expiry moving with the session
        st.session_state[COOKIE_KEY] = ("set", refreshed)
    return user


def _cookie_token() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # no browser context (bare scripts)
        return None
    return value if isinstance(value, str) and _TOKEN_RE.fullmatch(value) else None


def sync_cookie() -> None:
    """Write or clear the session cookie in the browser when the session changed (one tiny script).

    Behind ``serve.py`` the server sets the cookie, ``HttpOnly`` so that no page script can read it: the
    script here only hands the server a one-time ticket (:func:`redeem_cookie_ticket`), never the token.
    With a bare ``streamlit run app.py`` (development) the script writes the cookie itself.
    """
    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending is None:
        return
    action, token = pending
    setting = action == "set" and _TOKEN_RE.fullmatch(token) is not None
    if setting:
        st.session_state[COOKIE_AT_KEY] = time.time()
    if server_sets_cookie:
        url = "/" + "/".join(p for p in (str(st.get_option("server.baseUrlPath") or "").strip("/"), COOKIE_PATH) if p)
        request = (
            f"{{method: 'POST', credentials: 'same-origin', headers: {{'X-Scute-Ticket': '{_issue_ticket(token)}'}}}}"
            if setting
            else "{method: 'DELETE', credentials: 'same-origin'}"
        )
        script = f"fetch('{url}', {request});"
    else:
        value, max_age = (token, SESSION_MAX_AGE_S) if setting else ("", 0)
        secure = "(location.protocol === 'https:' ? '; Secure' : '')"
        script = f"document.cookie = '{COOKIE_NAME}={value}; path=/; max-age={max_age}; SameSite=Strict' + {secure};"
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True, width=1)


# --- cookies set by the server (serve.py) ------------------------------------------------------------

server_sets_cookie = False
"""Set by ``serve.py``, whose :class:`ui.http_guard.HttpGuard` answers :data:`COOKIE_PATH` and sets the cookie."""
COOKIE_PATH = "scute/session"
TICKET_TTL_S = 60.0
_tickets: dict[str, tuple[str, float]] = {}


def _issue_ticket(token: str) -> str:
    """A one-time, short-lived name for ``token`` that the page may see (the token itself it may not)."""
    ticket = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _signed_in_lock:
        for stale in [t for t, (_, at) in _tickets.items() if now - at > TICKET_TTL_S]:
            del _tickets[stale]
        _tickets[ticket] = (token, now)
    return ticket


def redeem_cookie_ticket(ticket: str) -> str | None:
    """The token a ticket stands for, once, within :data:`TICKET_TTL_S`; None for anything else."""
    with _signed_in_lock:
        entry = _tickets.pop(ticket, None)
    if entry is None or time.monotonic() - entry[1] > TICKET_TTL_S or not _TOKEN_RE.fullmatch(entry[0]):
        return None
    return entry[0]


def require(*roles: str) -> User:
    """The signed-in user if their role allows this page; otherwise explain and stop the page."""
    user = current_user()
    if user is None:
        st.warning("Please sign in first.")
        st.stop()
    if roles and user.role not in roles:
        allowed = " or ".join(ROLE_LABELS[r].lower() for r in roles)
        st.error(f"This page is for {allowed} accounts. Ask an admin if you need access.")
        st.stop()
    return user  # type: ignore[return-value]


# --- errors ----------------------------------------------------------------------------------------


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show a user's mistake as its own message and anything else as a plain apology, never a traceback.

    ``st.rerun``/``st.stop`` pass through (they are ``BaseException``s, not ``Exception``s).
    """
    try:
        yield
    except ScuteError as exc:
        st.error(str(exc), icon=":material/warning:")
    except Exception:
        log.exception("Unexpected error while %s", what)
        st.error(
            f"Something went wrong while {what}. Nothing was lost: try again, and if it keeps happening "
            "tell an admin (the details are in the server log).",
            icon=":material/error:",
        )


def attempt(what: str, action: Callable[[], T]) -> T | None:
    """Run ``action`` (a ``core.service`` call, one transaction); its result, or None after showing why it failed.

    Call ``st.rerun()`` only after this returns.
    """
    with guard(what):
        return action()
    return None
