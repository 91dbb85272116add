"""core.indexing.cache: gallery indexes kept per process and rebuilt only when the gallery changes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.photos import image_bytes

from core.indexing.cache import IndexCache
from core.review import curation, users
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path):
    engine = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    yield engine
    engine.dispose()


def add(session, store: PhotoStore, code: str, seed: int, side: str = "unknown"):
    individual, _ = get_or_create_individual(session, code)
    photo, _ = add_photo(
        session, store, image_bytes(seed), suffix=".png", individual=individual, side=side, width=48, height=40
    )
    return individual, photo


class CountingEngine:
    """Stands in for the engine: records which photos each index was built from."""

    def __init__(self) -> None:
        self.builds: list[list[str]] = []

    def build_index(self, photos, progress=None):
        keys = sorted(p.identity + ":" + p.sha256[:6] for p in photos)
        self.builds.append(keys)
        return SimpleNamespace(photos=list(photos), build=len(self.builds))


def test_index_cache_rebuilds_only_when_the_gallery_changes(db, store: PhotoStore, tmp_path: Path):
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        add(session, store, "T-1", 1, "left")
        add(session, store, "T-2", 2, "right")
        t3, _ = add(session, store, "T-3", 3, "unknown")
    engine = CountingEngine()
    cache = IndexCache()
    first = cache.get(engine, db, store)
    assert cache.get(engine, db, store) is first and len(engine.builds) == 1
    assert cache.get(engine, db, store, side="unknown") is first  # "unknown" compares with every side
    left = cache.get(engine, db, store, side="left")
    assert left is not first and [k.split(":")[0] for k in engine.builds[-1]] == ["T-1", "T-3"]
    assert len(cache) == 2

    with session_scope(db) as session:
        curation.rename(session, admin, "T-1", "Donatello")  # names do not change what the search sees
    assert cache.get(engine, db, store) is first and len(engine.builds) == 2

    with session_scope(db) as session:
        curation.retire(session, admin, t3.id)
    rebuilt = cache.get(engine, db, store)
    assert rebuilt is not first and [k.split(":")[0] for k in engine.builds[-1]] == ["T-1", "T-2"]
    assert len(cache) == 1  # the stale indexes of the old gallery are gone
