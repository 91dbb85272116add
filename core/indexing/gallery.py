"""The gallery as the engine sees it, and the features of photos that join it."""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session

from core.engine.features import photo_key
from core.engine.index import GalleryPhoto
from core.engine.search import Engine
from core.store.gallery import gallery_entries, record_features
from core.store.models import Photo
from core.store.photos import PhotoStore


def gallery_photos(session: Session, store: PhotoStore, side: str | None = None) -> list[GalleryPhoto]:
    """The searchable photos for a query of ``side`` (None or "unknown": all sides), as the engine takes them."""
    return [
        GalleryPhoto(e.sha256, e.individual_code, e.path, e.crop, e.rotation, e.photo_id, e.individual_name)
        for e in gallery_entries(session, store, side)
    ]


class FeatureSummary(Protocol):
    """What the database notes of a photo's features (:class:`core.engine.features.Features` will do): an
    import waiting to write a row need not hold the arrays."""

    @property
    def version(self) -> str: ...

    def __len__(self) -> int: ...


def record_photo_features(session: Session, engine: Engine, photo: Photo, features: FeatureSummary) -> None:
    """Note in the database which feature file belongs to ``photo`` under the engine's settings."""
    key = photo_key(photo.sha256, photo.crop, photo.rotation)
    relpath = engine.feature_cache.path(features.version, key).relative_to(engine.feature_cache.root)
    assert photo.id is not None
    record_features(session, photo.id, engine.extractor.name, engine.extractor.version, str(relpath), len(features))
