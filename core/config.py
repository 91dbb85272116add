"""Where Scute keeps its data: one directory (``$SCUTE_HOME``, default ``./data``) and one database URL."""

from __future__ import annotations

import os
from pathlib import Path


def scute_home() -> Path:
    """The data directory: photo store, feature cache and the default SQLite gallery."""
    return Path(os.environ.get("SCUTE_HOME", "data")).expanduser().resolve()


def database_url(explicit: str | None = None, home: Path | None = None) -> str:
    """An explicit URL wins, then ``$DATABASE_URL``, then a SQLite file in the data directory."""
    if explicit:
        return explicit
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    home = home or scute_home()
    return f"sqlite:///{home / 'gallery.db'}"


def photo_store_dir(home: Path | None = None) -> Path:
    return (home or scute_home()) / "photos"


def feature_cache_dir(home: Path | None = None) -> Path:
    return (home or scute_home()) / "features"
