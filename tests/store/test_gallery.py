"""core.gallery: individuals, photo import with dedupe, the searchable gallery and its fingerprint.

Runs on SQLite files, and also on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set (wiped first).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from core.store.db import session_scope
from core.store.gallery import (
    GalleryEntry,
    add_photo,
    gallery_entries,
    gallery_fingerprint,
    get_or_create_individual,
    record_features,
    resolve_merged,
)
from core.store.models import FeatureRecord, Individual, Photo
from core.store.photos import PhotoStore


def _add(session: Session, store: PhotoStore, seed: int, individual: Individual | None, **kwargs) -> Photo:
    kwargs.setdefault("suffix", ".png")
    photo, created = add_photo(session, store, image_bytes(seed), individual=individual, width=32, height=24, **kwargs)
    assert created is True
    return photo


def _count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


# --- individuals -------------------------------------------------------------------------------------


def test_get_or_create_individual(engine: Engine) -> None:
    with session_scope(engine) as session:
        created, was_created = get_or_create_individual(session, "  T-0042 ", "Donatello")
        assert was_created is True
        assert (created.code, created.name, created.status, created.species) == (
            "T-0042",
            "Donatello",
            "active",
            "",
        )
        assert created.id is not None
        again, was_created = get_or_create_individual(session, "T-0042")
        assert was_created is False
        assert again.id == created.id
        assert again.name == "Donatello"
        other, was_created = get_or_create_individual(session, "t0042")
        assert was_created is True and other.id != created.id  # codes are case-sensitive
    with session_scope(engine) as session:
        assert _count(session, Individual) == 2


def test_existing_name_is_filled_in_but_never_overwritten(engine: Engine) -> None:
    with session_scope(engine) as session:
        get_or_create_individual(session, "t001")
        filled, _ = get_or_create_individual(session, "t001", "Raphael")
        assert filled.name == "Raphael"
        kept, _ = get_or_create_individual(session, "t001", "Leonardo")
        assert kept.name == "Raphael"
        blank, _ = get_or_create_individual(session, "t002", "   ")
        assert blank.name is None


@pytest.mark.parametrize("code", ["", "   ", "x" * 65, " " + "y" * 65])
def test_invalid_codes(engine: Engine, code: str) -> None:
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match="code"):
            get_or_create_individual(session, code)
        assert _count(session, Individual) == 0


def test_longest_code_is_accepted(engine: Engine) -> None:
    with session_scope(engine) as session:
        individual, created = get_or_create_individual(session, "x" * 64)
    assert created is True and len(individual.code) == 64


def test_merged_code_resolves_to_survivor(engine: Engine) -> None:
    with session_scope(engine) as session:
        survivor, _ = get_or_create_individual(session, "T-1")
        middle, _ = get_or_create_individual(session, "T-2")
        old, _ = get_or_create_individual(session, "T-3")
        middle.status, middle.merged_into_id = "merged", survivor.id
        old.status, old.merged_into_id = "merged", middle.id
        session.flush()
        found, created = get_or_create_individual(session, "T-3")
        assert created is False and found.id == survivor.id
        raw, _ = get_or_create_individual(session, "T-3", follow_merged=False)
        assert raw.id == old.id
        assert resolve_merged(session, old).id == survivor.id
        assert resolve_merged(session, survivor).id == survivor.id


# --- photos ------------------------------------------------------------------------------------------


def test_add_photo_stores_file_and_row(engine: Engine, store: PhotoStore) -> None:
    data = image_bytes(1, "JPEG")
    taken = datetime(2023, 5, 4, 3, 2, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        turtle, _ = get_or_create_individual(session, "T-0001")
        photo, created = add_photo(
            session, store, data, suffix=".jpg", individual=turtle, side="left",
            original_name="../../evil name.JPG", width=32, height=24, taken_at=taken,
            latitude=-23.5, longitude=151.9, crop=(0.1, 0.2, 0.6, 0.9), rotation=-90, uploaded_by=7,
        )  # fmt: skip
        assert created is True
        photo_id, turtle_id = photo.id, turtle.id
    with session_scope(engine) as session:
        stored = session.get(Photo, photo_id)
        assert stored is not None
        assert stored.individual_id == turtle_id
        assert (stored.side, stored.rotation, stored.width, stored.height) == ("left", 270, 32, 24)
        assert stored.crop == (0.1, 0.2, 0.6, 0.9)
        assert (stored.latitude, stored.longitude, stored.uploaded_by) == (-23.5, 151.9, 7)
        assert stored.taken_at == taken
        assert stored.in_gallery is True
        assert stored.original_name == "evil name.JPG"  # a label (core.safe_text.upload_label), never a path
        assert stored.path == f"{stored.sha256[:2]}/{stored.sha256[2:4]}/{stored.sha256}.jpg"
        assert store.path(stored.path).read_bytes() == data
        assert store.verify(stored.path, stored.sha256)
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == [f"{stored.sha256}.jpg"]


def test_add_photo_dedupes_without_reassigning(engine: Engine, store: PhotoStore) -> None:
    data = image_bytes(2)
    with session_scope(engine) as session:
        first, _ = get_or_create_individual(session, "A")
        second, _ = get_or_create_individual(session, "B")
        photo, created = add_photo(session, store, data, suffix=".png", individual=first, width=32, height=24)
        assert created is True
        again, created = add_photo(
            session, store, data, suffix=".png", individual=second, side="right", width=32, height=24
        )
        assert created is False
        assert again.id == photo.id
        assert again.individual_id == first.id
        assert again.side == "unknown"
        assert _count(session, Photo) == 1


def test_add_photo_restores_missing_file(engine: Engine, store: PhotoStore) -> None:
    data = image_bytes(3)
    with session_scope(engine) as session:
        photo = _add(session, store, 3, None)
        relpath = photo.path
    store.path(relpath).unlink()
    with session_scope(engine) as session:
        again, created = add_photo(session, store, data, suffix=".png", individual=None, width=32, height=24)
        assert created is False and again.path == relpath
    assert store.path(relpath).read_bytes() == data


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"side": "front"}, "side"),
        ({"suffix": ".exe"}, "suffix"),
        ({"crop": (0.5, 0.0, 0.4, 1.0)}, "crop"),
        ({"crop": (0.0, 0.0, 1.0)}, "crop"),
        ({"crop": (0.0, 0.0, 1.0, float("nan"))}, "crop"),
        ({"width": 0}, "width"),
        ({"rotation": 90.5}, "rotation"),
        ({"latitude": 91.0}, "latitude"),
        ({"longitude": -180.5}, "longitude"),
        ({"taken_at": "2024-01-01"}, "taken_at"),
    ],
)
def test_add_photo_validates_before_writing(engine: Engine, store: PhotoStore, kwargs: dict, message: str) -> None:
    arguments = {"suffix": ".png", "individual": None, "width": 32, "height": 24, **kwargs}
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match=message):
            add_photo(session, store, image_bytes(4), **arguments)
        assert _count(session, Photo) == 0
    assert not store.root.exists() or not any(p.is_file() for p in store.root.rglob("*"))


# --- the gallery -------------------------------------------------------------------------------------


@pytest.fixture
def populated(engine: Engine, store: PhotoStore) -> dict[str, int]:
    """Active A (four sides + one photo out of the gallery), retired R, M merged into A, X merged into R."""
    with session_scope(engine) as session:
        a, _ = get_or_create_individual(session, "A", "Alpha")
        r, _ = get_or_create_individual(session, "R")
        m, _ = get_or_create_individual(session, "M")
        x, _ = get_or_create_individual(session, "X")
        ids = {
            "a_left": _add(session, store, 10, a, side="left", crop=(0.0, 0.1, 0.5, 0.6), rotation=90).id,
            "a_right": _add(session, store, 11, a, side="right").id,
            "a_unknown": _add(session, store, 12, a).id,
            "a_top": _add(session, store, 13, a, side="top").id,
            "a_hidden": _add(session, store, 14, a, side="left", in_gallery=False).id,
            "r_left": _add(session, store, 15, r, side="left").id,
            "unassigned": _add(session, store, 16, None, side="left").id,
            "m_left": _add(session, store, 17, m, side="left").id,
            "x_left": _add(session, store, 18, x, side="left").id,
        }
        r.status = "retired"
        m.status, m.merged_into_id = "merged", a.id
        x.status, x.merged_into_id = "merged", r.id
        ids["a"] = a.id  # type: ignore[assignment]
    return ids  # type: ignore[return-value]


def test_gallery_entries_only_active_in_gallery_photos(engine: Engine, store: PhotoStore, populated) -> None:
    with session_scope(engine) as session:
        entries = gallery_entries(session, store)
    expected = [populated[k] for k in ("a_left", "a_right", "a_unknown", "a_top", "m_left")]
    assert [e.photo_id for e in entries] == expected  # ordered by photo id
    assert {e.individual_id for e in entries} == {populated["a"]}  # M's photo counts for A
    assert {e.individual_code for e in entries} == {"A"}
    first = entries[0]
    assert isinstance(first, GalleryEntry)
    assert (first.side, first.crop, first.rotation, first.individual_name) == (
        "left",
        (0.0, 0.1, 0.5, 0.6),
        90,
        "Alpha",
    )
    assert first.path.is_absolute() and first.path.is_file()
    assert first.path == store.path(f"{first.sha256[:2]}/{first.sha256[2:4]}/{first.sha256}.png")


@pytest.mark.parametrize(
    ("side", "keys"),
    [
        ("left", ["a_left", "a_unknown", "m_left"]),
        ("right", ["a_right", "a_unknown"]),
        ("top", ["a_unknown", "a_top"]),
        ("unknown", ["a_left", "a_right", "a_unknown", "a_top", "m_left"]),
    ],
)
def test_gallery_entries_side_filter(engine: Engine, store: PhotoStore, populated, side: str, keys) -> None:
    with session_scope(engine) as session:
        entries = gallery_entries(session, store, side=side)
    assert [e.photo_id for e in entries] == [populated[k] for k in keys]


def test_gallery_entries_rejects_unknown_side(engine: Engine, store: PhotoStore) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="side"):
        gallery_entries(session, store, side="front")


def test_empty_gallery(engine: Engine, store: PhotoStore) -> None:
    with session_scope(engine) as session:
        assert gallery_entries(session, store) == []
        assert len(gallery_fingerprint(session)) == 64


# --- the fingerprint ---------------------------------------------------------------------------------


def _fingerprint(engine: Engine) -> str:
    with session_scope(engine) as session:
        return gallery_fingerprint(session)


def test_fingerprint_is_stable_without_changes(engine: Engine, store: PhotoStore, populated) -> None:
    first = _fingerprint(engine)
    assert _fingerprint(engine) == first
    with session_scope(engine) as session:
        assert gallery_fingerprint(session) == gallery_fingerprint(session) == first


def test_fingerprint_tracks_what_search_sees(engine: Engine, store: PhotoStore, populated) -> None:
    seen = {_fingerprint(engine)}

    def changes() -> bool:
        value = _fingerprint(engine)
        new = value not in seen
        seen.add(value)
        return new

    with session_scope(engine) as session:  # add a gallery photo
        a = session.get(Individual, populated["a"])
        _add(session, store, 30, a, side="right")
    assert changes()

    with session_scope(engine) as session:  # move a photo to another individual
        b, _ = get_or_create_individual(session, "B")
        session.get(Photo, populated["a_right"]).individual_id = b.id
    assert changes()

    with session_scope(engine) as session:  # retire that individual
        session.exec(select(Individual).where(Individual.code == "B")).one().status = "retired"
    assert changes()

    with session_scope(engine) as session:  # take a photo out of the gallery
        session.get(Photo, populated["a_top"]).in_gallery = False
    assert changes()

    with session_scope(engine) as session:  # change the crop the features are computed on
        session.get(Photo, populated["a_left"]).set_crop((0.0, 0.0, 1.0, 1.0))
    assert changes()

    with session_scope(engine) as session:  # un-merge M: its photo leaves A and the gallery
        session.exec(select(Individual).where(Individual.code == "M")).one().status = "active"
    assert changes()


def test_fingerprint_ignores_what_search_does_not_see(engine: Engine, store: PhotoStore, populated) -> None:
    before = _fingerprint(engine)
    with session_scope(engine) as session:
        _add(session, store, 40, None, side="left")  # unassigned
        r = session.exec(select(Individual).where(Individual.code == "R")).one()
        _add(session, store, 41, r, side="left")  # retired individual
        a = session.get(Individual, populated["a"])
        _add(session, store, 42, a, in_gallery=False)
        a.name = "Renamed"  # display only
        a.notes = "seen twice"
    assert _fingerprint(engine) == before


def test_fingerprint_depends_on_state_not_history(engine: Engine, store: PhotoStore, populated) -> None:
    before = _fingerprint(engine)
    with session_scope(engine) as session:
        session.get(Photo, populated["a_unknown"]).in_gallery = False
    assert _fingerprint(engine) != before
    with session_scope(engine) as session:
        session.get(Photo, populated["a_unknown"]).in_gallery = True
    assert _fingerprint(engine) == before


# --- feature records ---------------------------------------------------------------------------------


def test_record_features_upserts(engine: Engine, store: PhotoStore) -> None:
    with session_scope(engine) as session:
        photo_id = _add(session, store, 50, None).id
        first = record_features(session, photo_id, "sift", "abc123", "sift/abc123/1.npz", 500)
        first_id, first_created = first.id, first.created_at
    with session_scope(engine) as session:
        updated = record_features(session, photo_id, "sift", "abc123", "sift/abc123/1b.npz", 640)
        assert updated.id == first_id
        assert (updated.path, updated.n_keypoints) == ("sift/abc123/1b.npz", 640)
        assert updated.created_at >= first_created
        other = record_features(session, photo_id, "sift", "def456", "sift/def456/1.npz", 10)
        assert other.id != first_id
    with session_scope(engine) as session:
        rows = session.exec(select(FeatureRecord).order_by(FeatureRecord.version)).all()
        assert [(r.version, r.path, r.n_keypoints) for r in rows] == [
            ("abc123", "sift/abc123/1b.npz", 640),
            ("def456", "sift/def456/1.npz", 10),
        ]
        with pytest.raises(ValueError, match="n_keypoints"):
            record_features(session, photo_id, "sift", "x", "p", -1)
