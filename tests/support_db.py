"""The database every database test runs on: a fresh SQLite file and, when configured, PostgreSQL.

``SCUTE_TEST_DATABASE_URL`` names a PostgreSQL test database (``.ci/run`` starts one); each test
wipes it first, so tests never see each other's rows. Without it the PostgreSQL half skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine

from core.store.db import init_db

PG_ENV = "SCUTE_TEST_DATABASE_URL"


def wipe(url: str) -> None:
    """Drop every table (``alembic_version`` included), so the next test starts from an empty database."""
    raw = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(raw)
        metadata.drop_all(raw)
    finally:
        raw.dispose()


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        pytest.skip(f"{PG_ENV} is not set")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the wiped PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gallery.db'}"
    url = pg_url_or_skip()
    wipe(url)
    return url


@pytest.fixture
def engine(db_url: str):
    """The gallery database at ``db_url``, migrated to the current schema."""
    engine = init_db(db_url)
    yield engine
    engine.dispose()
