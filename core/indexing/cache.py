"""Gallery indexes kept per process and rebuilt when the gallery changes."""

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


class IndexCache:
    """Gallery indexes per (gallery fingerprint, side), rebuilt when the gallery changes.

    One instance per engine per process (the app keeps it in :class:`core.service.app.App`). The fingerprint
    is read from the database on every request, so a change made by another process (an import from
    the command line, a decision in another browser) is seen on the next search. Building runs under a
    lock: two volunteers searching at once wait for one build instead of doing it twice.
    """

    def __init__(self, max_entries: int = 6) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], GalleryIndex] = OrderedDict()
        self._lock = threading.Lock()

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
        """The index for ``side``; raises :class:`~core.errors.EmptyGalleryError` for an empty gallery."""
        side_key = side if side in SIDES and side != "unknown" else "all"
        with session_scope(db) as session:
            fingerprint = gallery_fingerprint(session)
            key = (fingerprint, side_key)
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None:
                    self._entries.move_to_end(key)
                    return cached
            photos = gallery_photos(session, store, None if side_key == "all" else side_key)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                return cached
            index = engine.build_index(photos, progress)
            for stale in [k for k in self._entries if k[0] != fingerprint]:
                del self._entries[stale]  # the gallery changed: those indexes can never be asked for again
            self._entries[key] = index
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            log.info("Gallery index built: %d photos, side %s", len(index.photos), side_key)
            return index
