"""core.users: accounts, argon2 password hashes, sign-in, roles, admin-only management; ``users`` CLI.

Runs on SQLite files, and also on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set (wiped first).
Most tests use argon2 at its cheapest settings; ``test_default_hash_is_argon2id`` checks the real ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

import core.review.users as users
from core import cli
from core.cli import accounts as cli_accounts
from core.errors import ScuteError
from core.review.users import (
    AuthenticationError,
    PermissionDenied,
    UserError,
    acting_user,
    authenticate,
    change_password,
    create_user,
    disable_user,
    enable_user,
    get_user,
    list_users,
    require_role,
    set_role,
)
from core.store.db import session_scope
from core.store.models import AuditLog, User

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "_HASHER", CHEAP)


@pytest.fixture
def admin_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        return create_user(session, "Root", PASSWORD, "admin", actor=None).id  # type: ignore[return-value]


def _get(engine: Engine, name: str) -> User:
    with session_scope(engine) as session:
        return get_user(session, name)


# --- creating accounts ---------------------------------------------------------------------------------


def test_two_first_admins_at_once_make_one_account(engine: Engine) -> None:
    """Four people open a fresh app together: one becomes the first admin, the others are refused."""
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def first_admin(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            with session_scope(engine) as session:
                create_user(session, f"admin{i}", PASSWORD, "admin", actor=None)
            outcomes.append("created")
        except PermissionDenied:
            outcomes.append("refused")

    threads = [threading.Thread(target=first_admin, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
    with session_scope(engine) as session:
        assert len(list_users(session)) == 1


def test_first_account_is_an_admin_made_without_actor(engine: Engine) -> None:
    with pytest.raises(UserError, match="first account must be an admin"), session_scope(engine) as session:
        create_user(session, "alice", PASSWORD, "volunteer", actor=None)
    with session_scope(engine) as session:
        root = create_user(session, "  Root ", PASSWORD, "admin", actor=None)
        assert (root.username, root.role, root.active) == ("root", "admin", True)
        assert root.created_at.tzinfo is not None
    with (
        pytest.raises(PermissionDenied, match="Only an admin may add users"),
        session_scope(engine) as session,
    ):
        create_user(session, "mallory", PASSWORD, "admin", actor=None)
    with session_scope(engine) as session:
        assert [u.username for u in list_users(session)] == ["root"]
        entry = session.exec(select(AuditLog)).one()
        assert (entry.action, entry.user_id, entry.target_type, entry.target_id) == (
            "user.create",
            None,
            "user",
            root.id,
        )
        assert entry.payload == {"before": None, "after": {"username": "root", "role": "admin"}}


def test_admin_adds_users_volunteer_cannot(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        admin = session.get(User, admin_id)
        alice = create_user(session, "alice", PASSWORD, actor=admin)
        create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        assert alice.role == "volunteer"
    with (
        pytest.raises(PermissionDenied, match="'alice' is a volunteer; only a admin may add users"),
        session_scope(engine) as session,
    ):
        create_user(session, "bob", PASSWORD, actor=get_user(session, "alice"))
    with pytest.raises(UserError, match="already taken"), session_scope(engine) as session:
        create_user(session, "ALICE", PASSWORD, actor=session.get(User, admin_id))
    with session_scope(engine) as session:
        assert [(u.username, u.role) for u in list_users(session)] == [
            ("alice", "volunteer"),
            ("carol", "reviewer"),
            ("root", "admin"),
        ]


@pytest.mark.parametrize(
    ("name", "password", "role", "match"),
    [
        ("", PASSWORD, "volunteer", "not a valid user name"),
        ("has space", PASSWORD, "volunteer", "not a valid user name"),
        ("-dash", PASSWORD, "volunteer", "not a valid user name"),
        ("x" * 65, PASSWORD, "volunteer", "not a valid user name"),
        ("bob", "short", "volunteer", "too short"),
        ("bob", "x" * 1025, "volunteer", "too long"),
        ("bob", PASSWORD, "boss", "not a role"),
    ],
)
def test_invalid_accounts_are_refused(engine: Engine, admin_id: int, name, password, role, match) -> None:
    with pytest.raises(UserError, match=match), session_scope(engine) as session:
        create_user(session, name, password, role, actor=session.get(User, admin_id))
    with session_scope(engine) as session:
        assert len(list_users(session)) == 1


def test_username_unique_in_database(engine: Engine, admin_id: int) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(User(username="root", password_hash="x"))
        session.flush()


# --- passwords and sign-in -------------------------------------------------------------------------------


def test_password_is_stored_as_salted_argon2_hash(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        admin = session.get(User, admin_id)
        create_user(session, "alice", PASSWORD, actor=admin)
        create_user(session, "bob", PASSWORD, actor=admin)
    alice, bob = _get(engine, "alice"), _get(engine, "bob")
    assert alice.password_hash.startswith("$argon2id$")
    assert PASSWORD not in alice.password_hash
    assert alice.password_hash != bob.password_hash  # same password, different salt
    assert "password_hash" not in repr(alice)


def test_default_hash_is_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    hashed = users._HASHER.hash(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert users._HASHER.verify(hashed, PASSWORD)


def test_authenticate(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        user = authenticate(session, " ROOT", PASSWORD)
        assert user.id == admin_id
    for name, password in (
        ("root", "wrong password"),
        ("nobody", PASSWORD),
        ("not valid!", PASSWORD),
        ("root", ""),
    ):
        with pytest.raises(AuthenticationError) as failed, session_scope(engine) as session:
            authenticate(session, name, password)
        assert str(failed.value) == "Unknown user name or wrong password."  # never says which


def test_unknown_user_costs_one_hash_verification(engine: Engine, admin_id: int, monkeypatch) -> None:
    calls: list[str] = []
    real = users._verify

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash[:9])
        return real(password_hash, password)

    monkeypatch.setattr(users, "_verify", counting)
    for name in ("nobody", "root", "bad name!"):
        with pytest.raises(AuthenticationError), session_scope(engine) as session:
            authenticate(session, name, "wrong password")
    assert calls == ["$argon2id"] * 3


def test_disabled_user_cannot_sign_in_or_act(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        create_user(session, "alice", PASSWORD, "reviewer", actor=session.get(User, admin_id))
    stale = _get(engine, "alice")
    with session_scope(engine) as session:
        disable_user(session, session.get(User, admin_id), "alice")
    assert _get(engine, "alice").active is False
    with pytest.raises(AuthenticationError, match="'alice' is disabled"), session_scope(engine) as session:
        authenticate(session, "alice", PASSWORD)
    with (
        pytest.raises(AuthenticationError, match="Unknown user name or wrong password"),
        session_scope(engine) as session,
    ):
        authenticate(session, "alice", "wrong password")  # no hint about the account without the password
    with (
        pytest.raises(PermissionDenied, match="'alice' is disabled and cannot vote"),
        session_scope(engine) as s,
    ):
        acting_user(s, stale, action="vote")  # the stale object still says active; the database does not
    with session_scope(engine) as session:
        enable_user(session, session.get(User, admin_id), "alice")
        assert authenticate(session, "alice", PASSWORD).username == "alice"


def test_outdated_hash_is_upgraded_on_sign_in(engine: Engine, admin_id: int) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, salt_len=8).hash(PASSWORD)
    with session_scope(engine) as session:
        session.get(User, admin_id).password_hash = weak
    with session_scope(engine) as session:
        authenticate(session, "root", PASSWORD)
    upgraded = _get(engine, "root").password_hash
    assert upgraded != weak and not users._HASHER.check_needs_rehash(upgraded)


def test_change_password(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        admin = session.get(User, admin_id)
        create_user(session, "alice", PASSWORD, actor=admin)
        create_user(session, "bob", PASSWORD, actor=admin)
    with session_scope(engine) as session:
        change_password(session, get_user(session, "alice"), "alice", "a new long password")
        with pytest.raises(PermissionDenied, match="change another user's password"):
            change_password(session, get_user(session, "alice"), "bob", "a new long password")
    with session_scope(engine) as session:
        change_password(session, session.get(User, admin_id), "bob", "reset by the admin")
    with session_scope(engine) as session:
        assert authenticate(session, "alice", "a new long password").username == "alice"
        assert authenticate(session, "bob", "reset by the admin").username == "bob"
        entries = session.exec(select(AuditLog).where(AuditLog.action == "user.password")).all()
        assert [e.payload for e in entries] == [{"before": None, "after": None}] * 2  # no secret in the log


def test_passwords_never_logged(engine: Engine, admin_id: int, caplog) -> None:
    secret = "s3cret-do-not-log"
    caplog.set_level(logging.DEBUG)
    with session_scope(engine) as session:
        create_user(session, "alice", secret, actor=session.get(User, admin_id))
        authenticate(session, "alice", secret)
        for attempt in (secret + "x", secret):
            with contextlib.suppress(AuthenticationError):
                authenticate(session, "nobody", attempt)
    with session_scope(engine) as session:
        payloads = [str(e.payload) for e in session.exec(select(AuditLog)).all()]
    assert caplog.records  # something was logged
    assert secret not in caplog.text
    assert not any(secret in p for p in payloads)


# --- roles -----------------------------------------------------------------------------------------------


def test_set_role_and_last_admin(engine: Engine, admin_id: int) -> None:
    with session_scope(engine) as session:
        admin = session.get(User, admin_id)
        create_user(session, "alice", PASSWORD, actor=admin)
        with pytest.raises(UserError, match="last active admin"):
            set_role(session, admin, "root", "reviewer")
        with pytest.raises(UserError, match="last active admin and cannot be disabled"):
            disable_user(session, admin, "root")
        set_role(session, admin, "alice", "admin")
        set_role(session, admin, "root", "reviewer")  # alice is an admin now
    with session_scope(engine) as session:
        assert [(u.username, u.role) for u in list_users(session)] == [
            ("alice", "admin"),
            ("root", "reviewer"),
        ]
        with pytest.raises(PermissionDenied, match="'root' is a reviewer; only a admin may change roles"):
            set_role(session, session.get(User, admin_id), "alice", "volunteer")
        changes = session.exec(select(AuditLog).where(AuditLog.action == "user.role")).all()
        assert [(e.payload["before"], e.payload["after"]) for e in changes] == [
            ({"role": "volunteer"}, {"role": "admin"}),
            ({"role": "admin"}, {"role": "reviewer"}),
        ]


def test_require_role() -> None:
    reviewer = User(username="carol", password_hash="x", role="reviewer", active=True)
    assert require_role(reviewer, "reviewer", "admin") is reviewer
    with pytest.raises(PermissionDenied, match="'carol' is a reviewer; only a admin may retire individuals"):
        require_role(reviewer, "admin", action="retire individuals")
    with pytest.raises(PermissionDenied, match="Please sign in"):
        require_role(None, "volunteer")
    reviewer.active = False
    with pytest.raises(PermissionDenied, match="disabled"):
        require_role(reviewer, "reviewer")
    with pytest.raises(ValueError, match="roles"):
        require_role(reviewer, "boss")
    assert issubclass(PermissionDenied, ScuteError)


# --- command line ----------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """The real command line (``python -m core``)."""
    return cli.main(argv)


def test_cli_users(db_url: str, engine: Engine, monkeypatch, capsys) -> None:
    db = ["--db", db_url]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(["users", "add", "--admin", "Root", "--password-stdin", *db]) == 0
    assert capsys.readouterr().out == "Added admin 'root'.\n"

    prompts = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(cli_accounts.getpass, "getpass", lambda prompt: next(prompts))
    assert _cli(["users", "add", "alice", "--role", "reviewer", "--user", "root", *db]) == 0
    assert capsys.readouterr().out == "Added reviewer 'alice'.\n"

    prompts = iter([PASSWORD, "something else"])
    assert _cli(["users", "add", "bob", "--user", "root", *db]) == 2
    assert capsys.readouterr().err == "error: The passwords do not match; nothing was changed.\n"

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(["users", "add", "bob", "--password-stdin", *db]) == 2  # not the first account: needs --user
    assert capsys.readouterr().err == "error: Only an admin may add users once the first account exists.\n"

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(["users", "add", "bob", "--password-stdin", "--user", "alice", *db]) == 2
    assert "only a admin may add users" in capsys.readouterr().err

    assert _cli(["users", "role", "alice", "admin", "--user", "root", *db]) == 0
    assert _cli(["users", "disable", "alice", "--user", "root", *db]) == 0
    assert capsys.readouterr().out == "'alice' is now a admin.\nDisabled 'alice'.\n"
    assert _cli(["users", "list", *db]) == 0
    listing = [line.split()[:3] for line in capsys.readouterr().out.splitlines()]
    assert listing == [["user", "role", "state"], ["alice", "admin", "disabled"], ["root", "admin", "active"]]
    assert _cli(["users", "enable", "alice", "--user", "alice", *db]) == 2
    assert "disabled" in capsys.readouterr().err
    assert _cli(["users", "enable", "alice", "--user", "root", *db]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert _cli(["users", "passwd", "alice", "--password-stdin", "--user", "alice", *db]) == 0
    with session_scope(engine) as session:
        assert authenticate(session, "alice", "another long password").role == "admin"

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert _cli(["users", "add", "bob", "--password-stdin", "--user", "root", *db]) == 2
    assert capsys.readouterr().err.endswith("standard input is empty.\n")

    with pytest.raises(SystemExit) as exited:
        _cli(["users", "add", "--admin", "--role", "volunteer", "x", *db])
    assert exited.value.code == 2
    for argv in (["users", "--help"], ["users", "add", "--help"]):
        with pytest.raises(SystemExit) as exited:
            _cli(argv)
        assert exited.value.code == 0
    assert "--password-stdin" in capsys.readouterr().out


# --- password policy (issue 15, finding 7) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "match"),
    [
        ("12345678", "most common"),
        ("password", "most common"),
        ("Password1", "most common"),
        ("iloveyou", "most common"),
        (" " * 12, "only spaces"),
        ("\t \u3000 \n  \t  ", "only spaces"),
        ("bobby-tables", "user name"),
        ("  BOBBY-Tables  ", "user name"),
        ("bobby-tables1", "user name with a few characters"),
        ("1bobby-tables!", "user name with a few characters"),
        ("qwertyuiop", "most common"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("abcdefghijkl", "too easy to guess"),
    ],
)
def test_guessable_passwords_are_refused_with_the_reason(engine: Engine, admin_id: int, password: str, match) -> None:
    """Before: ``12345678``, ``password``, spaces and the user name were all accepted."""
    with pytest.raises(UserError, match=match), session_scope(engine) as session:
        create_user(session, "bobby-tables", password, actor=session.get(User, admin_id))
    if "bobby" not in password.lower():  # and the same rules for a new password
        with pytest.raises(UserError, match=match), session_scope(engine) as session:
            change_password(session, session.get(User, admin_id), "root", password)
    with session_scope(engine) as session:
        assert [u.username for u in list_users(session)] == ["root"]


@pytest.mark.parametrize("password", ["correct horse battery", "sea turtles nest at night", "Tx9#lagoon-42"])
def test_ordinary_good_passwords_are_accepted(engine: Engine, admin_id: int, password: str) -> None:
    with session_scope(engine) as session:
        created = create_user(session, "newbie", password, actor=session.get(User, admin_id))
    assert created.username == "newbie"


def test_cli_users_unlock(db_url: str, engine: Engine, admin_id: int, capsys) -> None:
    """``users unlock`` lets a volunteer in at once after strangers failed on their name (admins only)."""
    from core.review import sessions, throttle

    with session_scope(engine) as session:
        create_user(session, "alice", PASSWORD, actor=session.get(User, admin_id))
    for i in range(throttle.FREE_FAILURES_PER_ACCOUNT + 1):
        with contextlib.suppress(AuthenticationError), session_scope(engine) as session:
            sessions.sign_in(session, "alice", f"guess {i}", secret=b"k" * 32)
    db = ["--db", db_url]
    assert _cli(["users", "unlock", "alice", "--user", "alice", *db]) == 2  # not an admin
    assert "may clear sign-in waits" in capsys.readouterr().err
    assert _cli(["users", "unlock", "alice", "--user", "root", *db]) == 0
    assert capsys.readouterr().out == "'alice' may sign in again at once.\n"
    assert _cli(["users", "unlock", "alice", "--user", "root", *db]) == 0
    assert capsys.readouterr().out == "'alice' had no failed sign-ins to forget.\n"
    with session_scope(engine) as session:
        assert sessions.sign_in(session, "alice", PASSWORD, secret=b"k" * 32)[0].username == "alice"
