"""One deployment as the pages see it: settings, database, photo store, the engine and its gallery indexes.

The app keeps one :class:`App` per process (``ui.context``); every function in :mod:`core.service` takes
it first and opens its own transaction, so a page never holds a database session. The models load on
first use, not when a page that never matches anything opens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session

from core.engine.search import Engine
from core.indexing.cache import IndexCache
from core.review.sessions import load_secret
from core.service.jobs import Jobs
from core.settings import Settings
from core.store.db import get_engine, session_scope
from core.store.photos import PhotoStore


class App:
    """Everything a request needs, shared by every session of one app process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: SqlEngine = get_engine(settings.database_url)
        self.store = PhotoStore(settings.photo_dir)
        self.indexes = IndexCache()
        self.jobs = Jobs()
        self.secret = load_secret(settings.home, settings.session_secret)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The matching models, loaded once (a second or two) by whichever request needs them first."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self.settings.engine.make_engine(self.settings.home)
            return self._engine

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    def gallery_changed(self) -> None:
        """After a change to the gallery: the indexes built so far are updated in the background."""
        self.indexes.refresh(self._engine, self.db, self.store)

    @property
    def gallery_updating(self) -> bool:
        """Whether searches are using the previous version of the gallery while its index is updated."""
        return self.indexes.updating()

    @property
    def gallery_update_error(self) -> str | None:
        """Why the last background update of the gallery failed, while it stays failed."""
        return next(iter(self.indexes.errors.values()), None)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with session_scope(self.db) as session:
            yield session
