"""core.db and core.models: migrations, SQLite tuning, constraints, sessions.

Every test runs on a fresh SQLite file; with ``SCUTE_TEST_DATABASE_URL`` set (a PostgreSQL database
that may be wiped) the backend-neutral ones run there too.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, func, select

from core.store.db import (
    BASELINE_REVISION,
    SchemaError,
    alembic_config,
    current_revision,
    get_engine,
    head_revision,
    init_db,
    make_engine,
    session_scope,
)
from core.store.models import FeatureRecord, Individual, Photo

GALLERY_TABLES = {"individual", "photo", "feature_record"}


def _photo(sha: str, individual_id: int | None = None, **kwargs) -> Photo:
    return Photo(sha256=sha, path=f"{sha}.png", width=10, height=10, individual_id=individual_id, **kwargs)


def test_init_db_brings_schema_to_head(engine: Engine) -> None:
    assert head_revision() == "0005_encounters"
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tables = set(inspect(conn).get_table_names())
    assert versions == ["0005_encounters"]
    assert tables >= GALLERY_TABLES | {"alembic_version"}


def test_init_db_twice_keeps_data(db_url: str) -> None:
    first = init_db(db_url)
    with session_scope(first) as session:
        session.add(Individual(code="T-0001"))
    first.dispose()
    second = init_db(db_url)
    with session_scope(second) as session:
        codes = session.exec(select(Individual.code)).all()
    assert codes == ["T-0001"]
    assert current_revision(second) == head_revision()
    second.dispose()


def test_migrations_match_models(engine: Engine) -> None:
    """The hand-written revision and the SQLModel classes describe the same schema."""

    def ours(obj, name, type_, reflected, compare_to) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in GALLERY_TABLES

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": ours})
        diffs = compare_metadata(context, SQLModel.metadata)
    assert diffs == []


def test_downgrade_to_base_then_upgrade(engine: Engine) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert GALLERY_TABLES.isdisjoint(inspect(engine).get_table_names())
    assert current_revision(engine) is None
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= GALLERY_TABLES


def test_adopts_database_created_without_migrations(db_url: str) -> None:
    # The gallery tables as the baseline created them, without the history table that says so.
    raw = make_engine(db_url)
    with raw.begin() as connection:
        command.upgrade(alembic_config(connection), BASELINE_REVISION)
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(
            text(
                "INSERT INTO individual (code, name, species, status, notes, created_at) "
                "VALUES ('old', NULL, '', 'active', '', '2026-01-01 00:00:00')"
            )
        )
    assert current_revision(raw) is None
    raw.dispose()

    engine = init_db(db_url)
    assert current_revision(engine) == head_revision()
    with session_scope(engine) as session:
        assert session.exec(select(Individual.code)).all() == ["old"]
    engine.dispose()


def test_refuses_partial_schema_without_history(db_url: str) -> None:
    raw = make_engine(db_url)
    SQLModel.metadata.create_all(raw, tables=[Individual.__table__])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match="only some"):
        init_db(db_url)
    assert current_revision(raw) is None
    assert "photo" not in inspect(raw).get_table_names()
    raw.dispose()


def test_init_db_from_another_cwd_creates_parent_dirs(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    engine = init_db("sqlite:///nested/deeper/gallery.db")
    assert (elsewhere / "nested" / "deeper" / "gallery.db").is_file()
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    engine = init_db(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.connect() as one, engine.connect() as two:  # two pooled connections, both configured
        for conn in (one, two):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


@pytest.mark.parametrize("round_", range(20))
def test_concurrent_init_db_on_fresh_file(tmp_path: Path, round_: int) -> None:
    """Four app processes open a gallery file that does not exist yet; all must succeed.

    The race (switching a fresh file to WAL) lost about one round in eight before the retry, hence
    twenty rounds.
    """
    url = f"sqlite:///{tmp_path / 'race.db'}"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            init_db(url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_foreign_keys_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(_photo("a" * 64, individual_id=424242))
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(Photo)).one() == 0


def test_deleting_photo_cascades_to_feature_records(engine: Engine) -> None:
    with session_scope(engine) as session:
        photo = _photo("b" * 64)
        session.add(photo)
        session.flush()
        session.add(FeatureRecord(photo_id=photo.id, extractor="sift", version="v1", path="x.npz", n_keypoints=3))
    with session_scope(engine) as session:
        session.delete(session.exec(select(Photo)).one())
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(FeatureRecord)).one() == 0


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([_photo("c" * 64), _photo("c" * 64)], id="photo.sha256"),
        pytest.param([Individual(code="T-1"), Individual(code="T-1")], id="individual.code"),
        pytest.param([_photo("d" * 64, side="front")], id="photo.side"),
        pytest.param([Individual(code="x", status="dead")], id="individual.status"),
    ],
)
def test_constraints(engine: Engine, rows: list) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        for row in rows:
            session.add(row)
            session.flush()


def test_feature_record_unique_per_photo_extractor_version(engine: Engine) -> None:
    with session_scope(engine) as session:
        photo = _photo("e" * 64)
        session.add(photo)
        session.flush()
        photo_id = photo.id
        session.add(FeatureRecord(photo_id=photo_id, extractor="sift", version="v1", path="a", n_keypoints=1))
        session.add(FeatureRecord(photo_id=photo_id, extractor="sift", version="v2", path="b", n_keypoints=1))
        session.add(FeatureRecord(photo_id=photo_id, extractor="disk", version="v1", path="c", n_keypoints=1))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(FeatureRecord(photo_id=photo_id, extractor="sift", version="v1", path="d", n_keypoints=1))
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(FeatureRecord)).one() == 3


def test_timestamps_are_aware_utc(engine: Engine) -> None:
    before = datetime.now(UTC)
    taken = datetime(2024, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(engine) as session:
        session.add(Individual(code="T-9"))
        session.add(_photo("f" * 64, taken_at=taken))
    with session_scope(engine) as session:
        individual = session.exec(select(Individual)).one()
        photo = session.exec(select(Photo)).one()
    assert individual.created_at.tzinfo is not None
    assert individual.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= individual.created_at <= datetime.now(UTC)
    assert photo.taken_at == datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    assert photo.taken_at.utcoffset() == timedelta(0)


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
        session.add(Individual(code="lost"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        kept = Individual(code="kept")
        session.add(kept)
    assert kept.id is not None and kept.code == "kept"  # still readable after the scope closed
    with session_scope(engine) as session:
        assert session.exec(select(Individual.code)).all() == ["kept"]


def test_get_engine_is_cached_per_url(tmp_path: Path) -> None:
    url_a = f"sqlite:///{tmp_path / 'a.db'}"
    url_b = f"sqlite:///{tmp_path / 'b.db'}"
    engine_a = get_engine(url_a)
    assert get_engine(url_a) is engine_a
    assert get_engine(url_b) is not engine_a
    assert current_revision(engine_a) == head_revision()


def test_photo_crop_property() -> None:
    photo = _photo("0" * 64)
    assert photo.crop is None
    photo.set_crop((0.1, 0.2, 0.9, 0.8))
    assert photo.crop == (0.1, 0.2, 0.9, 0.8)
    assert (photo.crop_x0, photo.crop_y1) == (0.1, 0.8)
    photo.crop_y1 = None
    assert photo.crop is None
    with pytest.raises(ValueError, match="0 <= x0 < x1"):
        photo.set_crop((0.5, 0.2, 0.4, 0.8))
    photo.set_crop(None)
    assert (photo.crop_x0, photo.crop_y0, photo.crop_x1, photo.crop_y1) == (None, None, None, None)
