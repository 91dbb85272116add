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
            table: [dict(row._mapping) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in sorted(GALLERY_TABLES)
        }


def _as_before(after: dict, before: dict) -> dict:
    """``after`` limited to the columns ``before`` had; columns added later must be empty (NULL)."""
    limited = {}
    for table, rows in after.items():
        old_columns = set(before[table][0]) if before[table] else set()
        for row in rows:
            assert all(value is None for column, value in row.items() if column not in old_columns), (table, row)
        limited[table] = [{c: v for c, v in row.items() if c in old_columns} for row in rows]
    return limited


def test_upgrade_from_0001_keeps_the_gallery(db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(users, "_HASHER", CHEAP_HASHER)
    store = PhotoStore(tmp_path / "photos")
    old = _old_gallery(db_url, store)
    before = _gallery_snapshot(old)
    assert [len(before[t]) for t in ("individual", "photo", "feature_record")] == [2, 3, 1]
    assert REVIEW_TABLES.isdisjoint(inspect(old).get_table_names())
    old.dispose()

    engine = init_db(db_url)  # what every Scute process does at start
    assert current_revision(engine) == head_revision() == "0005_encounters"
    assert set(inspect(engine).get_table_names()) >= GALLERY_TABLES | REVIEW_TABLES
    assert _as_before(_gallery_snapshot(engine), before) == before

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
    old = _old_gallery(db_url, store)
    before = _gallery_snapshot(old)  # at 0001: the columns that must survive the round trip
    old.dispose()
    engine = init_db(db_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001_gallery")
    assert current_revision(engine) == "0001_gallery"
    assert REVIEW_TABLES.isdisjoint(inspect(engine).get_table_names())
    assert _as_before(_gallery_snapshot(engine), before) == before
    engine.dispose()
    engine = init_db(db_url)
    assert current_revision(engine) == "0005_encounters"
    assert _as_before(_gallery_snapshot(engine), before) == before
    engine.dispose()


def test_upgrade_makes_every_sighting_a_one_photo_encounter(db_url: str, tmp_path: Path) -> None:
    """Sightings written at revision 0004 become one-photo encounters; nothing hanging off them is lost."""
    store = PhotoStore(tmp_path / "photos")
    engine = _old_gallery(db_url, store)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004_sign_in")
        conn.execute(
            text(
                "INSERT INTO user_account (id, username, password_hash, role, active, created_at) "
                "VALUES (7, 'vol', 'x', 'volunteer', :yes, :created)"
            ),
            {"yes": True, "created": CREATED},
        )
        conn.execute(
            text(
                "INSERT INTO sighting (id, photo_id, submitted_by, status, side, notes, taken_at, latitude, "
                "longitude, new_individual_probability, created_at) VALUES "
                "(5, 3, 7, 'pending', 'left', 'near the reef', :taken, -4.5, 55.5, 0.2, :created)"
            ),
            {"taken": CREATED, "created": CREATED},
        )
        conn.execute(
            text(
                "INSERT INTO candidate (id, sighting_id, individual_id, code, rank, score, probability, n_matches) "
                "VALUES (1, 5, 1, 'T-0001', 1, 2.5, 0.7, 31)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sighting_evidence (id, sighting_id, engine_version, payload, created_at) "
                "VALUES (1, 5, 'v', :payload, :created)"
            ),
            {"payload": b"evidence", "created": CREATED},
        )
        if engine.dialect.name == "postgresql":
            for table in ("user_account", "sighting", "candidate", "sighting_evidence"):
                conn.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    engine.dispose()

    engine = init_db(db_url)
    assert current_revision(engine) == "0005_encounters"
    with engine.connect() as conn:
        encounters = conn.execute(
            text("SELECT id, submitted_by, taken_at, latitude, longitude, notes, site_id FROM encounter")
        ).all()
        assert [(e.id, e.submitted_by, e.latitude, e.longitude, e.notes, e.site_id) for e in encounters] == [
            (5, 7, -4.5, 55.5, "near the reef", None)
        ]
        assert conn.execute(text("SELECT id, encounter_id FROM sighting")).all() == [(5, 5)]
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("candidate", "sighting_evidence", "feature_record", "photo")
        ]
        assert counts == [1, 1, 1, 3]  # a table rebuild with foreign keys on would have cascaded these away
    with session_scope(engine) as session:  # new encounters get ids after the migrated ones
        vol = session.get(User, 7)
        buffer = io.BytesIO()
        Image.new("RGB", (32, 24), (200, 20, 30)).save(buffer, format="PNG")
        submission = submit_sighting(
            session, store, vol, buffer.getvalue(), candidates=[], new_individual_probability=None
        )
        assert submission.sighting.encounter_id == 6
    engine.dispose()
