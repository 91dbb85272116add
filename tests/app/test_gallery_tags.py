"""Tags in the Gallery (issue 16): a reviewer adds and removes an individual's flipper tag on its page, a
duplicate is refused with the name of the individual that has it (and stays typed), a volunteer sees the
tags but no editor, and the search box finds an individual by its tag number."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.appgallery import AppGallery, app_home, signed_in
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core.store.db import init_db, session_scope
from core.store.fieldwork import IndividualTag
from core.store.models import Individual

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(app_gallery: AppGallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return app_home(app_gallery, tmp_path / "home", monkeypatch)


def stored_tags(home: Path) -> list[tuple[str, str, str]]:
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    try:
        with session_scope(engine) as session:
            rows = session.exec(select(Individual.code, IndividualTag.kind, IndividualTag.value).join(Individual)).all()
            return sorted((code, kind, value) for code, kind, value in rows)
    finally:
        engine.dispose()


def open_individual(at: AppTest, code: str) -> AppTest:
    at.switch_page("pages/gallery.py").run()
    at.query_params["individual"] = code
    return at.run()


def test_a_reviewer_edits_tags_and_the_search_finds_them(home: Path) -> None:
    at = open_individual(signed_in("bob"), "t006")  # bob is a reviewer
    at.selectbox(key="gallery.tags.kind").set_value("flipper")
    at.text_input(key="gallery.tags.value").input(" AB1234 ")
    at.button(key="gallery.tags.add").click().run()
    assert not at.exception and not at.error
    assert stored_tags(home) == [("t006", "flipper", "AB1234")]
    assert any("flipper tag `AB1234`" in m.value for m in at.markdown)

    at = open_individual(at, "t019")
    at.selectbox(key="gallery.tags.kind").set_value("flipper")
    at.text_input(key="gallery.tags.value").input("ab1234")
    at.button(key="gallery.tags.add").click().run()
    assert [e.value for e in at.error] == ["The flipper tag AB1234 is on t006; a tag names one individual only."]
    assert at.text_input(key="gallery.tags.value").value == "ab1234"  # kept, to be corrected
    assert stored_tags(home) == [("t006", "flipper", "AB1234")]

    at.query_params.pop("individual")
    at.switch_page("pages/gallery.py").run()
    at.text_input(key="gallery.search").input("b123").run()
    assert [row for row in at.dataframe[0].value["Code"]] == ["t006"]

    at = open_individual(at, "t006")
    at.selectbox(key="gallery.tags.pick").set_value(at.selectbox(key="gallery.tags.pick").options[0])
    at.button(key="gallery.tags.remove").click().run()
    assert not at.exception and not at.error
    assert stored_tags(home) == []


def test_a_volunteer_sees_tags_but_cannot_edit_them(home: Path) -> None:
    at = open_individual(signed_in("bob"), "t006")
    at.text_input(key="gallery.tags.value").input("985141000123456")
    at.selectbox(key="gallery.tags.kind").set_value("pit")
    at.button(key="gallery.tags.add").click().run()
    volunteer = open_individual(signed_in("alice"), "t006")
    assert any("PIT tag `985141000123456`" in m.value for m in volunteer.markdown)
    assert not [t for t in volunteer.text_input if t.key == "gallery.tags.value"]
