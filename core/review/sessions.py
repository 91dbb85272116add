"""Signed, expiring sign-in sessions: what the app keeps after a successful sign-in instead of a ``User``.

Why tokens: a ``User`` object kept in a browser session would stay valid forever, survive a password
change and keep a disabled account working until the server restarts. A token from :func:`issue_token`
holds only the user id, the sign-in time, an expiry and a fingerprint of the password hash, signed with
HMAC-SHA256 under a secret that never leaves the server. :func:`verify_token` checks the signature and
the expiry and then re-reads the account, so:

* a session ends after ``idle_s`` without :func:`refresh_token`, and ``max_age_s`` after sign-in at
  the latest, whatever refreshes happen;
* changing the password ends every session of that account (the fingerprint no longer matches);
* disabling the account or changing its role takes effect on the next request, not the next sign-in;
* a token from another server (another secret), an edited token or garbage is refused;
* signing out ends the token everywhere: it also names a server-side record (:class:`SignInSession`, by
  the SHA-256 of a random key), and :func:`sign_out` revokes that record, so a copied cookie is useless
  afterwards even though its signature still checks.

The secret is ``$SCUTE_SESSION_SECRET`` (at least 32 characters) or else the file
``$SCUTE_HOME/session.key`` (32 random bytes, mode 0600), created on first use; several app processes
on one data directory share it. Deleting that file signs everybody out.

:func:`sign_in` is throttled (``core.review.throttle``): growing waits after failed passwords per account
name and per client, refused with "try again in N s" rather than slept. "Sign out everywhere" is a
password change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, col, delete, or_, select

from core.io import write_once
from core.review import throttle
from core.review.users import AuthenticationError, authenticate, require_role
from core.store.models import SignInSession, User

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_IDLE_S",
    "DEFAULT_MAX_AGE_S",
    "SessionError",
    "TokenInfo",
    "issue_token",
    "load_secret",
    "open_session",
    "refresh_token",
    "sign_in",
    "sign_out",
    "token_info",
    "verify_token",
]

SECRET_FILE = "session.key"
MIN_SECRET_BYTES = 32
DEFAULT_IDLE_S = 2 * 3600
"""A session not refreshed for this long ends (the app refreshes on every page view)."""
DEFAULT_MAX_AGE_S = 24 * 3600
"""Sign in again at least this often, however active the session."""
CLOCK_SKEW_S = 60
"""Tokens issued this far in the future are still accepted (several servers, slightly different clocks)."""
_VERSION = "s2"  # s1 tokens (no server-side record) are refused: sign in again
_MAX_TOKEN_LENGTH = 512


class SessionError(AuthenticationError):
    """The session is missing, expired, revoked or forged: the user must sign in again."""


@dataclass(frozen=True)
class TokenInfo:
    """The signed content of a token (after the signature was checked)."""

    user_id: int
    signed_in_at: int  # epoch seconds of the password check; refreshes keep it
    expires_at: int  # epoch seconds
    fingerprint: str  # of the password hash at issue time
    key: str  # random; its SHA-256 names the server-side record that sign-out revokes


# --- the secret ----------------------------------------------------------------------------------------


def load_secret(home: Path, configured: bytes | None = None) -> bytes:
    """The signing secret: the configured one (``SCUTE_SESSION_SECRET``), else ``<home>/session.key``.

    The key file is created when missing.
    """
    if configured is not None:
        secret = configured
        if len(secret) < MIN_SECRET_BYTES:
            raise SessionError(
                f"SCUTE_SESSION_SECRET is too short to be safe: use at least {MIN_SECRET_BYTES} random characters."
            )
        return secret
    path = Path(home) / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = _create_secret(path)
    if len(secret) < MIN_SECRET_BYTES:
        raise SessionError(f"The session key {path} is damaged (too short); delete it to make a new one.")
    return secret


def _create_secret(path: Path) -> bytes:
    """Write 32 random bytes to ``path`` unless another process got there first; returns what is there."""
    if write_once(path, secrets.token_bytes(MIN_SECRET_BYTES), mode=0o600):
        log.info("Created a new session key at %s", path)
    return path.read_bytes()


# --- tokens --------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def _fingerprint(secret: bytes, password_hash: str) -> str:
    """Changes when the password does; reveals nothing about the hash without the secret."""
    return _b64(hmac.new(secret, b"password:" + password_hash.encode(), hashlib.sha256).digest()[:12])


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def _encode(secret: bytes, info: TokenInfo) -> str:
    payload = f"{info.user_id}.{info.signed_in_at}.{info.expires_at}.{info.fingerprint}.{info.key}"
    body = f"{_VERSION}.{_b64(payload.encode('ascii'))}"
    return f"{body}.{_sign(secret, body)}"


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _moment(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def issue_token(
    user: User,
    *,
    secret: bytes,
    key: str,
    idle_s: int = DEFAULT_IDLE_S,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    now: float | None = None,
    signed_in_at: int | None = None,
) -> str:
    """A token for ``user`` naming the server-side session ``key``, valid for ``idle_s`` seconds.

    Use :func:`open_session` (or :func:`sign_in`), which also stores the record; ``signed_in_at`` is for
    :func:`refresh_token`, which keeps the original sign-in time.
    """
    if user.id is None:
        raise ValueError("cannot issue a session for an unsaved user")
    if idle_s <= 0 or max_age_s <= 0:
        raise ValueError(f"idle_s and max_age_s must be positive, got {idle_s}, {max_age_s}")
    moment = _now(now)
    start = moment if signed_in_at is None else signed_in_at
    expires = min(moment + idle_s, start + max_age_s)
    return _encode(secret, TokenInfo(user.id, start, expires, _fingerprint(secret, user.password_hash), key))


def _decode(secret: bytes, token: object) -> TokenInfo:
    """Check the signature and parse; any defect is the same "please sign in again" to the user."""
    invalid = SessionError("Your session is not valid; please sign in again.")
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        raise invalid
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise invalid
    body = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, body), parts[2]):
        raise invalid
    try:
        user_id, signed_in_at, expires_at, fingerprint, key = _unb64(parts[1]).decode("ascii").split(".")
        return TokenInfo(int(user_id), int(signed_in_at), int(expires_at), fingerprint, key)
    except (ValueError, binascii.Error):  # pragma: no cover - only with a valid signature, i.e. our own bug
        raise invalid from None


def verify_token(
    session: Session,
    token: object,
    *roles: str,
    secret: bytes,
    now: float | None = None,
    action: str = "continue",
) -> User:
    """The signed-in user, re-read from the database; raises :class:`SessionError` or ``PermissionDenied``.

    ``roles`` (optional) must include the account's current role. Call this on every request that acts
    for a user, and pass the returned ``User`` to the ``core`` function.
    """
    info = _decode(secret, token)
    moment = _now(now)
    if moment >= info.expires_at:
        raise SessionError("Your session has expired; please sign in again.")
    if info.signed_in_at > moment + CLOCK_SKEW_S:
        raise SessionError("Your session is not valid; please sign in again.")
    user = session.get(User, info.user_id, populate_existing=True)
    if user is None:
        raise SessionError("Your account no longer exists; please sign in again.")
    record = _record(session, info.key)
    if record is None or record.user_id != user.id or record.revoked_at is not None:
        raise SessionError("You were signed out; please sign in again.")
    if not hmac.compare_digest(_fingerprint(secret, user.password_hash), info.fingerprint):
        raise SessionError("Your password was changed; please sign in again.")
    if not user.active:
        raise SessionError(f"The account {user.username!r} is disabled; ask an admin to enable it.")
    if roles:
        require_role(user, *roles, action=action)
    return user


def _record(session: Session, key: str) -> SignInSession | None:
    query = select(SignInSession).where(SignInSession.key_hash == _key_hash(key))
    return session.exec(query).first()


def open_session(
    session: Session,
    user: User,
    *,
    secret: bytes,
    idle_s: int = DEFAULT_IDLE_S,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    now: float | None = None,
) -> str:
    """Store a new server-side session for ``user`` (who has just proved their password) and return its token.

    Also forgets this account's ended sessions, so the table holds only live and revoked-but-unexpired ones.
    """
    if user.id is None:
        raise ValueError("cannot open a session for an unsaved user")
    moment = _now(now)
    key = _b64(secrets.token_bytes(16))
    stale = or_(col(SignInSession.expires_at) <= _moment(moment), col(SignInSession.revoked_at).is_not(None))
    session.exec(delete(SignInSession).where(SignInSession.user_id == user.id, stale))  # type: ignore[call-overload]
    session.add(
        SignInSession(
            key_hash=_key_hash(key),
            user_id=user.id,
            created_at=_moment(moment),
            expires_at=_moment(moment + max_age_s),
        )
    )
    session.flush()
    return issue_token(user, secret=secret, key=key, idle_s=idle_s, max_age_s=max_age_s, now=now)


def sign_out(session: Session, token: object, *, secret: bytes, now: float | None = None) -> bool:
    """Revoke the session this token names, so neither it nor any copy of it works again; True if it was live.

    A forged or garbage token revokes nothing (and says so by returning False).
    """
    try:
        info = _decode(secret, token)
    except SessionError:
        return False
    record = _record(session, info.key)
    if record is None or record.revoked_at is not None:
        return False
    record.revoked_at = _moment(_now(now))
    session.add(record)
    session.flush()
    log.info("Signed out user %d", record.user_id)
    return True


def token_info(token: str, *, secret: bytes) -> TokenInfo:
    """The signed content of a token (signature checked, expiry not): e.g. to show when it ends."""
    return _decode(secret, token)


def refresh_token(
    session: Session,
    token: object,
    *,
    secret: bytes,
    idle_s: int = DEFAULT_IDLE_S,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    now: float | None = None,
) -> str:
    """A new token for a still valid session: idle time restarts, the sign-in time (and so max age) stays."""
    user = verify_token(session, token, secret=secret, now=now)
    info = _decode(secret, token)
    return issue_token(
        user, secret=secret, key=info.key, idle_s=idle_s, max_age_s=max_age_s, now=now, signed_in_at=info.signed_in_at
    )


def sign_in(
    session: Session,
    username: str,
    password: str,
    *,
    secret: bytes,
    idle_s: int = DEFAULT_IDLE_S,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    now: float | None = None,
    client: str | None = None,
) -> tuple[User, str]:
    """Check the password (:func:`core.review.users.authenticate`) and start a session; returns (user, token).

    Throttled per account name and per ``client`` (the browser's address): while either must wait, the
    attempt is refused with :class:`~core.review.throttle.SignInThrottled` before any password is checked.
    A failure is committed at once (the caller's transaction then rolls back nothing of it). Call it inside
    ``session_scope`` so that a success commits: sign-in may upgrade an old password hash, and the token is
    bound to the hash as stored.
    """
    keys = throttle.keys_for(username, client)
    throttle.check(session, keys, now=now)
    with throttle.password_check_slot():
        throttle.check(session, keys, now=now)  # another attempt may have failed while this one waited
        try:
            user = authenticate(session, username, password)
        except AuthenticationError:
            session.rollback()
            throttle.record_failure(session, keys, now=now)
            session.commit()
            raise
    throttle.record_success(session, keys)
    token = open_session(session, user, secret=secret, idle_s=idle_s, max_age_s=max_age_s, now=now)
    log.info("Signed in %r", user.username)
    return user, token
