"""A search restricted to some individuals (a species, a region): a view of the gallery's index, never a change to it.

Why a view: the index a process keeps is shared by every search and by every session; filtering it in place would
hide animals from the next volunteer, and a shortlist bank built for the whole gallery addresses photos by their
position in it, so it must not be used for a subset. A view shares the features, the sampled null pairs and the
fitted null models (they describe the whole gallery and stay valid for any part of it: a photo's score against
strangers does not depend on which strangers are searched) and gets its own shortlist banks. The last few views
are kept, so that one volunteer's searches with the same filter do not rebuild them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterable

from sqlmodel import Session, col, select

from core.engine.index import GalleryIndex
from core.errors import EmptyGalleryError
from core.store.models import Photo

__all__ = ["photo_ids_of", "restricted", "subset"]

_KEEP_VIEWS = 8
_views: OrderedDict[tuple[int, frozenset[str]], tuple[GalleryIndex, GalleryIndex]] = OrderedDict()
_lock = threading.Lock()


def photo_ids_of(session: Session, individuals: Iterable[int]) -> set[int]:
    """The ids of the photos that count for these individuals now."""
    wanted = sorted(set(individuals))
    if not wanted:
        return set()
    rows = session.exec(select(Photo.id).where(col(Photo.individual_id).in_(wanted))).all()
    return {ident for ident in rows if ident is not None}


def subset(index: GalleryIndex, photo_ids: Iterable[int]) -> GalleryIndex:
    """A view of ``index`` holding only the photos with these ids, in the index's order; ``index`` is untouched.

    Raises :class:`~core.errors.EmptyGalleryError` when none of its photos is left.
    """
    allowed = set(photo_ids)
    chosen = [i for i, photo in enumerate(index.photos) if photo.photo_id in allowed]
    if len(chosen) == len(index.photos):
        return index
    if not chosen:
        raise EmptyGalleryError(
            "No individual in the gallery fits this species and region: switch on 'Search everywhere'."
        )
    key = (id(index), frozenset(index.photos[i].key for i in chosen))
    with _lock:
        kept = _views.get(key)
        if kept is not None and kept[0] is index:
            _views.move_to_end(key)
            return kept[1]
    view = dataclasses.replace(
        index,
        photos=[index.photos[i] for i in chosen],
        features=[index.features[i] for i in chosen],
        shortlists={},  # the whole gallery's banks address photos by position: a view builds its own
    )
    with _lock:
        _views[key] = (index, view)  # holding ``index`` keeps its id from being reused while the key lives
        while len(_views) > _KEEP_VIEWS:
            _views.popitem(last=False)
    return view


def restricted(session: Session, index: GalleryIndex, individuals: set[int] | None) -> GalleryIndex:
    """``index`` searched only among ``individuals`` (None: all of it)."""
    if individuals is None:
        return index
    return subset(index, photo_ids_of(session, individuals))
