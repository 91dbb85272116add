"""Injection in the pages: names, codes, notes and comments full of HTML, Markdown and script render as text.

The core stores such text verbatim (test_injection.py); here the app (Streamlit ``AppTest``) shows a gallery
whose individuals, sightings and votes carry hostile text, on every page an admin can open, and no
Markdown element, caption, heading or label contains the hostile markup unescaped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.photos import image_bytes
from fixtures.world import PASSWORD

from core.review import users
from core.review.sightings import CandidateInput, submit_sighting
from core.review.votes import cast_vote
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

testing = pytest.importorskip("streamlit.testing.v1")
REPO = Path(__file__).resolve().parents[2]
if not (REPO / "app.py").is_file() or not (REPO / "pages").is_dir():
    pytest.skip("the app does not exist yet", allow_module_level=True)

SCRIPT = "<script>alert('x')</script>"
IMAGE = "<img src=x onerror=alert(1)>"
LINK = "[click](javascript:alert(1))"
BOLD = "**pwned**"
HOSTILE = f"{SCRIPT} {IMAGE} {LINK} {BOLD} # heading"
# Markup that Markdown would act on: the same characters with a backslash in front are shown literally.
RAW_MARKUP = re.compile(r"(?<!\\)<(?:script|img|/script|b>T-2)|(?<!\\)\]\(javascript:|(?<!\\)\*\*pwned")


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
        turtle, _ = get_or_create_individual(session, "T-0001", HOSTILE)
        turtle.notes = HOSTILE
        turtle.species = HOSTILE
        odd, _ = get_or_create_individual(session, "<b>T-2</b>[x](javascript:1)", "plain")
        for seed, individual in ((1, turtle), (2, odd)):
            add_photo(
                session,
                store,
                image_bytes(seed, size=(96, 72)),
                suffix=".png",
                individual=individual,
                width=96,
                height=72,
                original_name=f"{IMAGE}.png",
            )
        ids = (turtle.id, alice.id)
    with session_scope(engine) as session:
        submission = submit_sighting(
            session,
            store,
            session.get(User, ids[1]),
            image_bytes(3, size=(96, 72)),
            candidates=[CandidateInput(ids[0], 1, 0.5, 0.5, 3)],
            new_individual_probability=0.5,
            proposal="same",
            proposed_individual_id=ids[0],
            comment=HOSTILE,
            notes=HOSTILE,
            original_name=f"{SCRIPT}.png",
        )
    with session_scope(engine) as session:  # a second voter, so the admin sees two hostile comments
        bob = users.create_user(session, "bob", PASSWORD, actor=session.get(User, admin.id))
        cast_vote(session, bob, submission.sighting.id, "unsure", comment=HOSTILE)
    engine.dispose()
    return home


def _shown(at) -> list[str]:
    """Every piece of text Streamlit renders as Markdown (bodies, captions, headings, labels)."""
    parts = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "success", "info", "warning", "error"):
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [str(e.label) for e in at.expander]
    parts += [str(e.label) for e in at.tabs]
    for widget in ("button", "checkbox", "radio", "selectbox", "multiselect", "text_input", "text_area"):
        parts += [str(w.label) for w in at.get(widget)]
    return parts


def _assert_escaped(at, where: str) -> None:
    assert not at.exception, (where, at.exception)
    leaks = [text for text in _shown(at) if RAW_MARKUP.search(text)]
    assert leaks == [], (where, leaks[:3])


def test_hostile_text_is_shown_as_text_on_every_page(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = testing.AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.text_input(key="signin.username").input("admin")
    at.text_input(key="signin.password").input(PASSWORD)
    at.button(key="signin.submit").click().run()
    _assert_escaped(at, "home")

    at.switch_page("pages/gallery.py").run()
    _assert_escaped(at, "gallery")
    at.query_params["individual"] = "T-0001"  # what clicking its row in the list does
    at.run()
    _assert_escaped(at, "gallery: T-0001")
    shown = "\n".join(_shown(at))
    assert "pwned" in shown and "alert" in shown  # the hostile text is there, as text
    at.query_params["individual"] = "<b>T-2</b>[x](javascript:1)"
    at.run()
    _assert_escaped(at, "gallery: odd code")

    at.switch_page("pages/review.py").run()
    _assert_escaped(at, "review queue")
    plain = [str(element.value) for element in at.text]  # volunteers' notes and comments: st.text, no Markdown
    assert sum("pwned" in text for text in plain) >= 3  # notes and two comments, as text

    at.switch_page("pages/curate.py").run()
    for section in ("individuals", "merge", "photos", "history", "users"):
        at.segmented_control(key="curate.section").set_value(section).run()
        _assert_escaped(at, f"curate: {section}")
    _assert_escaped(at, "curate")
