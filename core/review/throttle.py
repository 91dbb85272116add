"""Sign-in throttling: growing waits after failed passwords, per account name and per client.

Why in the database: the counts must hold across app processes and restarts, or a guesser simply opens
more tabs on another worker. Why a refusal ("try again in 8 s") and never a sleep: a sleeping Streamlit
script thread would hold the server for everyone, and a refused attempt costs one query, not an argon2
verification (about half a second of both cores). Why a process-wide slot for the verification itself: many
anonymous tabs signing in at once would otherwise keep every core hashing and slow signed-in volunteers;
with the slot (one check at a time, each followed by an equal rest), sign-ins wait their turn for at most
:data:`SLOT_WAIT_S` and are then told to try again.

The account key is the normalised name whether or not such an account exists, so the refusal tells an
attacker nothing about which names are real. A success clears the account's count, never the client's: a
guesser with one valid account could otherwise reset their own count between guesses at other accounts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlmodel import Session, col, delete, select

from core.review.users import AuthenticationError, acting_user, get_user
from core.store.audit import lock_for_write, record
from core.store.models import SignInThrottle, User

log = logging.getLogger(__name__)

__all__ = [
    "FORGET_AFTER_S",
    "FREE_FAILURES_PER_ACCOUNT",
    "FREE_FAILURES_PER_CLIENT",
    "MAX_WAIT_S",
    "SignInThrottled",
    "check",
    "clear_account",
    "keys_for",
    "password_check_slot",
    "record_failure",
    "record_success",
    "wait_after",
]

FREE_FAILURES_PER_ACCOUNT = 5
"""Typing mistakes allowed on one account name before the first wait."""
FREE_FAILURES_PER_CLIENT = 20
"""Failures allowed from one client address (several volunteers may share a boat's connection)."""
FIRST_WAIT_S = 2.0
"""The wait after the first failure beyond the free ones; it doubles with each further failure."""
MAX_WAIT_S = 15 * 60.0
"""The longest wait: a guesser gets about 100 tries a day per account, a volunteer is never locked out for long."""
FORGET_AFTER_S = 3600.0
"""A count with no failure for this long starts again from zero."""
SLOT_WAIT_S = 0.5
"""How long a sign-in waits for the process's password-check slot before it is told to try again."""
_MAX_KEY_LENGTH = 200

REST_PER_CHECK = 1.0
"""After each password check the next one waits this many times as long as the check took."""
_BUSY = "Many people are signing in right now; try again in 2 s."

_PASSWORD_CHECK = threading.BoundedSemaphore(1)
_slot = {"next_start": 0.0}  # monotonic time before which no password check starts


class SignInThrottled(AuthenticationError):
    """Too many failed sign-ins for this name or from this client (or too many at once): try again later."""

    def __init__(self, wait_s: float, message: str | None = None) -> None:
        self.wait_s = max(1, math.ceil(wait_s))
        super().__init__(
            message or f"Too many failed sign-ins for this name or from this connection; try again in {self.wait_s} s."
        )


def keys_for(username: object, client: str | None) -> list[str]:
    """The throttle keys of one attempt: the account name as typed (normalised loosely) and the client."""
    name = username.strip().lower() if isinstance(username, str) else ""
    keys = [f"account:{name}"[:_MAX_KEY_LENGTH]]
    if client:
        keys.append(f"client:{client}"[:_MAX_KEY_LENGTH])
    return keys


def _free_failures(key: str) -> int:
    return FREE_FAILURES_PER_CLIENT if key.startswith("client:") else FREE_FAILURES_PER_ACCOUNT


def wait_after(failures: int, free: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures of a key that allows ``free`` without waiting."""
    beyond = failures - free
    if beyond <= 0:
        return 0.0
    return min(MAX_WAIT_S, FIRST_WAIT_S * 2.0 ** min(beyond - 1, 30))


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def check(session: Session, keys: Sequence[str], *, now: float | None = None) -> None:
    """Raise :class:`SignInThrottled` while any of ``keys`` must still wait; cheap, no password is checked."""
    moment = _now(now)
    rows = session.exec(select(SignInThrottle).where(col(SignInThrottle.key).in_(list(keys)))).all()
    wait = max((row.blocked_until - moment for row in rows), default=0.0)
    if wait > 0:
        raise SignInThrottled(wait)


def record_failure(session: Session, keys: Sequence[str], *, now: float | None = None) -> float:
    """Count a failed password for each key and start its wait; returns the longest wait now in force.

    Takes the write lock, so two processes counting the same key at once do not lose a failure. The
    caller commits (the attempt itself is about to fail, so commit before raising).
    """
    moment = _now(now)
    lock_for_write(session)
    longest = 0.0
    for key in keys:
        row = session.get(SignInThrottle, key, populate_existing=True)
        if row is None:
            row = SignInThrottle(key=key)
        elif moment - row.last_failure_at > FORGET_AFTER_S:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = moment
        wait = wait_after(row.failures, _free_failures(key))
        row.blocked_until = moment + wait
        longest = max(longest, wait)
        session.add(row)
        if wait:
            log.warning("Sign-in throttled for %s after %d failures: %.0f s", key.split(":")[0], row.failures, wait)
    session.flush()
    return longest


def record_success(session: Session, keys: Sequence[str]) -> None:
    """Clear the account's count after a correct password (the client's count stays; see the module doc)."""
    accounts = [key for key in keys if key.startswith("account:")]
    if accounts:
        session.exec(delete(SignInThrottle).where(col(SignInThrottle.key).in_(accounts)))  # type: ignore[call-overload]


def clear_account(session: Session, actor: User, username: str) -> bool:
    """Let an account sign in again at once (admins only, audited): its failed sign-ins are forgotten.

    For a volunteer whose name a stranger kept failing on; returns whether there was anything to forget.
    """
    lock_for_write(session)
    actor = acting_user(session, actor, "admin", action="clear sign-in waits")
    target = get_user(session, username)
    row = session.get(SignInThrottle, f"account:{target.username}")
    if row is not None:
        session.delete(row)
    record(session, actor, "user.unlock", target, before={"failures": row.failures if row else 0}, after=None)
    session.flush()
    return row is not None


@contextmanager
def password_check_slot(wait_s: float = SLOT_WAIT_S) -> Iterator[None]:
    """One password verification at a time in this process, each followed by a rest as long as it took.

    So sign-ins use at most half of the time of the cores argon2 runs on, however many tabs try at once;
    one that cannot start within ``wait_s`` gets :class:`SignInThrottled` (the wait here is that short).
    """
    deadline = time.monotonic() + wait_s
    if not _PASSWORD_CHECK.acquire(timeout=wait_s):
        raise SignInThrottled(2, _BUSY)
    try:
        rest = _slot["next_start"] - time.monotonic()
        if rest > 0:
            if time.monotonic() + rest > deadline:
                raise SignInThrottled(2, _BUSY)
            time.sleep(rest)
        started = time.monotonic()
        try:
            yield
        finally:
            finished = time.monotonic()
            _slot["next_start"] = finished + (finished - started) * REST_PER_CHECK
    finally:
        _PASSWORD_CHECK.release()
