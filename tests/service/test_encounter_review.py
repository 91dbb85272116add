"""core.service for encounters: Review lists an encounter once with its combined ranking, one vote decides all its
photos, an admin decides them together, and the audit log says what was sent in a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.photos import image_bytes

from core.review import users
from core.review.encounters import CombinedInput, EncounterFields, EncounterPhoto, ShownRanking, submit_encounter
from core.review.sightings import CandidateInput, submit_sighting
from core.service import review
from core.service.app import App
from core.service.history import audit_rows
from core.settings import EngineSettings, Settings, sqlite_url
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Photo, Sighting, User

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"
SIZE = (200, 150)  # large enough for searches to use once it joins the gallery


@pytest.fixture
def app(tmp_path: Path) -> App:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(
        home=home,
        database_url=sqlite_url(home),
        engine=EngineSettings(extractor="sift", max_side=256, device="cpu"),
        session_secret=b"k" * 32,
    )
    init_db(settings.database_url).dispose()
    return App(settings)


def _world(app: App) -> dict[str, int]:
    """T-1 in the gallery; alice sent a left+right encounter proposing T-1, and one single photo."""
    with session_scope(app.db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = users.create_user(session, "alice", PASSWORD, actor=admin)
        users.create_user(session, "bob", PASSWORD, "reviewer", actor=admin)
        t1, _ = get_or_create_individual(session, "T-1")
        add_photo(session, app.store, image_bytes(1), suffix=".png", individual=t1, width=32, height=24)
        ranked = [CandidateInput(t1.id, 1, 3.0, 0.8, 30)]  # type: ignore[arg-type]
        done = submit_encounter(
            session,
            app.store,
            alice,
            EncounterFields(observer="Ana", tags=["nesting"]),
            [
                EncounterPhoto(image_bytes(2, size=SIZE), "left", ranked, 0.2),
                EncounterPhoto(image_bytes(3, size=SIZE), "right", ranked, 0.1),
            ],
            proposal="same",
            proposed_individual_id=t1.id,
            combined=ShownRanking([CombinedInput(t1.id, 0.97, 5.5, (2.0, 3.5))], 0.03),  # type: ignore[arg-type]
        )
        single = submit_sighting(
            session, app.store, alice, image_bytes(4), candidates=[], new_individual_probability=None
        )
        return {
            "t1": t1.id,  # type: ignore[dict-item]
            "encounter": done.encounter.id,  # type: ignore[dict-item]
            "first": done.submissions[0].sighting.id,  # type: ignore[dict-item]
            "second": done.submissions[1].sighting.id,  # type: ignore[dict-item]
            "single": single.sighting.id,  # type: ignore[dict-item]
        }


def _user(app: App, name: str) -> User:
    with session_scope(app.db) as session:
        user = session.exec(users.select(User).where(User.username == name)).one()  # type: ignore[attr-defined]
        session.expunge(user)
        return user


def test_the_queue_lists_an_encounter_once_with_its_combined_ranking(app: App) -> None:
    ids = _world(app)
    bob = _user(app, "bob")
    assert review.queue(app, bob) == [ids["first"], ids["single"]]
    found = review.encounter_review(app, ids["second"])
    assert found is not None and found.encounter.id == ids["encounter"]
    assert [i.detail.sighting.id for i in found.items] == [ids["first"], ids["second"]]
    assert [i.detail.sighting.side for i in found.items] == ["left", "right"]
    assert found.combined == ShownRanking([CombinedInput(ids["t1"], 0.97, 5.5, (2.0, 3.5))], 0.03)
    assert found.code(ids["t1"]) == "T-1" and found.encounter.tag_list == ["nesting"]
    assert review.encounter_review(app, ids["single"]) is None  # one photo: reviewed as before


def test_one_vote_in_review_decides_every_photo_and_single_sightings_are_unchanged(app: App) -> None:
    ids = _world(app)
    bob = _user(app, "bob")
    settled = review.vote(app, bob, ids["second"], "same", ids["t1"], "both sides match")
    assert (settled.photos, settled.code, settled.outcome.applied) == (2, "T-1", True)
    with session_scope(app.db) as session:
        for key in ("first", "second"):
            sighting = session.get(Sighting, ids[key])
            photo = session.get(Photo, sighting.photo_id)
            assert (sighting.status, photo.in_gallery, photo.individual_id) == ("decided", True, ids["t1"])
        assert session.get(Sighting, ids["single"]).status == "pending"
    assert review.queue(app, bob) == [ids["single"]]
    single = review.vote(app, bob, ids["single"], "unsure", None)
    assert (single.photos, single.outcome.status) == (1, "pending")


def test_an_admin_decides_an_encounter_at_once(app: App) -> None:
    ids = _world(app)
    settled = review.decide(app, _user(app, "admin"), ids["first"], "new", None)
    assert settled.photos == 2
    with session_scope(app.db) as session:
        owners = {session.get(Photo, session.get(Sighting, ids[k]).photo_id).individual_id for k in ("first", "second")}
    assert len(owners) == 1 and ids["t1"] not in owners  # one new individual for both photos


def test_the_log_says_what_encounter_was_sent(app: App) -> None:
    ids = _world(app)
    with session_scope(app.db) as session:
        rows = [r for r in audit_rows(session) if r.action == "encounter.create"]
    assert [r.summary for r in rows] == [
        f"Sent encounter #{ids['encounter']} with 2 photos (sightings #{ids['first']}, #{ids['second']}; left, "
        "right; best together T-1 at 97%)."
    ]
