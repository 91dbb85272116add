"""Sign-in, sign-out and the Home page as the app runs them (Streamlit's AppTest on a real SQLite gallery).

Issue 15: finding 7 (throttled sign-in, sign-out that ends the session on the server) and finding 10 (the
data folder's absolute path shown to admins only).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.photos import CHEAP_HASHER
from streamlit.testing.v1 import AppTest

from core.review import throttle, users
from core.review.sessions import SessionError, load_secret, verify_token
from core.store.db import init_db, session_scope
from ui.context import TOKEN_KEY

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "turtles are great"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A gallery with an admin and a volunteer and nothing else (sign-in needs no photos)."""
    path = tmp_path / "home"
    monkeypatch.setattr(users, "_HASHER", CHEAP_HASHER)
    monkeypatch.setenv("SCUTE_HOME", str(path))
    for key in ("DATABASE_URL", "SCUTE_SESSION_SECRET"):
        monkeypatch.delenv(key, raising=False)
    engine = init_db(f"sqlite:///{path / 'gallery.db'}")
    with session_scope(engine) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        users.create_user(session, "alice", PASSWORD, actor=admin)
    engine.dispose()
    return path


def _try_sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="signin.username").input(name)
    at.text_input(key="signin.password").input(password)
    return at.button(key="signin.submit").click().run()


def _page_text(at: AppTest) -> str:
    parts = [e.value for kind in (at.markdown, at.caption, at.error, at.info, at.title) for e in kind]
    return "\n".join(str(p) for p in parts)


def test_many_wrong_passwords_then_the_right_one_is_refused_with_a_wait(home: Path) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    for attempt in range(throttle.FREE_FAILURES_PER_ACCOUNT + 3):
        _try_sign_in(at, "alice", f"wrong guess {attempt}")
        assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert errors and "try again in" in errors[-1]
    _try_sign_in(at, "alice", PASSWORD)  # the right password, but too soon
    assert "try again in" in at.error[-1].value
    assert TOKEN_KEY not in at.session_state
    assert at.text_input(key="signin.username") is not None  # still the sign-in page


def test_signing_out_ends_the_session_on_the_server(home: Path) -> None:
    """Before: signing out only made the tab forget its token; a copy (the cookie) kept working for a day."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    _try_sign_in(at, "alice", PASSWORD)
    token = at.session_state[TOKEN_KEY]
    at.button(key="auth.signout").click().run()
    assert not at.exception, at.exception
    assert "You are signed out." in _page_text(at)
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    try:
        with pytest.raises(SessionError, match="signed out"), session_scope(engine) as session:
            verify_token(session, token, secret=load_secret(home))
    finally:
        engine.dispose()


@pytest.mark.parametrize(("name", "shown"), [("alice", False), ("admin", True)])
def test_only_admins_see_the_data_folder_and_engine_settings(home: Path, name: str, shown: bool) -> None:
    """Before: every volunteer's Home page showed the data folder's absolute path."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    _try_sign_in(at, name, PASSWORD)
    assert not at.exception, at.exception
    text = _page_text(at)
    assert f"Hello, {name}" in text
    assert (str(home) in text.replace("\\", "")) is shown  # the caption escapes Markdown
    assert ("Data folder" in text) is shown
