"""Helpers shared by the reliability and security tests (test_hostile_input, test_injection, test_access,
test_sessions, test_concurrency, test_crash, test_backup): database fixtures on SQLite and PostgreSQL, a
small world of users and individuals, synthetic photos, and a snapshot of every table for "nothing
changed" assertions. Not a test module itself (pytest only collects ``test_*.py``).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, inspect, select
from sqlalchemy.engine import Engine
from support_db import PG_ENV, pg_url_or_skip, wipe  # noqa: F401  (re-exported)
from support_photos import (  # noqa: F401  (re-exported)
    CHEAP_HASHER,
    cheap_hashing,
    image_bytes,
    use_cheap_hashing,
)

from core.review import users
from core.review.users import create_user
from core.store.db import session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.photos import PhotoStore

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    """The photo store where the app finds it when ``SCUTE_HOME`` is ``tmp_path / "home"``."""
    return PhotoStore(tmp_path / "home" / "photos")


@dataclass
class World:
    """Ids of the fixture's rows; tests re-read rows in their own sessions."""

    admin: int
    alice: int  # volunteer
    bob: int  # volunteer
    carol: int  # reviewer
    dave: int  # volunteer, disabled
    t1: int
    t2: int
    photos: list[int]


def make_world(engine: Engine, store: PhotoStore) -> World:
    """An admin, volunteers alice and bob, reviewer carol, disabled dave; T-0001 (2 photos), T-0002 (1)."""
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = create_user(session, "alice", PASSWORD, actor=admin)
        bob = create_user(session, "bob", PASSWORD, actor=admin)
        carol = create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        dave = create_user(session, "dave", PASSWORD, actor=admin)
        users.disable_user(session, admin, dave)
        t1, _ = get_or_create_individual(session, "T-0001", "Donatello")
        t2, _ = get_or_create_individual(session, "T-0002", "Raphael")
        photos = []
        for seed, individual in ((1, t1), (2, t1), (3, t2)):
            photo, _ = add_photo(
                session, store, image_bytes(seed), suffix=".png", individual=individual, width=32, height=24
            )
            photos.append(photo.id)
        return World(admin.id, alice.id, bob.id, carol.id, dave.id, t1.id, t2.id, photos)  # type: ignore[arg-type]


@pytest.fixture
def world(engine: Engine, store: PhotoStore) -> World:
    return make_world(engine, store)


_REFLECTED: dict[tuple[str, tuple[str, ...]], MetaData] = {}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order: two equal snapshots mean nothing changed.

    The reflected schema is cached per database and set of tables (reflection is the slow part).
    """
    with engine.connect() as connection:
        key = (str(engine.url), tuple(sorted(inspect(connection).get_table_names())))
        metadata = _REFLECTED.get(key)
        if metadata is None:
            metadata = MetaData()
            metadata.reflect(connection)
            _REFLECTED[key] = metadata
        result = {}
        for name, table in sorted(metadata.tables.items()):
            order = list(table.primary_key.columns) or list(table.columns)
            result[name] = [tuple(row) for row in connection.execute(select(table).order_by(*order))]
    return result


_FORKSERVER: Any = None


def forkserver_context() -> Any:
    """A multiprocessing context whose fork server has imported Scute once: workers start in milliseconds,
    not the seconds a fresh interpreter needs to import torch, OpenCV and SQLAlchemy."""
    global _FORKSERVER
    if _FORKSERVER is None:
        _FORKSERVER = multiprocessing.get_context("forkserver")
        _FORKSERVER.set_forkserver_preload(
            [
                "core.cli",
                "core.catalogue.importer",
                "core.engine.search",
                "core.review.sightings",
                "core.review.curation",
                "support_hardening",
            ]
        )
    return _FORKSERVER


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> content)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
