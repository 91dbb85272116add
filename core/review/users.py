"""Accounts, passwords and roles.

Passwords are stored only as argon2id hashes (argon2-cffi, salted per hash) and never logged or put in
an error message. Every function that changes data takes the acting user and checks the role with
:func:`acting_user`, which re-reads the account from the database: a user disabled a second ago (in
another process) is refused even if the caller still holds an old ``User`` object.

The first admin is created with ``actor=None`` (``python -m core users add --admin NAME``), which is
allowed only while the database has no account at all.
"""

from __future__ import annotations

import functools
import logging
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, func, select
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from core.errors import ScuteError
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.models import ROLES, User

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "AuthenticationError",
    "PermissionDenied",
    "User",
    "UserError",
    "acting_user",
    "authenticate",
    "change_password",
    "check_password_policy",
    "create_user",
    "disable_user",
    "enable_user",
    "get_user",
    "list_users",
    "normalize_username",
    "require_role",
    "set_role",
]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
"""Longer passwords are refused: hashing megabytes on every sign-in would be a cheap denial of service."""

_STRENGTH_CHECKED_CHARS = 72
"""zxcvbn's own limit: its estimate is quadratic in the length, and 72 characters are plenty to judge."""
_COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
"""The 30,000 most common leaked passwords, as shipped by zxcvbn."""

_USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters; stateless


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user name is unknown, so a miss costs as much as a wrong password."""
    return _HASHER.hash("scute: no such user")


class PermissionDenied(ScuteError):
    """The acting user's role (or disabled account) does not allow this action."""


class AuthenticationError(ScuteError):
    """Sign-in failed; the message never says whether the name or the password was wrong."""


class UserError(ScuteError):
    """An account cannot be created or changed as asked (name taken, weak password, last admin, ...)."""


def normalize_username(username: str) -> str:
    """Lower-case and check a user name: 1-64 of ``a-z 0-9 . _ @ -``, starting with a letter or digit."""
    if not isinstance(username, str):
        raise UserError(f"A user name must be text, not {type(username).__name__}.")
    name = username.strip().lower()
    if not _USERNAME_RE.fullmatch(name):
        raise UserError(
            f"{username.strip()[:64]!r} is not a valid user name: use 1 to 64 letters, digits, '.', '_', "
            "'@' or '-', starting with a letter or digit."
        )
    return name


def check_password_policy(password: object, username: str = "") -> None:
    """Raise :class:`UserError` (saying why) for a password that is easy to guess.

    At least :data:`MIN_PASSWORD_LENGTH` characters, not only spaces, not the user name (in any case or
    spacing), not one of the common leaked passwords, and not something zxcvbn (a maintained strength
    estimator) judges guessable in under a thousand tries, such as ``12345678`` or ``alice2024`` for alice.
    """
    if not isinstance(password, str):
        raise UserError("A password must be text.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters.")
    folded = "".join(password.split()).lower()
    if not folded:
        raise UserError("The password cannot be only spaces.")
    name = username.strip().lower() if isinstance(username, str) else ""
    if name and folded == name:
        raise UserError("The password cannot be the user name.")
    if len(name) >= 3 and name in folded and len(folded) - len(name) < 4:
        raise UserError("The password cannot be the user name with a few characters added.")
    if password.strip().lower() in _COMMON_PASSWORDS:
        raise UserError("That password is one of the most common ones and easy to guess; choose another.")
    if zxcvbn(password[:_STRENGTH_CHECKED_CHARS], user_inputs=[name] if name else [])["score"] == 0:
        raise UserError(
            "That password is too easy to guess (a common word, a keyboard pattern, a sequence or the user "
            "name with a few characters added); a few unrelated words make a good password."
        )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"{role!r} is not a role; choose one of {', '.join(ROLES)}.")
    return role


def require_role(user: User | None, *roles: str, action: str = "do this") -> User:
    """Return ``user`` if it is active and has one of ``roles``; else raise :class:`PermissionDenied`.

    Checks the object as given; use :func:`acting_user` to check the account as stored right now.
    """
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise ValueError(f"require_role needs roles from {ROLES}, got {roles!r}")
    if user is None:
        raise PermissionDenied(f"Please sign in to {action}.")
    if not user.active:
        raise PermissionDenied(f"The account {user.username!r} is disabled and cannot {action}.")
    if user.role not in roles:
        allowed = " or ".join(roles)
        raise PermissionDenied(
            f"{user.username!r} is a {user.role}; only a {allowed} may {action}. Ask an admin to change "
            "your role if you need to."
        )
    return user


def acting_user(session: Session, user: User | int | None, *roles: str, action: str = "do this") -> User:
    """The acting user re-read from the database (so a disable elsewhere counts), checked by role.

    ``roles`` empty means any active account. Returns the ``User`` attached to ``session``.
    """
    if user is None:
        raise PermissionDenied(f"Please sign in to {action}.")
    user_id = user if isinstance(user, int) else user.id
    fresh = session.get(User, user_id, populate_existing=True) if user_id is not None else None
    if fresh is None:
        raise PermissionDenied(f"Unknown account; please sign in again to {action}.")
    return require_role(fresh, *(roles or ROLES), action=action)


def get_user(session: Session, username: str) -> User:
    """The account called ``username`` (case-insensitive); raises :class:`UserError` when there is none."""
    name = normalize_username(username)
    user = session.exec(select(User).where(User.username == name)).first()
    if user is None:
        raise UserError(f"There is no user called {name!r}.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


def _count_users(session: Session) -> int:
    return session.exec(select(func.count()).select_from(User)).one()


def create_user(session: Session, username: str, password: str, role: str = "volunteer", *, actor: User | None) -> User:
    """Create an account. ``actor`` must be an admin, or None to create the very first account (an admin).

    Raises :class:`UserError` for a taken or invalid name or a weak password.
    """
    name = normalize_username(username)
    check_password_policy(password, name)
    _check_role(role)
    lock_for_write(session)
    if actor is None:  # two first admins at once: lock_for_write makes one wait and then see the other
        if _count_users(session) > 0:
            raise PermissionDenied("Only an admin may add users once the first account exists.")
        if role != "admin":
            raise UserError("The first account must be an admin, so that someone can manage the others.")
    else:
        actor = acting_user(session, actor, "admin", action="add users")
    if session.exec(select(User.id).where(User.username == name)).first() is not None:
        raise UserError(f"The user name {name!r} is already taken.")
    user = User(username=name, password_hash=_HASHER.hash(password), role=role, active=True)
    session.add(user)
    session.flush()
    record(session, actor, "user.create", user, before=None, after={"username": name, "role": role})
    log.info("Created %s account %r", role, name)
    return user


def authenticate(session: Session, username: str, password: str) -> User:
    """The account for these credentials, or :class:`AuthenticationError`.

    An unknown name, a wrong password and a disabled account all cost one argon2 verification, so the
    time taken does not tell which it was. A hash made with older parameters is upgraded on success.
    """
    failure = AuthenticationError("Unknown user name or wrong password.")
    try:
        name = normalize_username(username)
    except UserError:
        name = ""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        _verify(_dummy_hash(), "")
        raise failure
    user = session.exec(select(User).where(User.username == name)).first() if name else None
    ok = _verify(user.password_hash if user is not None else _dummy_hash(), password)
    if user is None or not ok:
        # An unknown name is not logged: people type their password into the name field by mistake.
        log.info("Failed sign-in for %s", repr(name) if user is not None else "an unknown user name")
        raise failure
    if not user.active:
        log.info("Refused sign-in of disabled account %r", name)
        raise AuthenticationError(f"The account {name!r} is disabled; ask an admin to enable it.")
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
        session.add(user)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _active_admins(session: Session) -> int:
    """Active admins, counted with their rows locked: two admins demoting each other cannot both succeed."""
    query = select(User.id).where(User.role == "admin", col(User.active).is_(True)).with_for_update(**ROW_LOCK)
    return len(session.exec(query).all())


def _target(session: Session, user: User | str) -> User:
    if isinstance(user, str):
        return get_user(session, user)
    fresh = session.get(User, user.id, populate_existing=True)
    if fresh is None:
        raise UserError(f"The account {user.username!r} no longer exists.")
    return fresh


def set_role(session: Session, actor: User, user: User | str, role: str) -> User:
    """Give ``user`` another role (admins only); the last active admin cannot be demoted."""
    lock_for_write(session)
    actor = acting_user(session, actor, "admin", action="change roles")
    _check_role(role)
    target = _target(session, user)
    before = target.role
    if before == role:
        return target
    if before == "admin" and target.active and _active_admins(session) <= 1:
        raise UserError(f"{target.username!r} is the last active admin; make someone else an admin first.")
    target.role = role
    session.add(target)
    session.flush()
    record(session, actor, "user.role", target, before={"role": before}, after={"role": role})
    log.info("%s changed the role of %r from %s to %s", actor.username, target.username, before, role)
    return target


def _set_active(session: Session, actor: User, user: User | str, active: bool) -> User:
    verb = "enable" if active else "disable"
    lock_for_write(session)
    actor = acting_user(session, actor, "admin", action=f"{verb} users")
    target = _target(session, user)
    if target.active == active:
        return target
    if not active and target.role == "admin" and _active_admins(session) <= 1:
        raise UserError(f"{target.username!r} is the last active admin and cannot be disabled.")
    target.active = active
    session.add(target)
    session.flush()
    record(session, actor, f"user.{verb}", target, before={"active": not active}, after={"active": active})
    log.info("%s %sd the account %r", actor.username, verb, target.username)
    return target


def disable_user(session: Session, actor: User, user: User | str) -> User:
    """Disable an account (admins only): it can no longer sign in, vote or act; its history stays."""
    return _set_active(session, actor, user, False)


def enable_user(session: Session, actor: User, user: User | str) -> User:
    return _set_active(session, actor, user, True)


def change_password(session: Session, actor: User, user: User | str, new_password: str) -> User:
    """Set a new password: for one's own account, or for anyone's by an admin."""
    lock_for_write(session)
    actor = acting_user(session, actor, action="change a password")
    target = _target(session, user)
    if target.id != actor.id:
        require_role(actor, "admin", action="change another user's password")
    check_password_policy(new_password, target.username)
    target.password_hash = _HASHER.hash(new_password)
    session.add(target)
    session.flush()
    record(session, actor, "user.password", target, before=None, after=None)
    return target
