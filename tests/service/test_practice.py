"""core.service.practice: questions never one's own and never naming the answer, the stored search reused while
the gallery around it is unchanged, answers checked and kept, bad answers refused, agreement rates for admins."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.photos import image_bytes
from sqlmodel import select

from core.engine.matching import MatchResult
from core.review import curation, users
from core.review.rules import ReviewConfig
from core.review.sightings import submit_sighting
from core.service import practice
from core.service.app import App
from core.service.evidence import Evidence, EvidenceCandidate, EvidencePhoto, keep, stored
from core.service.practice import NEW, PracticeError
from core.settings import EngineSettings, Settings, sqlite_url
from core.store.db import init_db
from core.store.feedback import PracticeAnswer
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Photo, User, Vote

pytestmark = pytest.mark.usefixtures("cheap_hashing")
PASSWORD = "correct horse battery"


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


def _candidate(code: str, photo: Photo, path: Path, probability: float) -> EvidenceCandidate:
    rng = np.random.default_rng(len(code))
    points = rng.uniform(0, 200, size=(12, 2)).astype(np.float32)
    match = MatchResult(np.arange(12), np.arange(12), np.full(12, 0.8, np.float32), points, points + 1, n0=300, n1=300)
    shown = EvidencePhoto(path, None, 0, photo.sha256, photo.id)
    return EvidenceCandidate(code, None, probability, 4.0, 12, 12, shown, match, (256, 192), 0.1, 0.05)


@pytest.fixture
def world(app: App) -> dict[str, int]:
    """T-0001 (2 photos) and T-0002; alice's sightings: one decided as T-0001, one as a new individual (T-0003),
    each with the search she saw (T-0001 first, then T-0002)."""
    once = ReviewConfig(required_votes=1)
    with app.session() as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = users.create_user(session, "alice", PASSWORD, actor=admin)
        bob = users.create_user(session, "bob", PASSWORD, actor=admin)
        t1, _ = get_or_create_individual(session, "T-0001")
        t2, _ = get_or_create_individual(session, "T-0002")
        p1, _ = add_photo(session, app.store, image_bytes(1), suffix=".png", individual=t1, width=32, height=24)
        add_photo(session, app.store, image_bytes(2), suffix=".png", individual=t1, width=32, height=24)
        p2, _ = add_photo(session, app.store, image_bytes(3), suffix=".png", individual=t2, width=32, height=24)
        ids = {"admin": admin.id, "alice": alice.id, "bob": bob.id, "t1": t1.id, "t2": t2.id}
        for name, seed, proposal, named in (("same", 10, "same", t1.id), ("new", 11, "new", None)):
            sent = submit_sighting(
                session,
                app.store,
                alice,
                image_bytes(seed),
                candidates=[],
                new_individual_probability=0.2,
                proposal=proposal,
                proposed_individual_id=named,
                original_name="T-0001_left.jpg",
                side="left",
                config=once,
            )
            evidence = Evidence(
                "lightglue",
                0.5,
                (256, 192),
                0.2,
                np.linspace(0, 0.4, 50, dtype=np.float32),
                [
                    _candidate("T-0001", p1, app.store.path(p1.path), 0.7),
                    _candidate("T-0002", p2, app.store.path(p2.path), 0.1),
                ],
            )
            keep(session, sent.sighting.id, evidence, "test")  # type: ignore[arg-type]
            ids[name] = sent.sighting.id  # type: ignore[assignment]
        return ids  # type: ignore[return-value]


def _user(app: App, user_id: int) -> User:
    with app.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
        return user


def test_questions_are_others_and_do_not_name_the_answer(app: App, world: dict[str, int]) -> None:
    alice, bob = _user(app, world["alice"]), _user(app, world["bob"])
    assert practice.next_question(app, alice) is None  # both decided sightings are her own
    asked = {practice.next_question(app, bob, seed=s).sighting_id for s in range(12)}  # type: ignore[union-attr]
    assert asked == {world["same"], world["new"]}
    question = practice.next_question(app, bob, skip=[world["new"]])
    assert question is not None and question.sighting_id == world["same"]
    assert [f.name for f in dataclasses.fields(question)] == ["sighting_id", "photo_path", "crop", "rotation", "side"]
    assert "T-0001" not in str(question) and question.side == "left"  # not the file name it was sent as
    search = practice.search(app, question)
    assert (search.stored, search.choices) == (True, ["T-0001", "T-0002"])
    assert not app.engine_loaded  # the submitter's search was reused: nothing was matched again


def test_who_voted_on_a_sighting_is_not_asked_it(app: App, world: dict[str, int]) -> None:
    with app.session() as session:
        session.add(Vote(sighting_id=world["same"], user_id=world["bob"], decision="same", individual_id=world["t1"]))
    bob = _user(app, world["bob"])
    assert {practice.next_question(app, bob, seed=s).sighting_id for s in range(8)} == {world["new"]}  # type: ignore[union-attr]


def test_answers_are_checked_explained_and_kept(app: App, world: dict[str, int]) -> None:
    bob, admin = _user(app, world["bob"]), _user(app, world["admin"])
    shown = ["T-0001", "T-0002"]
    wrong = practice.answer(app, bob, world["same"], "T-0002", shown)
    assert (wrong.correct, wrong.right) == (False, "T-0001")
    assert wrong.explanation.startswith("This is T-0001, as decided in review; the search ranked it 1st.")
    right = practice.answer(app, bob, world["new"], NEW, shown)
    assert (right.correct, right.right) == (True, NEW)
    assert "recorded as a new individual, now T-0003" in right.explanation
    again = practice.answer(app, bob, world["same"], "T-0001", shown)
    assert again.correct is True
    # bob has answered both, so he is asked again rather than left without practice
    assert practice.next_question(app, bob) is not None
    rates = practice.agreement(app, admin)
    assert [(r.username, r.answers, r.correct) for r in rates] == [("bob", 3, 2)]
    assert math.isclose(rates[0].rate, 2 / 3)
    with app.session() as session:
        rows = session.exec(select(PracticeAnswer).order_by(PracticeAnswer.id)).all()
        assert [(r.sighting_id, r.answer_individual_id, r.answered_new, r.correct) for r in rows] == [
            (world["same"], world["t2"], False, False),
            (world["new"], None, True, True),
            (world["same"], world["t1"], False, True),
        ]


def test_bad_answers_are_refused_and_change_nothing(app: App, world: dict[str, int]) -> None:
    alice, bob = _user(app, world["alice"]), _user(app, world["bob"])
    shown = ["T-0001", "T-0002"]
    with pytest.raises(PracticeError, match="your own sighting"):
        practice.answer(app, alice, world["same"], "T-0001", shown)
    with pytest.raises(PracticeError, match="not one of the choices"):
        practice.answer(app, bob, world["same"], "T-0009", shown)
    with pytest.raises(PracticeError, match="no decided sighting 999"):
        practice.answer(app, bob, 999, NEW, shown)
    with pytest.raises(users.PermissionDenied):
        practice.agreement(app, bob)
    with app.session() as session:
        assert session.exec(select(PracticeAnswer)).all() == []


def test_a_changed_gallery_means_searching_again(app: App, world: dict[str, int]) -> None:
    """After T-0002 is merged into T-0001, the stored ranking offers a choice that no longer exists."""
    with app.session() as session:
        kept = stored(session, app.store, world["same"])
        assert kept is not None and practice._unchanged(session, kept)
        curation.merge(session, session.get(User, world["admin"]), "T-0002", "T-0001")  # type: ignore[arg-type]
        assert not practice._unchanged(session, kept)
    # the merged choice still counts as its survivor
    assert practice.answer(app, _user(app, world["bob"]), world["same"], "T-0002", ["T-0001", "T-0002"]).correct
