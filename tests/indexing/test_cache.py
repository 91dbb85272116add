"""core.indexing.cache: gallery indexes kept per process, rebuilt in the background only when the gallery changes."""

from __future__ import annotations

import threading
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

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.builds: list[list[str]] = []
        self.previous: list[object] = []
        self.gate, self.fail = gate, fail

    def build_index(self, photos, progress=None, previous=None):
        if self.gate is not None and self.builds:  # the first build runs freely, later ones wait for the gate
            assert self.gate.wait(20)
        if self.fail and self.builds:
            raise RuntimeError("disk full")
        keys = sorted(p.identity + ":" + p.sha256[:6] for p in photos)
        self.builds.append(keys)
        self.previous.append(previous)
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
    # The search after the change does not wait: it gets the previous index while the new one is built.
    assert cache.get(engine, db, store) is first
    assert cache.wait(20)
    rebuilt = cache.get(engine, db, store)
    assert rebuilt is not first and [k.split(":")[0] for k in engine.builds[-1]] == ["T-1", "T-2"]
    assert engine.previous[-1] is first  # the update starts from the previous index (its features are reused)
    assert len(engine.builds) == 3 and cache.get(engine, db, store) is rebuilt
    assert len(cache) == 1  # the stale indexes of the old gallery are gone


def test_searches_use_the_previous_index_while_an_update_runs(db, store: PhotoStore) -> None:
    with session_scope(db) as session:
        add(session, store, "T-1", 1)
        add(session, store, "T-2", 2)
    gate = threading.Event()
    engine, cache = CountingEngine(gate), IndexCache()
    first = cache.get(engine, db, store)
    with session_scope(db) as session:
        add(session, store, "T-3", 3)
    cache.refresh(engine, db, store)  # what the app does after an import, a decision, a merge or an undo
    assert cache.updating()
    assert cache.get(engine, db, store) is first  # answered at once, from the version before the change
    with session_scope(db) as session:
        add(session, store, "T-4", 4)  # a second change while the first update runs
    cache.refresh(engine, db, store)
    gate.set()
    assert cache.wait(20) and not cache.updating()
    latest = cache.get(engine, db, store)
    # The worker re-read the gallery after its build and caught the second change too.
    assert [k.split(":")[0] for k in engine.builds[-1]] == ["T-1", "T-2", "T-3", "T-4"]
    assert latest.build == len(engine.builds)


def test_a_failed_update_is_reported_and_the_previous_index_still_serves(db, store: PhotoStore) -> None:
    with session_scope(db) as session:
        add(session, store, "T-1", 1)
        add(session, store, "T-2", 2)
    engine, cache = CountingEngine(fail=True), IndexCache()
    first = cache.get(engine, db, store)
    with session_scope(db) as session:
        add(session, store, "T-3", 3)
    assert cache.get(engine, db, store) is first
    assert cache.wait(20)
    assert cache.errors == {"all": "disk full"}
    assert cache.get(engine, db, store) is first
    cache.refresh(None, db, store)  # no engine loaded yet: nothing to update
