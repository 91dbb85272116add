"""Schema migrations: a gallery made by the previous schema (revision 0001) survives the upgrade to head.

Rows are written with plain SQL, as the old version of Scute would have, not through today's models.
Runs on SQLite files, and also on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set (wiped first).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fixtures.photos import CHEAP_HASHER
from PIL import Image
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select

import core.review.users as users
from core.review.sightings import CandidateInput, submit_sighting
from core.review.votes import cast_vote
from core.store.db import alembic_config, current_revision, head_revision, init_db, make_engine, session_scope
from core.store.gallery import gallery_entries
from core.store.models import FeatureRecord, Individual, Photo, Sighting, User
from core.store.photos import PhotoStore

GALLERY_TABLES = {"individual", "photo", "feature_record"}
REVIEW_TABLES = {
    "user_account",
    "sighting",
    "candidate",
    "vote",
    "audit_log",
    "audit_individual",
    "sighting_evidence",
    "sign_in_session",
    "sign_in_throttle",
}
CREATED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _old_gallery(url: str, store: PhotoStore) -> Engine:
    """A database at revision 0001 holding two individuals (one merged), three photos and a feature record."""
    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_gallery")
    assert current_revision(engine) == "0001_gallery"
    stored = [store.put(bytes([i]) * 64, ".png") for i in (1, 2, 3)]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO individual (id, code, name, species, status, merged_into_id, notes, created_at) "
                "VALUES (:id, :code, :name, 'Chelonia mydas', :status, :merged, :notes, :created)"
            ),
            [
                {
                    "id": 1,
                    "code": "T-0001",
                    "name": "Donatello",
                    "status": "active",
                    "merged": None,
                    "notes": "tagged 2019",
                    "created": CREATED,
                },
                {
                    "id": 2,
                    "code": "T-0002",
                    "name": None,
                    "status": "merged",
                    "merged": 1,
                    "notes": "",
                    "created": CREATED,
                },
            ],
        )
        conn.execute(
            text(
                "INSERT INTO photo (id, sha256, path, original_name, individual_id, side, crop_x0, crop_y0, "
                "crop_x1, crop_y1, rotation, width, height, taken_at, latitude, longitude, uploaded_by, "
                "in_gallery, created_at) VALUES (:id, :sha, :path, :name, :ind, :side, :x0, 0.1, 0.9, 0.9, "
                ":rot, 640, 480, :taken, -4.5, 55.5, NULL, :gallery, :created)"
            ),
            [
                {
                    "id": i + 1,
                    "sha": s.sha256,
                    "path": s.relpath,
                    "name": f"IMG_{i}.png",
                    "ind": ind,
                    "side": side,
                    "x0": 0.1,
                    "rot": 90 * i,
                    "taken": CREATED,
                    "gallery": gallery,
                    "created": CREATED,
                }
                for i, (s, ind, side, gallery) in enumerate(
                    zip(stored, (1, 2, 1), ("left", "right", "left"), (True, True, False), strict=True)
                )
            ],
        )
        conn.execute(
            text(
                "INSERT INTO feature_record (id, photo_id, extractor, version, path, n_keypoints, "
                "created_at) VALUES (1, 1, 'sift', 'v1', 'sift/v1/1.npz', 512, :created)"
            ),
            {"created": CREATED},
        )
        if engine.dialect.name == "postgresql":  # explicit ids above leave the sequences behind
            for table in GALLERY_TABLES:
                conn.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    return engine


def _gallery_snapshot(engine: Engine) -> dict:
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in sorted(GALLERY_TABLES)
        }


def test_upgrade_from_0001_keeps_the_gallery(db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(users, "_HASHER", CHEAP_HASHER)
    store = PhotoStore(tmp_path / "photos")
    old = _old_gallery(db_url, store)
    before = _gallery_snapshot(old)
    assert [len(before[t]) for t in ("individual", "photo", "feature_record")] == [2, 3, 1]
    assert REVIEW_TABLES.isdisjoint(inspect(old).get_table_names())
    old.dispose()

    engine = init_db(db_url)  # what every Scute process does at start
    assert current_revision(engine) == head_revision() == "0004_sign_in"
    assert set(inspect(engine).get_table_names()) >= GALLERY_TABLES | REVIEW_TABLES
    assert _gallery_snapshot(engine) == before

    with session_scope(engine) as session:  # the models read the old rows as they were written
        donatello = session.get(Individual, 1)
        assert (donatello.code, donatello.name, donatello.species, donatello.notes, donatello.created_at) == (
            "T-0001",
            "Donatello",
            "Chelonia mydas",
            "tagged 2019",
            CREATED,
        )
        photo = session.get(Photo, 2)
        assert (photo.individual_id, photo.side, photo.rotation, photo.crop, photo.taken_at) == (
            2,
            "right",
            90,
            (0.1, 0.1, 0.9, 0.9),
            CREATED,
        )
        assert session.exec(select(FeatureRecord.n_keypoints)).all() == [512]
        entries = gallery_entries(session, store)
        assert [(e.photo_id, e.individual_code) for e in entries] == [(1, "T-0001"), (2, "T-0001")]

    # And the new tables work with the old rows: a sighting of Donatello joins his gallery.
    with session_scope(engine) as session:
        admin = users.create_user(session, "admin", "long enough password", "admin", actor=None)
        vol = users.create_user(session, "vol", "long enough password", actor=admin)
        buffer = io.BytesIO()
        Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, format="PNG")
        submission = submit_sighting(
            session,
            store,
            vol,
            buffer.getvalue(),
            candidates=[CandidateInput(individual_id=1, rank=1, score=0.9, probability=0.8, n_matches=40)],
            new_individual_probability=0.05,
            proposal="same",
            proposed_individual_id=2,  # the merged code: resolves to T-0001
        )
        outcome = cast_vote(session, admin, submission.sighting.id, "same", 1)  # type: ignore[arg-type]
        assert (outcome.applied, outcome.individual_id) == (True, 1)
        assert submission.photo.id == 4  # ids continue after the old rows
    with session_scope(engine) as session:
        assert session.get(Sighting, submission.sighting.id).status == "decided"
        assert [u.username for u in session.exec(select(User)).all()] == ["admin", "vol"]
        assert [e.photo_id for e in gallery_entries(session, store)] == [1, 2, 4]
    engine.dispose()


def test_models_match_migrations_for_every_table(db_url: str) -> None:
    engine = init_db(db_url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diffs == []
    engine.dispose()


def test_downgrade_to_0001_and_back(db_url: str, tmp_path: Path) -> None:
    store = PhotoStore(tmp_path / "photos")
    _old_gallery(db_url, store).dispose()
    engine = init_db(db_url)
    before = _gallery_snapshot(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001_gallery")
    assert current_revision(engine) == "0001_gallery"
    assert REVIEW_TABLES.isdisjoint(inspect(engine).get_table_names())
    assert _gallery_snapshot(engine) == before
    engine.dispose()
    engine = init_db(db_url)
    assert current_revision(engine) == "0004_sign_in"
    assert _gallery_snapshot(engine) == before
    engine.dispose()
