"""A search restricted to some individuals (a species, a region): a view of the gallery's index, never a change to it.

Why a view: the index a process keeps is shared by every search and by every session; filtering it in place would
hide animals from the next volunteer, and a shortlist bank built for the whole gallery addresses photos by their
position in it, so it must not be used for a subset. A view shares the features, the sampled null pairs and the
fitted null models (they describe the whole gallery and stay valid for any part of it: a photo's score against
strangers does not depend on which strangers are searched) and gets its own shortlist banks. The last few views
of an index are kept while it lives (never longer: a replaced index's memory is freed with its views), so that one
volunteer's searches with the same filter do not rebuild them.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from sqlmodel import Session, col, select

from core.engine.gallery_features import features_at
from core.engine.index import GalleryIndex
from core.errors import EmptyGalleryError
from core.store.models import Photo

__all__ = ["photo_ids_of", "restricted", "subset"]

_KEEP_VIEWS = 8  # per index
_views: dict[int, OrderedDict[frozenset[str], GalleryIndex]] = {}  # id of a live index -> its views
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
    key = frozenset(index.photos[i].key for i in chosen)
    with _lock:
        kept = _views.get(id(index), {}).get(key)
        if kept is not None:
            _views[id(index)].move_to_end(key)
            return kept
    view = dataclasses.replace(
        index,
        photos=[index.photos[i] for i in chosen],
        features=features_at(index.features, chosen),
        shortlists={},  # the whole gallery's banks address photos by position: a view builds its own
    )
    with _lock:
        if id(index) not in _views:
            _views[id(index)] = OrderedDict()
            weakref.finalize(index, _forget, id(index))  # its id may be reused once it is gone
        own = _views[id(index)]
        own[key] = view
        while len(own) > _KEEP_VIEWS:
            own.popitem(last=False)
    return view


def _forget(index_id: int) -> None:
    with _lock:
        _views.pop(index_id, None)


def restricted(session: Session, index: GalleryIndex, individuals: set[int] | None) -> GalleryIndex:
    """``index`` searched only among ``individuals`` (None: all of it)."""
    if individuals is None:
        return index
    return subset(index, photo_ids_of(session, individuals))
