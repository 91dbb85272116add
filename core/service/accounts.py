"""Accounts as the app uses them: the first admin, signing in (throttled) with a server-side session whose
token is kept fresh, signing out (which revokes it), one's own password, and the admins' account management."""

from __future__ import annotations

from sqlmodel import func, select

from core.review import sessions, users
from core.review.sessions import DEFAULT_MAX_AGE_S as SESSION_MAX_AGE_S
from core.review.sessions import SessionError
from core.review.throttle import SignInThrottled
from core.service.app import App
from core.store.models import ROLES, User

__all__ = [
    "ROLES",
    "SESSION_MAX_AGE_S",
    "SessionError",
    "SignInThrottled",
    "User",
    "accounts",
    "add_account",
    "change_own_password",
    "create_first_admin",
    "has_accounts",
    "open_session",
    "resume",
    "set_active",
    "set_password",
    "set_role",
    "sign_in",
    "sign_out",
]


def has_accounts(app: App) -> bool:
    with app.session() as session:
        return session.exec(select(func.count()).select_from(User)).one() > 0


def create_first_admin(app: App, username: str, password: str) -> User:
    """Only while the gallery has no account at all (otherwise refused)."""
    with app.session() as session:
        return users.create_user(session, username, password, "admin", actor=None)


def sign_in(app: App, username: str, password: str, client: str | None = None) -> tuple[User, str]:
    """The account and a new session token; ``client`` (the browser's address) is throttled with the name.

    Raises ``AuthenticationError``, or ``SignInThrottled`` ("try again in N s") without checking the password.
    """
    with app.session() as session:
        return sessions.sign_in(session, username, password, secret=app.secret, client=client)


def open_session(app: App, user: User) -> str:
    """A new server-side session for a user who has just proved who they are (first admin, new password)."""
    with app.session() as session:
        return sessions.open_session(session, user, secret=app.secret)


def sign_out(app: App, token: str | None) -> None:
    """Revoke the session, so the token and every copy of it (a cookie) stop working on every server."""
    if token is None:
        return
    with app.session() as session:
        sessions.sign_out(session, token, secret=app.secret)


def resume(app: App, token: str) -> tuple[User, str]:
    """The user a token stands for, re-read from the database, and a fresh token; raises ``SessionError``."""
    with app.session() as session:
        user = sessions.verify_token(session, token, secret=app.secret)
        return user, sessions.refresh_token(session, token, secret=app.secret)


def change_own_password(app: App, user: User, current: str, new: str) -> User:
    """The current password is checked first; other sessions of the account end."""
    with app.session() as session:
        users.authenticate(session, user.username, current)
        return users.change_password(session, user, user, new)


def accounts(app: App) -> list[User]:
    with app.session() as session:
        return users.list_users(session)


def add_account(app: App, actor: User, username: str, password: str, role: str) -> User:
    with app.session() as session:
        return users.create_user(session, username, password, role, actor=actor)


def set_role(app: App, actor: User, username: str, role: str) -> User:
    with app.session() as session:
        return users.set_role(session, actor, username, role)


def set_active(app: App, actor: User, username: str, active: bool) -> User:
    with app.session() as session:
        if active:
            return users.enable_user(session, actor, username)
        return users.disable_user(session, actor, username)


def set_password(app: App, actor: User, username: str, password: str) -> User:
    with app.session() as session:
        return users.change_password(session, actor, username, password)
