"""Review shows volunteers' comments and notes as plain text: a URL in them never becomes a link (issue 15).

Streamlit's Markdown turns a bare ``https://…`` or ``www.…`` into a clickable link, which makes a
volunteer's comment a phishing aid in front of every reviewer. The page (Streamlit ``AppTest``, a real
SQLite gallery) must show that text through an element that parses nothing (``st.text``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.photos import image_bytes
from fixtures.world import PASSWORD

from core.review import users
from core.review.sightings import submit_sighting
from core.review.votes import cast_vote
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

testing = pytest.importorskip("streamlit.testing.v1")
REPO = Path(__file__).resolve().parents[2]

COMMENT = "Your account expires, sign in again at https://scute-login.example/reset or www.scute-help.example"
NOTES = "photos also on http://evil.example/turtles"
SECOND = "see https://second.example"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SCUTE_HOME", str(home))
    for key, value in {"SCUTE_EXTRACTOR": "sift", "SCUTE_MAX_SIDE": "256", "SCUTE_DEVICE": "cpu"}.items():
        monkeypatch.setenv(key, value)
    for key in ("DATABASE_URL", "SCUTE_SESSION_SECRET", "SCUTE_REQUIRED_VOTES"):
        monkeypatch.delenv(key, raising=False)
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    store = PhotoStore(home / "photos")
    with session_scope(engine) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = users.create_user(session, "alice", PASSWORD, actor=admin)
        bob = users.create_user(session, "bob", PASSWORD, actor=admin)
        turtle, _ = get_or_create_individual(session, "T-0001", "Donatello")
        add_photo(session, store, image_bytes(1, size=(96, 72)), suffix=".png", individual=turtle, width=96, height=72)
        submission = submit_sighting(
            session,
            store,
            alice,
            image_bytes(3, size=(96, 72)),
            candidates=[],
            new_individual_probability=None,
            proposal="same",
            proposed_individual_id=turtle.id,
            comment=COMMENT,
            notes=NOTES,
        )
        cast_vote(session, session.get(User, bob.id), submission.sighting.id, "unsure", comment=SECOND)  # type: ignore[arg-type]
    engine.dispose()
    return home


def _markdown_elements(at) -> list[str]:
    parts = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "success", "info", "warning", "error"):
        parts += [str(element.value) for element in getattr(at, kind)]
    return parts


def test_comments_and_notes_are_plain_text_on_review(home: Path) -> None:
    at = testing.AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.text_input(key="signin.username").input("admin")
    at.text_input(key="signin.password").input(PASSWORD)
    at.button(key="signin.submit").click().run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception

    texts = [str(element.value) for element in at.text]
    assert f"“{COMMENT}”" in texts and f"“{SECOND}”" in texts and f"Notes: {NOTES}" in texts
    # No Markdown element carries the URLs, escaped or not: Markdown would link them.
    markdown = "\n".join(_markdown_elements(at)).replace("\\", "")
    for host in ("scute-login.example", "scute-help.example", "evil.example", "second.example"):
        assert host not in markdown
    assert any("alice" in text for text in _markdown_elements(at))  # the votes themselves are still listed
