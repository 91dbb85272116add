"""core.curation and core.audit: admin-only gallery curation, its audit trail and undo; ``curate`` CLI.

Runs on SQLite files, and also on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set (wiped first).
Every test checks the database after each action, not only the return values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import cli
from core.review import users
from core.review.curation import (
    UNDOABLE,
    CurationError,
    edit_notes,
    merge,
    move_photo,
    remove_photo,
    rename,
    retire,
    set_species,
    split,
    undo,
)
from core.review.rules import ReviewConfig
from core.review.sightings import submit_sighting
from core.review.users import PermissionDenied, create_user
from core.review.votes import cast_vote, decide
from core.store.audit import entries_for_individual, entries_for_target, entries_for_user, jsonable, record
from core.store.db import session_scope
from core.store.gallery import add_photo, gallery_entries, get_or_create_individual, resolve_merged
from core.store.integrity import check_database
from core.store.models import AuditLog, Individual, Photo, Sighting, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@dataclass
class World:
    admin: int
    vol: int
    a: int  # T-0001 "Alpha": photos a1, a2, a3; a3 came in through a decided sighting
    b: int  # T-0002 "Beta": photos b1, b2
    a1: int
    a2: int
    a3: int
    b1: int
    b2: int
    sighting: int


@pytest.fixture
def world(engine: Engine, store: PhotoStore) -> World:
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        vol = create_user(session, "vol", PASSWORD, "volunteer", actor=admin)
        a, _ = get_or_create_individual(session, "T-0001", "Alpha")
        b, _ = get_or_create_individual(session, "T-0002", "Beta")

        def photo(seed: int, individual: Individual) -> int:
            row, _ = add_photo(
                session, store, image_bytes(seed), suffix=".png", individual=individual, width=32, height=24
            )
            return row.id  # type: ignore[return-value]

        a1, a2, b1, b2 = photo(1, a), photo(2, a), photo(3, b), photo(4, b)
        submission = submit_sighting(
            session,
            store,
            vol,
            image_bytes(5),
            candidates=[],
            new_individual_probability=None,
            proposal="same",
            proposed_individual_id=a.id,
            config=ReviewConfig(required_votes=1),
        )
        assert submission.outcome is not None and submission.outcome.applied
        return World(
            admin.id,
            vol.id,
            a.id,
            b.id,
            a1,
            a2,
            submission.photo.id,
            b1,
            b2,
            submission.sighting.id,  # type: ignore[arg-type]
        )


def _admin(session: Session, world: World) -> User:
    return session.get(User, world.admin)  # type: ignore[return-value]


def _state(engine: Engine) -> dict:
    """Everything curation may change: individuals, photo owners and gallery flags, sighting owners."""
    with session_scope(engine) as session:
        individuals = session.exec(select(Individual).order_by(col(Individual.id))).all()
        photos = session.exec(select(Photo).order_by(col(Photo.id))).all()
        sightings = session.exec(select(Sighting).order_by(col(Sighting.id))).all()
        return {
            "individuals": [(i.id, i.code, i.name, i.status, i.merged_into_id, i.notes) for i in individuals],
            "species": [(i.id, i.species) for i in individuals],
            "photos": [(p.id, p.individual_id, p.in_gallery) for p in photos],
            "sightings": [(s.id, s.decided_individual_id) for s in sightings],
        }


def _owners(engine: Engine) -> dict[int, int | None]:
    return {pid: owner for pid, owner, _ in _state(engine)["photos"]}


# --- permissions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        lambda s, u, w: rename(s, u, w.a, "Renamed"),
        lambda s, u, w: edit_notes(s, u, w.a, "notes"),
        lambda s, u, w: merge(s, u, w.a, w.b),
        lambda s, u, w: split(s, u, w.a, [w.a1]),
        lambda s, u, w: move_photo(s, u, w.a1, w.b),
        lambda s, u, w: remove_photo(s, u, w.a1),
        lambda s, u, w: retire(s, u, w.a),
        lambda s, u, w: undo(s, u, 1),
    ],
    ids=["rename", "notes", "merge", "split", "move", "remove", "retire", "undo"],
)
def test_volunteer_cannot_curate(engine: Engine, world: World, action) -> None:
    before = _state(engine)
    with session_scope(engine) as session:
        audit_count = len(session.exec(select(AuditLog)).all())
    with (
        pytest.raises(PermissionDenied, match="'vol' is a volunteer; only a admin may"),
        session_scope(engine) as s,
    ):
        action(s, s.get(User, world.vol), world)
    assert _state(engine) == before
    with session_scope(engine) as session:
        assert len(session.exec(select(AuditLog)).all()) == audit_count


def test_disabled_admin_cannot_curate(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        second = create_user(session, "admin2", PASSWORD, "admin", actor=_admin(session, world))
        users.disable_user(session, second, "admin")
    before = _state(engine)
    with pytest.raises(PermissionDenied, match="disabled"), session_scope(engine) as session:
        retire(session, session.get(User, world.admin), world.a)  # type: ignore[arg-type]
    assert _state(engine) == before


# --- merge and undo ----------------------------------------------------------------------------------


def test_merge_then_undo(engine: Engine, store: PhotoStore, world: World) -> None:
    before = _state(engine)
    with session_scope(engine) as session:
        entry = merge(session, _admin(session, world), "T-0001", "T-0002")
        entry_id = entry.id
    assert entry.action == "individual.merge"
    assert entry.payload["photo_ids"] == [world.a1, world.a2, world.a3]
    assert entry.payload["sighting_ids"] == [world.sighting]
    assert entry.payload["before"] == {"status": "active", "merged_into_id": None}
    assert entry.payload["after"] == {"status": "merged", "merged_into_id": world.b}

    merged = _state(engine)
    assert merged["individuals"][:2] == [
        (world.a, "T-0001", "Alpha", "merged", world.b, ""),
        (world.b, "T-0002", "Beta", "active", None, ""),
    ]
    assert set(_owners(engine).values()) == {world.b}
    assert merged["sightings"] == [(world.sighting, world.b)]
    with session_scope(engine) as session:
        old = session.exec(select(Individual).where(Individual.code == "T-0001")).one()
        assert resolve_merged(session, old).code == "T-0002"  # the old code stays resolvable
        assert {e.individual_code for e in gallery_entries(session, store)} == {"T-0002"}
        assert len(gallery_entries(session, store)) == 5
        assert [e.action for e in entries_for_individual(session, world.a)][-1] == "individual.merge"
        assert [e.action for e in entries_for_individual(session, world.b)][-1] == "individual.merge"

    with session_scope(engine) as session:
        reverted = undo(session, _admin(session, world), entry_id)  # type: ignore[arg-type]
    assert (reverted.action, reverted.reverts_id) == ("individual.merge.undo", entry_id)
    assert _state(engine) == before
    with session_scope(engine) as session:
        assert sorted(e.individual_code for e in gallery_entries(session, store)) == ["T-0001"] * 3 + ["T-0002"] * 2

    with pytest.raises(CurationError, match="already undone"), session_scope(engine) as session:
        undo(session, _admin(session, world), entry_id)  # type: ignore[arg-type]
    assert _state(engine) == before
    with pytest.raises(IntegrityError), session_scope(engine) as session:  # the database enforces it too
        record(session, None, "x", ("individual", world.a), None, None, reverts=session.get(AuditLog, entry_id))


def test_merge_rules(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        admin = _admin(session, world)
        with pytest.raises(CurationError, match="cannot be merged into itself"):
            merge(session, admin, world.a, "T-0001")
        c, _ = get_or_create_individual(session, "T-0003")
        c.status = "retired"
    with (
        pytest.raises(CurationError, match="T-0003 is retired; the individual merged into"),
        session_scope(engine) as session,
    ):
        merge(session, _admin(session, world), world.a, "T-0003")
    with (
        pytest.raises(CurationError, match="There is no individual 'T-9999'"),
        session_scope(engine) as session,
    ):
        merge(session, _admin(session, world), "T-9999", world.a)
    with session_scope(engine) as session:
        merge(session, _admin(session, world), "T-0003", world.a)  # a retired source may be merged
        merge(session, _admin(session, world), world.a, world.b)
    with pytest.raises(CurationError, match="T-0001 was already merged"), session_scope(engine) as session:
        merge(session, _admin(session, world), world.a, world.b)
    with session_scope(engine) as session:
        # Merging into a merged code lands on its survivor.
        d, _ = get_or_create_individual(session, "T-0004")
        entry = merge(session, _admin(session, world), d, "T-0001")
        assert entry.payload["target_id"] == world.b


def _pending(engine: Engine, store: PhotoStore, world: World, seed: int) -> tuple[int, int]:
    """A new pending sighting by the volunteer (no proposal): its id and its photo's."""
    with session_scope(engine) as session:
        submission = submit_sighting(
            session,
            store,
            session.get(User, world.vol),  # type: ignore[arg-type]
            image_bytes(seed),
            candidates=[],
            new_individual_probability=None,
        )
        return submission.sighting.id, submission.photo.id  # type: ignore[return-value]


def _votes(engine: Engine, sighting: int, *individuals: int | str) -> None:
    """One "same as" vote per individual (id or code), each by a new reviewer; two concordant votes decide."""
    for individual in individuals:
        with session_scope(engine) as session:
            admin = session.exec(select(User).where(User.username == "admin")).one()
            count = len(session.exec(select(User.id)).all())
            reviewer = create_user(session, f"reviewer{count}", PASSWORD, "reviewer", actor=admin)
            if isinstance(individual, str):
                individual = session.exec(select(Individual.id).where(Individual.code == individual)).one()
            cast_vote(session, reviewer, sighting, "same", individual)  # type: ignore[arg-type]


def _check(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return check_database(session)


def test_undoing_a_merge_takes_back_what_was_decided_into_the_merged_individual(
    engine: Engine, store: PhotoStore, world: World
) -> None:
    """Issue 15: a sighting decided "same as T-0001" while T-0001 was merged into T-0002 stayed on T-0002 after the
    undo, and ``check`` was clean. Now it goes back with T-0001; one decided as T-0002 stays; one whose votes named
    both (they only agreed because of the merge) stays and is listed for an admin; an admin's decision counts too."""
    for_a, photo_a = _pending(engine, store, world, 20)
    for_b, photo_b = _pending(engine, store, world, 21)
    mixed, photo_mixed = _pending(engine, store, world, 22)
    by_admin, photo_admin = _pending(engine, store, world, 23)
    with session_scope(engine) as session:
        merge_id = merge(session, _admin(session, world), world.a, world.b).id
    _votes(engine, for_a, world.a, "T-0001")  # the merged code, which still resolves
    _votes(engine, for_b, world.b, world.b)
    _votes(engine, mixed, world.a, world.b)
    with session_scope(engine) as session:
        decide(session, _admin(session, world), by_admin, "same", world.a)
    owners = _owners(engine)
    assert [owners[p] for p in (photo_a, photo_b, photo_mixed, photo_admin)] == [world.b] * 4
    assert _check(engine) == []

    with session_scope(engine) as session:
        entry = undo(session, _admin(session, world), merge_id)  # type: ignore[arg-type]
    assert entry.payload["after"]["sightings_moved_back"] == [for_a, by_admin]
    assert entry.payload["after"]["sightings_kept"] == [mixed]
    owners = _owners(engine)
    assert [owners[p] for p in (photo_a, photo_b, photo_mixed, photo_admin)] == [world.a, world.b, world.b, world.a]
    assert [owners[p] for p in (world.a1, world.a2, world.a3, world.b1, world.b2)] == [world.a] * 3 + [world.b] * 2
    sightings = dict(_state(engine)["sightings"])
    assert [sightings[s] for s in (for_a, for_b, mixed, by_admin)] == [world.a, world.b, world.b, world.a]
    assert _check(engine) == []


def test_check_reports_photos_and_sightings_left_on_a_merged_individual(
    engine: Engine, store: PhotoStore, world: World
) -> None:
    with session_scope(engine) as session:
        merge(session, _admin(session, world), world.a, world.b)
    assert _check(engine) == []
    with session_scope(engine) as session:  # what an undo that forgot them (or a damaged restore) leaves behind
        photo, sighting = session.get(Photo, world.a3), session.get(Sighting, world.sighting)
        photo.individual_id = sighting.decided_individual_id = world.a  # type: ignore[union-attr]
        session.add_all([photo, sighting])
    assert _check(engine) == [
        f"photo {world.a3} belongs to T-0001, which was merged into another individual",
        f"sighting {world.sighting} is decided as T-0001, which was merged into another individual",
    ]


def test_a_moved_pending_photo_is_not_overridden_by_the_later_consensus(
    engine: Engine, store: PhotoStore, world: World
) -> None:
    """Issue 15: an admin moved a pending sighting's photo to T-0002, then two votes "same as T-0001" silently put
    it back. Now votes that disagree with the move make a conflict for an admin; votes that agree decide."""
    disputed, photo = _pending(engine, store, world, 30)
    agreed, agreed_photo = _pending(engine, store, world, 31)
    with session_scope(engine) as session:
        admin = _admin(session, world)
        move_photo(session, admin, photo, world.b)
        agreed_move = move_photo(session, admin, agreed_photo, world.b).id
    _votes(engine, disputed, world.a, world.a)
    _votes(engine, agreed, world.b, world.b)
    with session_scope(engine) as session:
        first, second = session.get(Sighting, disputed), session.get(Sighting, agreed)
        assert (first.status, first.decided_individual_id) == ("conflict", None)  # type: ignore[union-attr]
        assert (second.status, second.decided_individual_id) == ("decided", world.b)  # type: ignore[union-attr]
        assert session.exec(
            select(AuditLog).where(AuditLog.action == "sighting.conflict", AuditLog.target_id == disputed)
        ).one()
    owners = _owners(engine)
    assert (owners[photo], owners[agreed_photo]) == (world.b, world.b)
    with session_scope(engine) as session:  # the admin settles the conflict
        decide(session, _admin(session, world), disputed, "same", world.a)
    assert _owners(engine)[photo] == world.a
    # A decided photo's move can no longer be undone into "no individual": that would undo the decision.
    with pytest.raises(CurationError, match=f"Photo {agreed_photo} was decided since"), session_scope(engine) as s:
        undo(s, _admin(s, world), agreed_move)
    assert _owners(engine)[agreed_photo] == world.b
    assert _check(engine) == []


# --- split, move, remove, retire, rename ---------------------------------------------------------------


def test_split_into_new_individual_and_undo(engine: Engine, world: World) -> None:
    before = _state(engine)
    with session_scope(engine) as session:
        entry = split(session, _admin(session, world), "T-0001", [world.a3, world.a2], name="Gamma")
        entry_id, new_id = entry.id, entry.payload["target_id"]
    assert (entry.payload["created"], entry.payload["target_code"], entry.payload["photo_ids"]) == (
        True,
        "T-0003",
        [world.a2, world.a3],
    )
    owners = _owners(engine)
    assert (owners[world.a1], owners[world.a2], owners[world.a3]) == (world.a, new_id, new_id)
    state = _state(engine)
    assert state["sightings"] == [(world.sighting, new_id)]  # the sighting follows its photo
    assert state["individuals"][-1] == (new_id, "T-0003", "Gamma", "active", None, "")

    with session_scope(engine) as session:
        undo(session, _admin(session, world), entry_id)  # type: ignore[arg-type]
    after = _state(engine)
    assert after["photos"] == before["photos"] and after["sightings"] == before["sightings"]
    # Codes are never reused: the emptied new individual is retired, not deleted.
    assert after["individuals"] == [*before["individuals"], (new_id, "T-0003", "Gamma", "retired", None, "")]


def test_split_into_existing_individual(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        admin = _admin(session, world)
        with pytest.raises(CurationError, match=f"Photo {world.b1} does not belong to T-0001"):
            split(session, admin, world.a, [world.a1, world.b1], into=world.b)
        with pytest.raises(CurationError, match="already belong to T-0001"):
            split(session, admin, world.a, [world.a1], into="T-0001")
        with pytest.raises(CurationError, match="only given to a new individual"):
            split(session, admin, world.a, [world.a1], into=world.b, name="x")
        with pytest.raises(CurationError, match="at least one photo"):
            split(session, admin, world.a, [])
        with pytest.raises(CurationError, match="no photo 999"):
            split(session, admin, world.a, [999])
    with session_scope(engine) as session:
        entry = split(session, _admin(session, world), world.a, [world.a1], into="T-0002")
    assert entry.payload["created"] is False
    assert _owners(engine)[world.a1] == world.b
    with session_scope(engine) as session:
        assert [i.code for i in session.exec(select(Individual)).all()] == ["T-0001", "T-0002"]


def test_move_photo_and_undo(engine: Engine, world: World) -> None:
    before = _state(engine)
    with session_scope(engine) as session:
        entry = move_photo(session, _admin(session, world), world.a3, "T-0002")
    assert (entry.payload["before"], entry.payload["after"]) == (
        {"individual_id": world.a},
        {"individual_id": world.b},
    )
    assert _owners(engine)[world.a3] == world.b
    assert _state(engine)["sightings"] == [(world.sighting, world.b)]
    with pytest.raises(CurationError, match="already belongs to T-0002"), session_scope(engine) as session:
        move_photo(session, _admin(session, world), world.a3, world.b)
    with session_scope(engine) as session:
        undo(session, _admin(session, world), entry.id)  # type: ignore[arg-type]
    assert _state(engine) == before


def test_undo_refused_when_state_changed_since(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        merge_id = merge(session, _admin(session, world), world.a, world.b).id
    with session_scope(engine) as session:
        c, _ = get_or_create_individual(session, "T-0003")
        move_id = move_photo(session, _admin(session, world), world.a1, c).id
    changed = _state(engine)
    with (
        pytest.raises(CurationError, match=f"Photo {world.a1} of that merge has changed since"),
        session_scope(engine) as session,
    ):
        undo(session, _admin(session, world), merge_id)  # type: ignore[arg-type]
    assert _state(engine) == changed
    with session_scope(engine) as session:
        undo(session, _admin(session, world), move_id)  # type: ignore[arg-type]
        undo(session, _admin(session, world), merge_id)  # type: ignore[arg-type]
    owners = _owners(engine)
    assert [owners[p] for p in (world.a1, world.a2, world.a3, world.b1, world.b2)] == [world.a] * 3 + [world.b] * 2


def test_remove_photo_keeps_file_and_history(engine: Engine, store: PhotoStore, world: World) -> None:
    with session_scope(engine) as session:
        entry = remove_photo(session, _admin(session, world), world.a3)
    with session_scope(engine) as session:
        photo = session.get(Photo, world.a3)
        assert (photo.in_gallery, photo.individual_id) == (False, world.a)
        assert store.verify(photo.path, photo.sha256)
        assert session.get(Sighting, world.sighting).decided_individual_id == world.a
        assert world.a3 not in {e.photo_id for e in gallery_entries(session, store)}
        with pytest.raises(CurationError, match="not in the gallery"):
            remove_photo(session, _admin(session, world), world.a3)
    with session_scope(engine) as session:
        undo(session, _admin(session, world), entry.id)  # type: ignore[arg-type]
        assert world.a3 in {e.photo_id for e in gallery_entries(session, store)}


def test_retire_rename_notes_and_their_undo(engine: Engine, store: PhotoStore, world: World) -> None:
    before = _state(engine)
    with session_scope(engine) as session:
        admin = _admin(session, world)
        retired = retire(session, admin, world.b).id
        renamed = rename(session, admin, world.a, "  Alfa ", code="T-0100").id
        noted = edit_notes(session, admin, "T-0100", "scar on the left cheek").id
        species = set_species(session, admin, "T-0100", " Chelonia mydas ").id
        with pytest.raises(CurationError, match="nothing to change"):
            set_species(session, admin, world.a, "Chelonia mydas")
        with pytest.raises(CurationError, match="too long"):
            set_species(session, admin, world.a, "x" * 201)
        with pytest.raises(CurationError, match="already used"):
            rename(session, admin, world.a, "x", code="T-0002")
        with pytest.raises(CurationError, match="T-0002 is retired"):
            retire(session, admin, world.b)
        with pytest.raises(CurationError, match="nothing to change"):
            rename(session, admin, world.a, "Alfa")
    state = _state(engine)
    assert state["individuals"] == [
        (world.a, "T-0100", "Alfa", "active", None, "scar on the left cheek"),
        (world.b, "T-0002", "Beta", "retired", None, ""),
    ]
    with session_scope(engine) as session:
        assert session.get(Individual, world.a).species == "Chelonia mydas"
        assert {e.individual_code for e in gallery_entries(session, store)} == {"T-0100"}
    with session_scope(engine) as session:
        for entry_id in (species, noted, renamed, retired):
            undo(session, _admin(session, world), entry_id)  # type: ignore[arg-type]
    assert _state(engine) == before


def test_undo_of_other_entries_is_refused(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        decide_entry = session.exec(select(AuditLog).where(AuditLog.action == "sighting.decide")).one()
        with pytest.raises(CurationError, match=r"cannot be undone; only individual\.merge"):
            undo(session, _admin(session, world), decide_entry.id)  # type: ignore[arg-type]
        with pytest.raises(CurationError, match="no audit entry 9999"):
            undo(session, _admin(session, world), 9999)
    assert "photo.remove" in UNDOABLE


# --- the audit log -------------------------------------------------------------------------------------


def test_audit_readers(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        admin = _admin(session, world)
        merge_id = merge(session, admin, world.a, world.b).id
        remove_photo(session, admin, world.b1)
        undo(session, admin, merge_id)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        assert [e.action for e in entries_for_individual(session, world.a)] == [
            "sighting.vote",
            "sighting.decide",
            "individual.merge",
            "individual.merge.undo",
        ]
        assert [e.action for e in entries_for_individual(session, world.b)] == [
            "individual.merge",
            "photo.remove",
            "individual.merge.undo",
        ]
        assert [e.action for e in entries_for_user(session, world.admin)] == [
            "user.create",
            "individual.merge",
            "photo.remove",
            "individual.merge.undo",
        ]
        assert [e.action for e in entries_for_user(session, world.vol)] == [
            "sighting.submit",
            "sighting.vote",
            "sighting.decide",
        ]
        newest = entries_for_user(session, world.admin, newest_first=True, limit=2)
        assert [e.action for e in newest] == ["individual.merge.undo", "photo.remove"]
        (removal,) = entries_for_target(session, "photo", world.b1)
        assert (removal.user_id, removal.payload) == (
            world.admin,
            {"before": {"in_gallery": True}, "after": {"in_gallery": False}},
        )
        assert removal.created_at.tzinfo is not None
        first_admin = session.exec(select(AuditLog).where(AuditLog.action == "user.create")).first()
        assert (first_admin.user_id, first_admin.target_id) == (None, world.admin)  # made by the system


def test_jsonable() -> None:
    from datetime import UTC, datetime

    assert jsonable({"when": datetime(2024, 1, 2, 3, 4, tzinfo=UTC), "ids": (1, 2), "set": {3, 1}}) == {
        "when": "2024-01-02T03:04:00+00:00",
        "ids": [1, 2],
        "set": [1, 3],
    }
    with pytest.raises(TypeError, match="cannot store"):
        jsonable(object())


# --- command line --------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """The real command line (``python -m core``)."""
    return cli.main(argv)


def test_cli_curate(db_url: str, engine: Engine, world: World, capsys) -> None:
    base = ["--db", db_url, "--user", "admin"]
    assert _cli(["curate", "merge", "T-0001", "T-0002", *base]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Merged T-0001 into T-0002 (3 photos moved); audit entry ")
    merge_id = out.split("curate undo ")[1].rstrip(").")
    assert set(_owners(engine).values()) == {world.b}

    assert _cli(["curate", "merge", "T-0001", "T-0002", "--db", db_url, "--user", "vol"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'vol' is a volunteer; only a admin may merge individuals.") and err.count("\n") == 1

    assert _cli(["curate", "undo", merge_id, *base]) == 0
    assert capsys.readouterr().out.startswith(f"Undid audit entry {merge_id} (individual.merge)")
    assert _owners(engine)[world.a1] == world.a

    assert _cli(["curate", "split", "T-0001", str(world.a1), str(world.a2), "--name", "Gamma", *base]) == 0
    assert "into T-0003" in capsys.readouterr().out
    assert _cli(["curate", "move", str(world.a1), "T-0002", *base]) == 0
    assert _cli(["curate", "remove", str(world.b2), *base]) == 0
    assert _cli(["curate", "rename", "T-0003", "Delta", *base]) == 0
    assert _cli(["curate", "notes", "T-0003", "found 2024", *base]) == 0
    assert _cli(["curate", "species", "T-0003", "Eretmochelys imbricata", *base]) == 0
    assert _cli(["curate", "retire", "T-0003", *base]) == 0
    capsys.readouterr()
    with session_scope(engine) as session:
        t3 = session.exec(select(Individual).where(Individual.code == "T-0003")).one()
        assert (t3.name, t3.notes, t3.species, t3.status) == (
            "Delta",
            "found 2024",
            "Eretmochelys imbricata",
            "retired",
        )
        assert (session.get(Photo, world.a1).individual_id, session.get(Photo, world.b2).in_gallery) == (
            world.b,
            False,
        )

    assert _cli(["curate", "history", "--individual", "T-0003", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    actions = [line.split()[4] for line in lines[1:]]
    assert actions == [
        "individual.retire",
        "individual.species",
        "individual.notes",
        "individual.rename",
        "photo.move",
        "individual.split",
    ]
    assert _cli(["curate", "history", "--by", "admin", "--limit", "2", "--db", db_url]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert _cli(["curate", "history", "--db", db_url]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert _cli(["curate", "retire", "T-0404", *base]) == 2
    assert capsys.readouterr().err == "error: There is no individual 'T-0404'.\n"
    with pytest.raises(SystemExit) as exited:  # --user is required
        _cli(["curate", "retire", "T-0001", "--db", db_url])
    assert exited.value.code == 2
    assert "--user" in capsys.readouterr().err


def test_check_reports_a_sighting_outside_any_encounter(engine: Engine, store: PhotoStore, world: World) -> None:
    """Every sighting belongs to an encounter (capture–recapture counts encounters); a damaged restore may not."""
    assert _check(engine) == []
    with session_scope(engine) as session:
        sighting = session.get(Sighting, world.sighting)
        sighting.encounter_id = None  # type: ignore[union-attr]
        session.add(sighting)
    assert _check(engine) == [f"sighting {world.sighting} (decided) belongs to no encounter"]
