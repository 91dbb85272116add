"""The gallery takes only photos it can search with, and never decodes one while holding the write lock.

Why: a sighting framed on a flat part of its photo (no usable keypoints) used to be decided anyway; its
features failed quietly, and the gallery held a photo no search could use. And computing features inside the
decision's transaction decoded and ran the network while every other writer (an admin's edit) waited.

So a decision runs in :func:`with_gallery_features`: the transaction's gallery hook (:func:`gallery_hook`)
only *records* features that are already cached. When they are not, it raises :class:`FeaturesNotReady`,
the transaction rolls back (nothing changed), the features are computed outside any lock, and the decision
runs again. A photo whose features cannot be had is refused with :class:`UnsearchablePhoto`: the sighting
stays as it was. :func:`gallery_feature_problems` lists gallery photos without usable features (for
``python -m core check``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, col, select

from core.engine.extractors import EXTRACTORS
from core.engine.features import MIN_KEYPOINTS, Extractor, Features, photo_key
from core.engine.search import Engine
from core.errors import ScuteError
from core.indexing.gallery import record_photo_features
from core.review.votes import GalleryHook
from core.store.db import session_scope
from core.store.models import FeatureRecord, Individual, Photo
from core.store.photos import PhotoStore

log = logging.getLogger(__name__)

__all__ = [
    "FeaturesNotReady",
    "Framing",
    "Searchability",
    "UnsearchablePhoto",
    "extractor_version",
    "gallery_feature_problems",
    "gallery_hook",
    "prepare_features",
    "with_gallery_features",
    "with_gallery_features_in",
]

T = TypeVar("T")

#: Decisions tried at most this many times: each retry follows features computed for a framing that changed.
ATTEMPTS = 3


@dataclass(frozen=True)
class Framing:
    """A photo as the gallery would search with it: its file, content and crop/rotation."""

    path: Path
    sha256: str
    crop: tuple[float, float, float, float] | None
    rotation: int

    @property
    def key(self) -> str:
        return photo_key(self.sha256, self.crop, self.rotation)


class FeaturesNotReady(Exception):
    """Raised inside a transaction whose photo would join the gallery without cached features.

    Not a :class:`ScuteError`: it never reaches a user; :func:`with_gallery_features` catches it, computes the
    features outside the transaction and runs the decision again.
    """

    def __init__(self, framing: Framing) -> None:
        super().__init__(f"features of {framing.key} are not cached")
        self.framing = framing


class UnsearchablePhoto(ScuteError):
    """The photo cannot join the gallery: searches could not use it (no usable keypoints, unreadable file)."""


def _framing(store: PhotoStore, photo: Photo) -> Framing:
    return Framing(store.path(photo.path), photo.sha256, photo.crop, photo.rotation)


def gallery_hook(session: Session, store: PhotoStore, engine: Engine) -> GalleryHook:
    """What a decision calls, inside its transaction, when a photo joins the gallery: records its cached
    features; raises :class:`FeaturesNotReady` when there are none (it never decodes: the lock is held)."""

    def hook(photo: Photo) -> None:
        framing = _framing(store, photo)
        features = engine.feature_cache.get(engine.extractor.version, framing.key)
        if features is None or len(features) < MIN_KEYPOINTS:
            raise FeaturesNotReady(framing)
        record_photo_features(session, engine, photo, features)

    return hook


def prepare_features(engine: Engine, framing: Framing) -> Features:
    """Compute (or read from the cache) the features a search would use; call it outside any transaction.

    Raises :class:`UnsearchablePhoto`, with the reason, when the photo as framed cannot be searched with.
    """
    try:
        return engine.features(framing.path, framing.sha256, framing.crop, framing.rotation)
    except (ScuteError, OSError) as exc:
        log.info("Photo %s refused for the gallery: %s", framing.key, exc)
        raise UnsearchablePhoto(
            "This photo cannot join the gallery, because searches could not use it as it is framed: "
            f"{exc} Nothing was changed: the sighting stays as it was. Frame the head again (a new sighting "
            "with a crop on the animal's head), or vote 'unsure' with a comment."
        ) from exc


def with_gallery_features(
    db: SqlEngine, store: PhotoStore, engine: Engine, work: Callable[[Session, GalleryHook], T]
) -> T:
    """Run ``work(session, hook)`` in one transaction, passing ``hook`` on as its ``on_gallery_change``.

    When the work would put a photo into the gallery whose features are not cached yet, the transaction rolls
    back, the features are computed with no transaction open (so no writer waits for a decode), and the work
    runs again. Raises :class:`UnsearchablePhoto` for a photo that searches could not use.
    """
    for _attempt in range(ATTEMPTS):
        try:
            with session_scope(db) as session:
                return work(session, gallery_hook(session, store, engine))
        except FeaturesNotReady as missing:
            log.info("Computing features of %s outside the transaction, then deciding again", missing.framing.key)
            prepare_features(engine, missing.framing)
    raise ScuteError("The photo's framing kept changing while it was being decided; please try again.")


@dataclass(frozen=True)
class Searchability:
    """What ``check`` says about the gallery's features: ``problems`` make the gallery inconsistent (a photo
    that joined without ever getting features, or with too few keypoints), ``notes`` do not (features kept
    only for other engine settings are recomputed when the index is next built)."""

    problems: list[str]
    notes: list[str]


def with_gallery_features_in(
    session: Session, store: PhotoStore, engine: Callable[[], Engine], work: Callable[[GalleryHook], T]
) -> T:
    """:func:`with_gallery_features` inside a transaction the caller owns (the command line's): on
    :class:`FeaturesNotReady` the session is rolled back, the features computed, and ``work`` run again.
    ``engine`` is called only when a photo joins the gallery (loading the models takes seconds)."""

    def hook(photo: Photo) -> None:
        gallery_hook(session, store, engine())(photo)

    for _attempt in range(ATTEMPTS):
        try:
            return work(hook)
        except FeaturesNotReady as missing:
            session.rollback()
            prepare_features(engine(), missing.framing)
    raise ScuteError("The photo's framing kept changing while it was being decided; please try again.")


def gallery_feature_problems(session: Session, version: str) -> Searchability:
    """Gallery photos that searches with ``version`` (the deployment's extractor settings) would leave out.

    Missing or damaged feature *files* are :func:`core.store.integrity.check_files`'s to report.
    """
    records: dict[int, dict[str, FeatureRecord]] = {}
    for record in session.exec(select(FeatureRecord)).all():
        records.setdefault(record.photo_id, {})[record.version] = record
    problems, other_settings = [], 0
    rows = session.exec(
        select(Photo, Individual)
        .join(Individual, col(Photo.individual_id) == col(Individual.id))
        .where(col(Photo.in_gallery).is_(True))
        .order_by(col(Photo.id))
    ).all()
    for photo, individual in rows:
        what = f"gallery photo {photo.id} of {individual.code}"
        kept = records.get(photo.id, {})  # type: ignore[arg-type]
        record = kept.get(version)
        if not kept:
            problems.append(
                f"{what} joined the gallery without features (searches leave it out if they cannot compute "
                "them): check its crop, or move or remove it"
            )
        elif record is None:
            other_settings += 1
        elif record.n_keypoints < MIN_KEYPOINTS:
            problems.append(f"{what} has only {record.n_keypoints} keypoints, too few for searches to use it")
    notes = []
    if other_settings:
        notes.append(
            f"{other_settings} gallery photos have features for other engine settings only ({version} is "
            "current); the next index build computes them"
        )
    return Searchability(problems, notes)


def extractor_version(name: str, conf: dict[str, Any] | None, device: str | None = None) -> str:
    """The feature version an engine with these settings writes, without loading its network (``check`` needs
    the version only; the version depends on the settings and the weights' names, not on the weights)."""
    cls = EXTRACTORS[name]
    probe = cls.__new__(cls)
    Extractor.__init__(probe, conf, device)
    return probe.version
