"""core.review.encounters: validating and submitting an encounter, and voting on all its photos at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from core.review.encounters import (
    MAX_TAGS,
    CombinedInput,
    EncounterError,
    EncounterFields,
    EncounterPhoto,
    ShownRanking,
    cast_encounter_vote,
    decide_encounter,
    encounter_photos,
    shown_ranking,
    submit_encounter,
)
from core.review.rules import AlreadyVoted, ReviewConfig, ReviewError
from core.review.sightings import CandidateInput, submit_sighting
from core.review.users import create_user
from core.store.db import session_scope
from core.store.fieldwork import Encounter, Site, Species
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import AuditLog, Individual, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"
WHEN = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)


@pytest.fixture
def ids(engine: Engine, store: PhotoStore) -> dict[str, int]:
    """alice (volunteer), carol (reviewer), T-0001 with a gallery photo, one site and one species."""
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = create_user(session, "alice", PASSWORD, actor=admin)
        carol = create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        t1, _ = get_or_create_individual(session, "T-0001")
        add_photo(session, store, image_bytes(1), suffix=".png", individual=t1, width=32, height=24)
        site = Site(name="Bay", region="North", latitude=-20.0, longitude=57.5, radius_km=5)
        session.add_all([site, Species(name="Green turtle", scientific_name="Chelonia mydas")])
        session.flush()
        return {"alice": alice.id, "carol": carol.id, "t1": t1.id, "site": site.id}  # type: ignore[dict-item]


def _photos(t1: int) -> list[EncounterPhoto]:
    ranked = [CandidateInput(t1, 1, 3.0, 0.8, 40)]
    return [
        EncounterPhoto(image_bytes(10), "left", ranked, 0.15, original_name="left.png"),
        EncounterPhoto(image_bytes(11), "right", ranked, 0.1, original_name="right.png"),
    ]


def _submit(engine: Engine, store: PhotoStore, ids: dict[str, int], fields: EncounterFields, **kw):
    with session_scope(engine) as session:
        alice = session.get(User, ids["alice"])
        done = submit_encounter(session, store, alice, fields, kw.pop("photos", _photos(ids["t1"])), **kw)
        return done.encounter.id, [s.sighting.id for s in done.submissions]


def _counts(session: Session) -> tuple[int, int, int, int]:
    return tuple(  # type: ignore[return-value]
        session.exec(select(func.count()).select_from(model)).one() for model in (Encounter, Sighting, Photo, Vote)
    )


def test_an_encounter_is_one_row_and_one_sighting_per_photo_with_its_side(engine, store, ids) -> None:
    fields = EncounterFields(
        taken_at=WHEN,
        site_id=ids["site"],
        latitude=-20.01,
        longitude=57.52,
        observer="  Ana  ",
        species="Green turtle",
        notes="Nesting beach",
        tags=["nesting", "tagged", "nesting", " "],
    )
    encounter_id, sightings = _submit(engine, store, ids, fields, proposal="same", proposed_individual_id=ids["t1"])
    with session_scope(engine) as session:
        encounter = session.get(Encounter, encounter_id)
        assert (encounter.observer, encounter.species, encounter.site_id) == ("Ana", "Green turtle", ids["site"])
        assert encounter.tag_list == ["nesting", "tagged"]
        assert encounter.taken_at == WHEN and (encounter.latitude, encounter.longitude) == (-20.01, 57.52)
        rows = encounter_photos(session, encounter_id)
        assert [s.id for s, _ in rows] == sightings
        assert [(s.side, p.side, p.original_name) for s, p in rows] == [
            ("left", "left", "left.png"),
            ("right", "right", "right.png"),
        ]
        assert all(s.encounter_id == encounter_id and s.taken_at == WHEN for s, _ in rows)
        votes = session.exec(select(Vote).order_by(Vote.sighting_id)).all()
        assert [(v.sighting_id, v.user_id, v.decision, v.individual_id) for v in votes] == [
            (sightings[0], ids["alice"], "same", ids["t1"]),
            (sightings[1], ids["alice"], "same", ids["t1"]),
        ]
        entry = session.exec(select(AuditLog).where(AuditLog.action == "encounter.create")).one()
        assert entry.target_id == encounter_id and entry.payload["after"]["sides"] == ["left", "right"]


BAD = [
    (EncounterFields(taken_at=datetime.now(UTC) + timedelta(days=2)), "in the future"),
    (EncounterFields(taken_at=datetime(1850, 1, 1)), "before 1900"),
    (EncounterFields(latitude=91, longitude=0), "latitude must lie between -90 and 90"),
    (EncounterFields(latitude=0, longitude=-180.5), "longitude must lie between -180 and 180"),
    (EncounterFields(latitude=float("nan"), longitude=0), "latitude must lie"),
    (EncounterFields(latitude="north", longitude=0), "latitude must be a number"),  # type: ignore[arg-type]
    (EncounterFields(latitude=10.0), "both the latitude and the longitude"),
    (EncounterFields(site_id=999), "There is no site 999"),
    (EncounterFields(species="Leatherback"), "'Leatherback' is not in the project's species list"),
    (EncounterFields(tags=[f"t{i}" for i in range(MAX_TAGS + 1)]), "at most 20 tags, not 21"),
    (EncounterFields(tags=["x" * 41]), "too long: at most 40 characters"),
    (EncounterFields(tags=["bad\x00tag"]), "tag contains control characters"),
    (EncounterFields(observer="o" * 201), "observer is too long: at most 200"),
    (EncounterFields(observer="Ana\nBob"), "observer contains control characters"),
    (EncounterFields(notes="n" * 10_001), "notes is too long"),
    (EncounterFields(notes="bell\x07"), "notes contains control characters"),
]


@pytest.mark.parametrize(("fields", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_stored(engine, store, ids, fields, message) -> None:
    with session_scope(engine) as session:
        before = _counts(session)
    with pytest.raises(EncounterError, match=message):
        _submit(engine, store, ids, fields, proposal="new")
    with session_scope(engine) as session:
        assert _counts(session) == before


def test_bad_photos_are_refused_and_nothing_is_stored(engine, store, ids) -> None:
    with session_scope(engine) as session:
        before = _counts(session)
        alice = session.get(User, ids["alice"])
        earlier = submit_sighting(
            session, store, alice, image_bytes(20), candidates=[], new_individual_probability=None
        ).sighting.id
        before = _counts(session)
    twice = [EncounterPhoto(image_bytes(12), "left"), EncounterPhoto(image_bytes(12), "right")]
    again = [EncounterPhoto(image_bytes(13), "left"), EncounterPhoto(image_bytes(20), "right", original_name="r.png")]
    broken = [EncounterPhoto(image_bytes(14), "left"), EncounterPhoto(b"not a photo", "right")]
    side = [EncounterPhoto(image_bytes(15), "left"), EncounterPhoto(image_bytes(16), "belly")]
    cases = [
        ([], "at least one photo"),
        (twice, "Photo 2 is the same file as photo 1"),
        (again, f"Photo 2 \\(r.png\\) was already submitted as sighting {earlier}"),
        (broken, "photo|image|format"),
        (side, "side must be one of"),
    ]
    for photos, message in cases:
        with pytest.raises(Exception, match=message):
            _submit(engine, store, ids, EncounterFields(), photos=photos, proposal="new")
        with session_scope(engine) as session:
            assert _counts(session) == before, message


def test_a_bad_proposal_is_refused_before_anything_is_stored(engine, store, ids) -> None:
    with session_scope(engine) as session:
        before = _counts(session)
    with pytest.raises(ReviewError, match="must say which individual"):
        _submit(engine, store, ids, EncounterFields(), proposal="same")
    with session_scope(engine) as session:
        assert _counts(session) == before


def test_one_vote_decides_every_photo_of_the_encounter_together(engine, store, ids) -> None:
    encounter_id, sightings = _submit(
        engine, store, ids, EncounterFields(taken_at=WHEN), proposal="same", proposed_individual_id=ids["t1"]
    )
    with session_scope(engine) as session:
        carol = session.get(User, ids["carol"])
        outcomes = cast_encounter_vote(session, carol, encounter_id, "same", ids["t1"])
        assert [(o.sighting_id, o.status, o.applied, o.individual_id) for o in outcomes] == [
            (sightings[0], "decided", True, ids["t1"]),
            (sightings[1], "decided", True, ids["t1"]),
        ]
    with session_scope(engine) as session:
        photos = [p for _, p in encounter_photos(session, encounter_id)]
        assert [(p.in_gallery, p.individual_id) for p in photos] == [(True, ids["t1"])] * 2
        carol = session.get(User, ids["carol"])
        with pytest.raises(AlreadyVoted, match="already voted on encounter"):
            cast_encounter_vote(session, carol, encounter_id, "new")


def test_a_new_individual_decided_for_an_encounter_is_one_individual(engine, store, ids) -> None:
    encounter_id, _ = _submit(engine, store, ids, EncounterFields(), proposal="new")
    with session_scope(engine) as session:
        before = session.exec(select(func.count()).select_from(Individual)).one()
        cast_encounter_vote(session, session.get(User, ids["carol"]), encounter_id, "new")
    with session_scope(engine) as session:
        owners = {p.individual_id for _, p in encounter_photos(session, encounter_id)}
        assert len(owners) == 1 and None not in owners
        assert session.exec(select(func.count()).select_from(Individual)).one() == before + 1


def test_with_one_required_vote_the_proposal_decides_all_photos_as_one_new_individual(engine, store, ids) -> None:
    encounter_id, _ = _submit(
        engine, store, ids, EncounterFields(), proposal="new", config=ReviewConfig(required_votes=1)
    )
    with session_scope(engine) as session:
        owners = [p.individual_id for _, p in encounter_photos(session, encounter_id)]
        assert owners[0] is not None and owners == [owners[0]] * 2


def test_one_photo_encounter_of_a_photo_sent_before_links_to_its_sighting(engine, store, ids) -> None:
    one = [EncounterPhoto(image_bytes(30), "left")]
    first, [sighting] = _submit(engine, store, ids, EncounterFields(), photos=one)
    again, [same] = _submit(engine, store, ids, EncounterFields(), photos=one)
    assert (again, same) == (first, sighting)
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(Encounter)).one() == 1


def test_fields_left_empty_come_from_the_photos(engine, store, ids) -> None:
    fields = replace(EncounterFields(), tags=())
    encounter_id, _ = _submit(engine, store, ids, fields)
    with session_scope(engine) as session:
        encounter = session.get(Encounter, encounter_id)
        assert encounter.taken_at is None and encounter.latitude is None  # the test photos carry no EXIF
        assert encounter.tag_list == [] and encounter.site_id is None


def test_the_combined_ranking_the_submitter_saw_is_kept_with_the_encounter(engine, store, ids) -> None:
    shown = ShownRanking([CombinedInput(ids["t1"], 0.97, 5.5, (3.0, 2.5))], 0.03)
    encounter_id, _ = _submit(engine, store, ids, EncounterFields(), combined=shown)
    with session_scope(engine) as session:
        assert shown_ranking(session, encounter_id) == shown
    single, _ = _submit(engine, store, ids, EncounterFields(), photos=[EncounterPhoto(image_bytes(40), "top")])
    with session_scope(engine) as session:
        assert shown_ranking(session, single) is None
    with session_scope(engine) as session:
        before = _counts(session)
    bad = ShownRanking([CombinedInput(ids["t1"], 1.5, 5.5, (3.0, 2.5))], 0.0)
    photos = [EncounterPhoto(image_bytes(41), "left"), EncounterPhoto(image_bytes(42), "right")]
    with pytest.raises(EncounterError, match="between 0 and 1"):
        _submit(engine, store, ids, EncounterFields(), photos=photos, combined=bad)
    with session_scope(engine) as session:
        assert _counts(session) == before


def test_an_admin_decides_every_open_photo_of_an_encounter(engine, store, ids) -> None:
    encounter_id, sightings = _submit(engine, store, ids, EncounterFields(), proposal="unsure")
    with session_scope(engine) as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        outcomes = decide_encounter(session, admin, encounter_id, "same", ids["t1"])
        assert [(o.sighting_id, o.status, o.individual_id) for o in outcomes] == [
            (sightings[0], "decided", ids["t1"]),
            (sightings[1], "decided", ids["t1"]),
        ]
    with session_scope(engine) as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        with pytest.raises(EncounterError, match="no open sighting"):
            decide_encounter(session, admin, encounter_id, "new")
