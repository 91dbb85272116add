"""Gallery indexes kept per process, brought up to date in the background when the gallery changes."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from sqlalchemy import Engine as SqlEngine

from core.engine.index import GalleryIndex
from core.engine.search import Engine
from core.indexing.gallery import gallery_photos
from core.progress import Progress
from core.store.db import session_scope
from core.store.gallery import gallery_fingerprint
from core.store.models import SIDES
from core.store.photos import PhotoStore

log = logging.getLogger(__name__)


def side_key(side: str | None) -> str:
    """Queries of an unknown side are compared with every photo: one index serves them ("all")."""
    return side if side in SIDES and side != "unknown" else "all"


class IndexCache:
    """Gallery indexes per (gallery fingerprint, side), rebuilt in a background thread when the gallery changes.

    One instance per engine per process (the app keeps it in :class:`core.service.app.App`). The fingerprint is
    read from the database on every request, so a change made by another process (an import from the command
    line, a decision in another browser) is seen on the next search. Only the very first search of a side
    builds while it waits; after that a search never waits for a rebuild: it uses the newest index built so
    far while a background thread brings the index up to date (reusing every unchanged photo's features), and
    :meth:`updating` says so. Builds run one at a time: two cores gain nothing from two at once.
    """

    def __init__(self, max_entries: int = 6) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], GalleryIndex] = OrderedDict()
        self._latest: dict[str, tuple[str, GalleryIndex]] = {}  # side -> newest index built, and its fingerprint
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._workers: dict[str, threading.Thread] = {}
        #: Why the last background build of a side failed (cleared by a successful one), for the app to show.
        self.errors: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        engine: Engine,
        db: SqlEngine,
        store: PhotoStore,
        side: str | None = None,
        progress: Progress | None = None,
    ) -> GalleryIndex:
        """The index for ``side``; the newest one built while an update runs. Raises
        :class:`~core.errors.EmptyGalleryError` for an empty gallery."""
        key = side_key(side)
        with session_scope(db) as session:
            fingerprint = gallery_fingerprint(session)
        with self._lock:
            cached = self._entries.get((fingerprint, key))
            if cached is not None:
                self._entries.move_to_end((fingerprint, key))
                return cached
            latest = self._latest.get(key)
        if latest is not None:
            self._start(engine, db, store, key)
            return latest[1]
        return self._build(engine, db, store, key, progress)

    def updating(self) -> bool:
        """Whether a background build is running (searches meanwhile use the previous version)."""
        with self._lock:
            return any(worker.is_alive() for worker in self._workers.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background builds end (tests, the command line); False if ``timeout`` passed first."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout)
        return not self.updating()

    def refresh(self, engine: Engine | None, db: SqlEngine, store: PhotoStore) -> None:
        """The gallery changed: bring every index built so far up to date in the background (no caller waits)."""
        if engine is None:
            return
        with self._lock:
            sides = list(self._latest)
        for key in sides:
            self._start(engine, db, store, key)

    def _start(self, engine: Engine, db: SqlEngine, store: PhotoStore, key: str) -> None:
        with self._lock:
            worker = self._workers.get(key)
            if worker is not None and worker.is_alive():
                return  # it rereads the fingerprint when it finishes, so it also catches this change
            worker = threading.Thread(
                target=self._update, args=(engine, db, store, key), name=f"scute-index-{key}", daemon=True
            )
            self._workers[key] = worker
            worker.start()

    def _update(self, engine: Engine, db: SqlEngine, store: PhotoStore, key: str) -> None:
        """Build until the index matches the gallery (it may change again while a build runs)."""
        try:
            while True:
                index_fingerprint = self._built_fingerprint(key)
                with session_scope(db) as session:
                    current = gallery_fingerprint(session)
                if index_fingerprint == current:
                    break
                self._build(engine, db, store, key)
            self.errors.pop(key, None)
        except Exception as exc:  # a failed background build must be reported, not kill the app
            log.exception("Updating the gallery index (%s) failed", key)
            self.errors[key] = str(exc) or type(exc).__name__

    def _built_fingerprint(self, key: str) -> str | None:
        with self._lock:
            latest = self._latest.get(key)
        return latest[0] if latest else None

    def _build(
        self, engine: Engine, db: SqlEngine, store: PhotoStore, key: str, progress: Progress | None = None
    ) -> GalleryIndex:
        with self._build_lock:
            with session_scope(db) as session:
                fingerprint = gallery_fingerprint(session)
                photos = gallery_photos(session, store, None if key == "all" else key)
            with self._lock:
                cached = self._entries.get((fingerprint, key))
                if cached is not None:
                    return cached
                latest = self._latest.get(key)
            index = engine.build_index(photos, progress, previous=latest[1] if latest else None)
            with self._lock:
                for stale in [k for k in self._entries if k[0] != fingerprint]:
                    del self._entries[stale]  # the gallery changed: those indexes can never be asked for again
                self._entries[(fingerprint, key)] = index
                self._latest[key] = (fingerprint, index)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            log.info("Gallery index built: %d photos, side %s", len(index.photos), key)
            return index
