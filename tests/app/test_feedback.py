"""Feedback pages (issue 16): the Inbox shows a decision on one's sighting and marks it read; a volunteer
follows an individual from its Gallery page and hears when it is seen again."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.appgallery import AppGallery, app_home, signed_in
from fixtures.feedback import decided_sighting, keep_evidence, user_named
from sqlalchemy.engine import Engine
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core.store.db import init_db, session_scope
from core.store.feedback import Follow, Notification, PracticeAnswer
from core.store.models import Individual

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(app_gallery: AppGallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return app_home(app_gallery, tmp_path / "home", monkeypatch)


@pytest.fixture
def db(home: Path):
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    yield engine
    engine.dispose()


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    for kind in (at.success, at.info, at.warning, at.error, at.title):
        parts += [e.value for e in kind]
    return "\n".join(str(p) for p in parts).replace("\\", "")  # Markdown escapes dropped


def test_inbox_shows_the_decision_and_marks_it_read(home: Path, db: Engine, app_gallery: AppGallery) -> None:
    decided_sighting(db, home, app_gallery)
    at = signed_in("alice")
    assert [p.label for p in at.get("page_link") if "Inbox" in str(p.label)] == ["Inbox (1 new)"]
    at.switch_page("pages/inbox.py").run()
    assert not at.exception
    assert "**Your encounter of 2025-04-12 was confirmed as t006.**" in texts(at)  # bold: unread
    assert "1 unread" in texts(at)
    assert [p.label for p in at.get("page_link") if "gallery" in str(p.label)] == ["Open t006 in the gallery"]
    at.button(key="inbox.read_all").click().run()
    assert not at.exception
    assert "Nothing unread." in texts(at)
    assert "Your encounter of 2025-04-12 was confirmed as t006." in texts(at)  # still there, no longer bold
    with session_scope(db) as session:
        notes = session.exec(select(Notification).where(Notification.user_id == user_named(session, "alice").id)).all()
        assert [(n.kind, n.read_at is not None) for n in notes] == [("confirmed", True)]


def test_follow_from_the_gallery_reaches_the_inbox(home: Path, db: Engine, app_gallery: AppGallery) -> None:
    at = signed_in("admin")
    at.switch_page("pages/gallery.py").run()
    at.query_params["individual"] = "t006"
    at.run()
    follow = next(b for b in at.button if str(b.key).startswith("follow."))
    assert follow.label == "Follow t006"
    follow.click().run()
    assert not at.exception
    assert next(b for b in at.button if str(b.key).startswith("follow.")).label == "Unfollow t006"
    with session_scope(db) as session:
        rows = session.exec(select(Follow)).all()
        assert [(r.user_id, r.individual_id) for r in rows] == [
            (
                user_named(session, "admin").id,
                session.exec(select(Individual.id).where(Individual.code == "t006")).one(),
            )
        ]
    decided_sighting(db, home, app_gallery)
    at.switch_page("pages/inbox.py").run()
    assert "t006 was seen again (encounter of 2025-04-12, by alice)." in texts(at)


def test_practice_tells_the_right_answer_and_admins_see_the_rate(
    home: Path, db: Engine, app_gallery: AppGallery
) -> None:
    keep_evidence(db, home, decided_sighting(db, home, app_gallery))
    at = signed_in("admin")  # admin neither sent nor voted on it
    at.switch_page("pages/practice.py").run()
    assert not at.exception
    assert "t006" not in texts(at)  # the answer is not given away before searching
    assert "Nobody has practised yet." in texts(at)
    at.button(key="practice.run").click().run()
    assert not at.exception
    assert at.radio(key="practice.choice").options == [
        "t006 (80 %)",
        "t019 (5 %)",
        "A new individual (not in the gallery)",
    ]
    at.radio(key="practice.choice").set_value("t019")
    at.button(key="practice.check").click().run()
    assert not at.exception
    shown = at.error[0].value.replace("\\", "")
    assert shown.startswith("Not quite: you chose t019, the answer is t006. This is t006, as decided in review;")
    table = at.dataframe[0].value
    assert list(table["Volunteer"]) == ["admin"] and list(table["Agreement"]) == ["0 %"]
    with session_scope(db) as session:
        rows = session.exec(select(PracticeAnswer)).all()
        assert [(r.answered_new, r.correct) for r in rows] == [(False, False)]
