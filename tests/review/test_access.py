"""Access: every core function that changes data checks the acting user's role and account, and no password
ever reaches a log, an audit entry or an error message.

The role table below is the contract: a new public function in users/review/curation must be added to it
(as changing data, with who may call it, or as read-only), or ``test_every_public_function_is_classified``
fails.
"""

from __future__ import annotations

import inspect as pyinspect
import io
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.photos import image_bytes
from fixtures.world import PASSWORD, World, snapshot
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.review import curation, individuals, sightings, users, votes
from core.review.sightings import CandidateInput
from core.review.users import AuthenticationError, PermissionDenied
from core.store.db import session_scope
from core.store.models import AuditLog, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

Call = Callable[[Session, User, World, PhotoStore], Any]

# Who may call each data-changing function: "any" (an active account), "admin", or "self" (own account).
MUTATING: dict[tuple[str, str], tuple[str, Call]] = {
    ("users", "create_user"): ("admin", lambda s, u, w, st: users.create_user(s, "newbie", PASSWORD, actor=u)),
    ("users", "set_role"): ("admin", lambda s, u, w, st: users.set_role(s, u, "bob", "reviewer")),
    ("users", "disable_user"): ("admin", lambda s, u, w, st: users.disable_user(s, u, "bob")),
    ("users", "enable_user"): ("admin", lambda s, u, w, st: users.enable_user(s, u, "dave")),
    ("users", "change_password"): ("self", lambda s, u, w, st: users.change_password(s, u, "bob", "a new password")),
    ("sightings", "submit_sighting"): (
        "any",
        lambda s, u, w, st: sightings.submit_sighting(
            s, st, u, image_bytes(800), candidates=[CandidateInput(w.t1, 1, 0.5)], new_individual_probability=0.2
        ),
    ),
    ("votes", "cast_vote"): ("any", lambda s, u, w, st: votes.cast_vote(s, u, _pending(s, w, st), "new")),
    ("votes", "decide"): ("admin", lambda s, u, w, st: votes.decide(s, u, _pending(s, w, st), "same", w.t1)),
    ("individuals", "create_next_individual"): ("internal", None),  # type: ignore[dict-item]
    ("curation", "rename"): ("admin", lambda s, u, w, st: curation.rename(s, u, w.t1, "New name")),
    ("curation", "edit_notes"): ("admin", lambda s, u, w, st: curation.edit_notes(s, u, w.t1, "notes")),
    ("curation", "set_species"): ("admin", lambda s, u, w, st: curation.set_species(s, u, w.t1, "Caretta caretta")),
    ("curation", "retire"): ("admin", lambda s, u, w, st: curation.retire(s, u, w.t2)),
    ("curation", "merge"): ("admin", lambda s, u, w, st: curation.merge(s, u, w.t2, w.t1)),
    ("curation", "split"): ("admin", lambda s, u, w, st: curation.split(s, u, w.t1, w.photos[:1])),
    ("curation", "move_photo"): ("admin", lambda s, u, w, st: curation.move_photo(s, u, w.photos[0], w.t2)),
    ("curation", "remove_photo"): ("admin", lambda s, u, w, st: curation.remove_photo(s, u, w.photos[0])),
    ("curation", "undo"): ("admin", lambda s, u, w, st: curation.undo(s, u, _an_undoable_entry(s, w))),
}
READ_ONLY = (
    {
        ("users", name)
        for name in (
            "acting_user",
            "authenticate",
            "check_password_policy",
            "get_user",
            "list_users",
            "normalize_username",
            "require_role",
        )
    }
    | {("sightings", name) for name in ("count_sightings", "list_sightings", "review_queue", "sighting_detail")}
    | {("individuals", "get_individual"), ("individuals", "next_code"), ("votes", "tally"), ("curation", "moved_owner")}
)
MODULES = {
    "users": users,
    "sightings": sightings,
    "votes": votes,
    "individuals": individuals,
    "curation": curation,
}


def _pending(session: Session, w: World, st: PhotoStore) -> int:
    """A pending sighting submitted by the reviewer carol (made in its own savepoint-free way)."""
    carol = session.get(User, w.carol)
    submission = sightings.submit_sighting(
        session, st, carol, image_bytes(801), candidates=[CandidateInput(w.t1, 1, 0.5)], new_individual_probability=0.1
    )
    return submission.sighting.id  # type: ignore[return-value]


def _an_undoable_entry(session: Session, w: World) -> int:
    entry = curation.move_photo(session, session.get(User, w.admin), w.photos[2], w.t1)
    return entry.id  # type: ignore[return-value]


def test_every_public_function_is_classified() -> None:
    """A new data-changing function must state who may call it (and so get the checks below)."""
    public = {
        (module_name, name)
        for module_name, module in MODULES.items()
        for name in module.__all__
        if pyinspect.isfunction(getattr(module, name, None))
    }
    unclassified = public - set(MUTATING) - READ_ONLY
    assert unclassified == set()


def _actors(rule: str, w: World) -> list[tuple[str, int | None]]:
    """The accounts that must be refused for a rule: a volunteer (for admin-only), a disabled one, nobody."""
    refused = [("disabled volunteer", w.dave), ("nobody", None), ("deleted account", GHOST)]
    if rule == "admin":
        refused += [("volunteer", w.alice), ("reviewer", w.carol)]
    return refused


CASES = [(key, rule) for key, (rule, call) in MUTATING.items() if rule != "internal"]


def _attempt(engine, call: Call, user_id: int | None, world: World, store: PhotoStore, *, commit: bool) -> None:
    session = Session(engine, expire_on_commit=False)
    try:
        if user_id is None:
            actor = None
        elif user_id == GHOST:
            actor = User(id=GHOST, username="ghost", password_hash="x", role="admin", active=True)
        else:
            actor = session.get(User, user_id)
        call(session, actor, world, store)  # type: ignore[arg-type]
        if commit:
            session.commit()
    finally:
        session.rollback()
        session.close()


GHOST = 10_000


def test_data_changing_functions_refuse_the_wrong_people_and_change_nothing(
    engine, store: PhotoStore, world: World
) -> None:
    """For each function: a volunteer or reviewer (where admins only), a disabled account, a deleted account
    and nobody are refused with PermissionDenied, and the database is exactly as before."""
    before = snapshot(engine)
    for key, rule in CASES:
        call = MUTATING[key][1]
        for label, user_id in _actors(rule, world):
            with pytest.raises(PermissionDenied):
                _attempt(engine, call, user_id, world, store, commit=True)
            assert snapshot(engine) == before, f"{key} by {label} changed the database"


def test_the_right_people_may_call_them(engine, store: PhotoStore, world: World) -> None:
    """The positive side (each call rolled back), so the refusals above are about roles, not broken arguments."""
    for key, rule in CASES:
        allowed = {"admin": world.admin, "any": world.alice, "self": world.bob}[rule]
        _attempt(engine, MUTATING[key][1], allowed, world, store, commit=False)


def test_a_stale_user_object_does_not_outlive_a_disable(engine, store: PhotoStore, world: World) -> None:
    """The app may hold a User from sign-in; a disable committed elsewhere must still stop it at once."""
    with session_scope(engine) as session:
        stale_admin = users.create_user(session, "admin2", PASSWORD, "admin", actor=session.get(User, world.admin))
        stale_bob = session.get(User, world.bob)
    with session_scope(engine) as session:
        users.disable_user(session, session.get(User, world.admin), "admin2")
        users.disable_user(session, session.get(User, world.admin), "bob")
    before = snapshot(engine)
    with pytest.raises(PermissionDenied, match="disabled"), session_scope(engine) as session:
        curation.rename(session, stale_admin, world.t1, "sneaky")
    with pytest.raises(PermissionDenied, match="disabled"), session_scope(engine) as session:
        votes.cast_vote(session, stale_bob, _pending(session, world, store), "new")
    assert snapshot(engine) == before


def test_a_demoted_admin_is_refused_at_once(engine, world: World) -> None:
    with session_scope(engine) as session:
        admin2 = users.create_user(session, "admin2", PASSWORD, "admin", actor=session.get(User, world.admin))
    with session_scope(engine) as session:
        users.set_role(session, session.get(User, world.admin), "admin2", "volunteer")
    with pytest.raises(PermissionDenied, match="only a admin"), session_scope(engine) as session:
        curation.retire(session, admin2, world.t2)


# --- passwords never logged ----------------------------------------------------------------------------

SECRET = "horse.battery.staple-42"  # also a valid user name: people type it into the name field


def _everything_logged(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture):
    """Capture every logger at DEBUG, and SQLAlchemy's statement log as ``echo=True`` writes it (INFO:
    statements and their parameters; DEBUG would add result rows, a deliberate debugging setting)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    return caplog


def test_passwords_and_hashes_never_reach_logs_audit_or_errors(engine, world: World, everything_logged) -> None:
    """Account creation, sign-in (right, wrong, password typed as the name), password change and a database
    error on the user table, with SQL logging on: neither the password nor its hash appears anywhere.

    Regression: with SQLAlchemy's statement log on, bound parameters (the argon2 hash) were logged, and a
    failed sign-in logged whatever was typed as the user name (often the password, by mistake).
    """
    with session_scope(engine) as session:
        created = users.create_user(session, "erin", SECRET, actor=session.get(User, world.admin))
        stored_hash = created.password_hash
    with session_scope(engine) as session:
        users.authenticate(session, "erin", SECRET)
        for name, password in (("erin", "wrong password"), (SECRET, SECRET), ("nobody", SECRET)):
            with pytest.raises(AuthenticationError):
                users.authenticate(session, name, password)
    with session_scope(engine) as session:
        users.change_password(session, session.get(User, world.admin), "erin", SECRET + "-2")
    with pytest.raises(IntegrityError) as caught, session_scope(engine) as session:
        session.execute(insert(User).values(username="erin", password_hash=stored_hash, role="volunteer", active=True))
    with session_scope(engine) as session:
        audit = [repr(entry.payload) for entry in session.exec(select(AuditLog)).all()]
    logged = _everything_logged(everything_logged.records)
    assert any("INSERT INTO user_account" in r.getMessage() for r in everything_logged.records)  # SQL was logged
    for secret in (SECRET, stored_hash, stored_hash.split("$")[-1]):
        assert secret not in logged
        assert secret not in str(caught.value)
        assert all(secret not in payload for payload in audit)


def test_the_users_command_never_echoes_the_password(engine, db_url: str, world: World, capsys, caplog) -> None:
    from core.cli import main

    caplog.set_level(logging.DEBUG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
        code = main(["users", "add", "--db", db_url, "--user", "admin", "frank", "--password-stdin"])
    captured = capsys.readouterr()
    assert code == 0 and "Added volunteer 'frank'" in captured.out
    assert SECRET not in captured.out + captured.err + _everything_logged(caplog.records)
    with session_scope(engine) as session:
        assert users.authenticate(session, "frank", SECRET).role == "volunteer"
