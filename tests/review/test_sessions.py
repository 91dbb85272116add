"""core.sessions: signed sign-in sessions that expire, end on a password change or a disable, and cannot be forged."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from fixtures.photos import image_bytes
from fixtures.world import PASSWORD, World, make_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.review import sessions, sightings, throttle, users
from core.review.sessions import (
    DEFAULT_IDLE_S,
    DEFAULT_MAX_AGE_S,
    SessionError,
    issue_token,
    load_secret,
    refresh_token,
    sign_in,
    token_info,
    verify_token,
)
from core.review.users import AuthenticationError, PermissionDenied
from core.settings import Settings
from core.store.db import init_db, session_scope
from core.store.models import AuditLog, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

SECRET = b"k" * 32
T0 = 1_800_000_000.0


@pytest.fixture
def engine(tmp_path: Path):
    engine = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    return make_world(engine, PhotoStore(tmp_path / "photos"))


def _sign_in(engine: Engine, name: str = "alice", now: float = T0, **kwargs) -> str:
    with session_scope(engine) as session:
        return sign_in(session, name, PASSWORD, secret=SECRET, now=now, **kwargs)[1]


def _verify(engine: Engine, token: object, now: float = T0, *roles: str, secret: bytes = SECRET) -> User:
    with session_scope(engine) as session:
        return verify_token(session, token, *roles, secret=secret, now=now)


def test_sign_in_gives_a_token_that_names_the_user(engine: Engine, world: World) -> None:
    token = _sign_in(engine)
    assert _verify(engine, token).id == world.alice
    info = token_info(token, secret=SECRET)
    assert (info.user_id, info.signed_in_at, info.expires_at) == (world.alice, int(T0), int(T0) + DEFAULT_IDLE_S)
    assert PASSWORD not in token and "alice" not in token  # only an id, times and a keyed fingerprint


def test_wrong_password_gives_no_token(engine: Engine, world: World) -> None:
    with pytest.raises(AuthenticationError), session_scope(engine) as session:
        sign_in(session, "alice", "not the password", secret=SECRET)


def test_sessions_expire_when_idle(engine: Engine, world: World) -> None:
    token = _sign_in(engine)
    assert _verify(engine, token, T0 + DEFAULT_IDLE_S - 1).id == world.alice
    with pytest.raises(SessionError, match="expired"):
        _verify(engine, token, T0 + DEFAULT_IDLE_S)


def test_refresh_extends_the_idle_time_but_never_past_the_maximum_age(engine: Engine, world: World) -> None:
    token = _sign_in(engine)
    now = T0
    while now + DEFAULT_IDLE_S / 2 < T0 + DEFAULT_MAX_AGE_S:
        now += DEFAULT_IDLE_S / 2
        with session_scope(engine) as session:
            token = refresh_token(session, token, secret=SECRET, now=now)
        assert _verify(engine, token, now).id == world.alice
    assert token_info(token, secret=SECRET).expires_at == int(T0) + DEFAULT_MAX_AGE_S
    assert token_info(token, secret=SECRET).signed_in_at == int(T0)
    with pytest.raises(SessionError, match="expired"):
        _verify(engine, token, T0 + DEFAULT_MAX_AGE_S)
    with pytest.raises(SessionError, match="expired"), session_scope(engine) as session:
        refresh_token(session, token, secret=SECRET, now=T0 + DEFAULT_MAX_AGE_S)


def test_changing_the_password_ends_every_session(engine: Engine, world: World) -> None:
    token = _sign_in(engine)
    with session_scope(engine) as session:
        users.change_password(session, session.get(User, world.alice), "alice", "another long password")
    with pytest.raises(SessionError, match="password was changed"):
        _verify(engine, token)


def test_disabling_the_account_ends_its_sessions(engine: Engine, world: World) -> None:
    token = _sign_in(engine, "bob")
    with session_scope(engine) as session:
        users.disable_user(session, session.get(User, world.admin), "bob")
    with pytest.raises(SessionError, match="disabled"):
        _verify(engine, token)
    with session_scope(engine) as session:
        users.enable_user(session, session.get(User, world.admin), "bob")
    assert _verify(engine, token).id == world.bob  # the same token works again once re-enabled


def test_role_comes_from_the_database_not_the_token(engine: Engine, world: World) -> None:
    token = _sign_in(engine, "bob")
    with pytest.raises(PermissionDenied):
        _verify(engine, token, T0, "admin")
    with session_scope(engine) as session:
        users.set_role(session, session.get(User, world.admin), "bob", "admin")
    assert _verify(engine, token, T0, "admin").role == "admin"


def test_a_session_user_can_act_and_a_stale_one_cannot(engine: Engine, world: World, tmp_path: Path) -> None:
    """How the app uses it: verify on every request, then pass the fresh User to core."""
    token = _sign_in(engine, "alice")
    store = PhotoStore(tmp_path / "photos")
    with session_scope(engine) as session:
        user = verify_token(session, token, secret=SECRET, now=T0)
        submission = sightings.submit_sighting(
            session, store, user, image_bytes(900), candidates=[], new_individual_probability=None
        )
    assert submission.created
    with session_scope(engine) as session:
        users.disable_user(session, session.get(User, world.admin), "alice")
    with pytest.raises(SessionError), session_scope(engine) as session:
        verify_token(session, token, secret=SECRET, now=T0 + 1)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t.replace(".", ".x", 1),  # payload changed
        lambda t: "s1" + t[2:],  # an older version (no server-side record)
        lambda t: t + ".extra",
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: None,
        lambda t: 42,
        lambda t: t * 100,
        lambda t: t.replace("s2", "s2\u00e9"),
    ],
)
def test_edited_or_garbage_tokens_are_refused(engine: Engine, world: World, mangle) -> None:
    token = _sign_in(engine)
    with pytest.raises(SessionError, match="not valid"):
        _verify(engine, mangle(token))


def test_a_token_forged_for_another_user_is_refused(engine: Engine, world: World) -> None:
    """Changing the user id inside the payload breaks the signature."""
    import base64

    token = _sign_in(engine, "alice")
    version, payload, signature = token.split(".")
    fields = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split(".")
    fields[0] = str(world.admin)
    forged_payload = base64.urlsafe_b64encode(".".join(fields).encode()).rstrip(b"=").decode()
    with pytest.raises(SessionError, match="not valid"):
        _verify(engine, f"{version}.{forged_payload}.{signature}")


def test_tokens_from_another_secret_are_refused(engine: Engine, world: World) -> None:
    token = _sign_in(engine)
    with pytest.raises(SessionError, match="not valid"):
        _verify(engine, token, T0, secret=b"z" * 32)


def test_tokens_from_the_future_are_refused(engine: Engine, world: World) -> None:
    token = _sign_in(engine, now=T0 + 3600)
    with pytest.raises(SessionError, match="not valid"):
        _verify(engine, token, T0)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_random_tokens_are_refused(engine: Engine, world: World, token: str) -> None:
    with pytest.raises(SessionError):
        _verify(engine, token)


def test_a_deleted_account_has_no_session(engine: Engine) -> None:
    with session_scope(engine) as session:
        ghost = User(id=77, username="ghost", password_hash="$argon2id$x", role="admin", active=True)
        token = issue_token(ghost, secret=SECRET, key="k" * 22, now=T0)
        with pytest.raises(SessionError, match="no longer exists"):
            verify_token(session, token, secret=SECRET, now=T0)


# --- the secret ----------------------------------------------------------------------------------------


def test_secret_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(load_secret(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    key = tmp_path / "session.key"
    assert len(set(results)) == 1 and len(results[0]) == 32  # one secret, however many processes race
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_secret(tmp_path) == results[0]
    assert [p.name for p in tmp_path.iterdir()] == ["session.key"]  # no temporary files left


def test_secret_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"SCUTE_HOME": str(tmp_path), "SCUTE_SESSION_SECRET": "x" * 40})
    assert load_secret(settings.home, settings.session_secret) == b"x" * 40
    assert not (tmp_path / "session.key").exists()
    short = Settings.from_env({"SCUTE_HOME": str(tmp_path), "SCUTE_SESSION_SECRET": "short"})
    with pytest.raises(SessionError, match="too short"):
        load_secret(short.home, short.session_secret)


def test_damaged_secret_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "session.key").write_bytes(b"abc")
    with pytest.raises(SessionError, match="damaged"):
        load_secret(tmp_path)


def test_default_secret_lives_in_scute_home(engine: Engine, world: World, tmp_path: Path) -> None:
    settings = Settings.from_env({"SCUTE_HOME": str(tmp_path / "home")})
    secret = load_secret(settings.home, settings.session_secret)
    with session_scope(engine) as session:
        _, token = sessions.sign_in(session, "alice", PASSWORD, secret=secret)
    with session_scope(engine) as session:
        assert sessions.verify_token(session, token, secret=secret).id == world.alice
    assert (tmp_path / "home" / "session.key").is_file()
    os.remove(tmp_path / "home" / "session.key")  # deleting the key signs everybody out
    with pytest.raises(SessionError), session_scope(engine) as session:
        sessions.verify_token(session, token, secret=load_secret(settings.home))


# --- signing out and throttling (issue 15, finding 7) ---------------------------------------------------


def test_signing_out_ends_the_token_and_every_copy_of_it(engine: Engine, world: World) -> None:
    """Before: sign-out only made the app forget its token, so a copied cookie worked for up to 24 hours."""
    token = _sign_in(engine)
    with session_scope(engine) as session:
        refreshed = refresh_token(session, token, secret=SECRET, now=T0 + 60)
    other_device = _sign_in(engine)
    with session_scope(engine) as session:
        assert sessions.sign_out(session, refreshed, secret=SECRET, now=T0 + 120) is True
    for copy in (token, refreshed):  # the cookie copied before and after the last refresh
        with pytest.raises(SessionError, match="signed out"):
            _verify(engine, copy, T0 + 180)
        with pytest.raises(SessionError, match="signed out"), session_scope(engine) as session:
            refresh_token(session, copy, secret=SECRET, now=T0 + 180)
    assert _verify(engine, other_device, T0 + 180).id == world.alice  # only that session ended
    with session_scope(engine) as session:
        assert sessions.sign_out(session, token, secret=SECRET) is False  # already ended
        assert sessions.sign_out(session, "garbage", secret=SECRET) is False


def test_a_well_signed_token_without_a_server_record_is_refused(engine: Engine, world: World) -> None:
    """The secret alone is not enough: a token must name a session the server opened."""
    with session_scope(engine) as session:
        token = issue_token(session.get(User, world.alice), secret=SECRET, key="made-up-key", now=T0)
    with pytest.raises(SessionError, match="signed out"):
        _verify(engine, token)


def _attempt(engine: Engine, password: str, now: float, name: str = "alice", client: str = "198.51.100.7") -> str:
    """One sign-in from the app: 'ok', 'wrong' or 'wait' (refused before the password was checked)."""
    try:
        with session_scope(engine) as session:
            sign_in(session, name, password, secret=SECRET, now=now, client=client)
    except throttle.SignInThrottled:
        return "wait"
    except AuthenticationError:
        return "wrong"
    return "ok"


def test_a_hundred_wrong_passwords_then_the_right_one_is_refused(engine: Engine, world: World) -> None:
    """Before: 100 wrong passwords and then the right one signed in at once."""
    results = [_attempt(engine, f"guess number {i}", T0 + i * 0.01) for i in range(100)]  # within a second
    assert results.count("wrong") == throttle.FREE_FAILURES_PER_ACCOUNT + 1  # then every attempt had to wait
    assert _attempt(engine, PASSWORD, T0 + 1.5) == "wait"
    other_engine = init_db(str(engine.url))  # another app process on the same database counts the same failures
    try:
        assert _attempt(other_engine, PASSWORD, T0 + 1.5) == "wait"
    finally:
        other_engine.dispose()


def test_waits_grow_so_a_patient_guesser_gets_few_tries(engine: Engine, world: World) -> None:
    """A guesser who always comes back the moment the wait ends gets about 17 password checks an hour, not thousands."""
    now, checked, waits = T0, 0, []
    while now < T0 + 3600:
        try:
            with session_scope(engine) as session:
                sign_in(session, "alice", "not her password", secret=SECRET, now=now, client="198.51.100.9")
        except throttle.SignInThrottled as exc:
            waits.append(exc.wait_s)
            now += exc.wait_s
        except AuthenticationError:
            checked += 1
    assert checked <= 20
    assert waits[:4] == [2, 4, 8, 16] and max(waits) <= throttle.MAX_WAIT_S
    assert _attempt(engine, PASSWORD, now) in ("ok", "wait")
    assert _attempt(engine, PASSWORD, now + throttle.MAX_WAIT_S) == "ok"  # the owner gets in once the wait is over
    assert _attempt(engine, "wrong again", now + throttle.MAX_WAIT_S + 1) == "wrong"  # and the count starts afresh


def test_one_client_guessing_many_names_is_slowed_and_the_message_never_tells_a_real_name(
    engine: Engine, world: World
) -> None:
    messages = set()
    results = []
    for i in range(throttle.FREE_FAILURES_PER_CLIENT + 5):
        name = {3: "alice", 22: "carol"}.get(i, f"nobody{i}")  # real and unknown names, each tried once
        try:
            with session_scope(engine) as session:
                sign_in(session, name, "not a password", secret=SECRET, now=T0, client="203.0.113.5")
            results.append("ok")
        except throttle.SignInThrottled as exc:
            messages.add(str(exc))
            results.append("wait")
        except AuthenticationError:
            results.append("wrong")
    assert results.count("wrong") == throttle.FREE_FAILURES_PER_CLIENT + 1
    assert messages == {"Too many failed sign-ins for this name or from this connection; try again in 2 s."}
    assert _attempt(engine, PASSWORD, T0, name="bob", client="203.0.113.5") == "wait"  # this client waits
    assert _attempt(engine, PASSWORD, T0, name="bob", client="192.0.2.44") == "ok"  # another does not


def test_sign_ins_never_queue_for_the_password_check(engine: Engine, world: World) -> None:
    """Many anonymous tabs signing in at once: one argon2 check at a time, the others told to try again soon
    instead of piling up hashes that slow every signed-in volunteer."""
    import time

    holding, release = threading.Event(), threading.Event()

    def busy_sign_in() -> None:
        with throttle.password_check_slot():
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=busy_sign_in)
    worker.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with pytest.raises(throttle.SignInThrottled, match="try again in 2 s"), session_scope(engine) as session:
            sign_in(session, "alice", PASSWORD, secret=SECRET, now=T0, client="198.51.100.20")
        assert time.monotonic() - started < throttle.SLOT_WAIT_S + 1.0
    finally:
        release.set()
        worker.join()
    time.sleep(time.monotonic() - started + 0.1)  # the rest after that long check (it began before `started`)
    assert _attempt(engine, PASSWORD, T0, client="198.51.100.20") == "ok"  # a refused-as-busy attempt is no failure


def test_each_password_check_is_followed_by_an_equal_rest() -> None:
    """However many tabs sign in, password checks take at most half the time of the cores they run on."""
    import time

    with throttle.password_check_slot():
        time.sleep(0.4)  # a slow argon2 check on a loaded machine
    with pytest.raises(throttle.SignInThrottled, match="Many people are signing in"), throttle.password_check_slot(0.1):
        pass
    started = time.monotonic()
    with throttle.password_check_slot(wait_s=2.0):
        waited = time.monotonic() - started
    assert 0.2 <= waited <= 0.6


def test_an_admin_lets_a_locked_out_volunteer_in_at_once(engine: Engine, world: World) -> None:
    """A stranger failing on purpose makes alice wait; an admin (only an admin) clears it, and it is audited."""
    for i in range(throttle.FREE_FAILURES_PER_ACCOUNT + 1):
        assert _attempt(engine, f"stranger {i}", T0) == "wrong"
    assert _attempt(engine, PASSWORD, T0, client="192.0.2.80") == "wait"
    with pytest.raises(PermissionDenied), session_scope(engine) as session:
        throttle.clear_account(session, session.get(User, world.bob), "alice")
    with session_scope(engine) as session:
        assert throttle.clear_account(session, session.get(User, world.admin), "Alice") is True
    assert _attempt(engine, PASSWORD, T0, client="192.0.2.80") == "ok"
    with session_scope(engine) as session:
        entries = session.exec(select(AuditLog).where(AuditLog.action == "user.unlock")).all()
        assert [(e.user_id, e.target_id, e.payload["before"]) for e in entries] == [
            (world.admin, world.alice, {"failures": throttle.FREE_FAILURES_PER_ACCOUNT + 1})
        ]
