"""The gallery's features as an index holds them: read from the feature cache when asked for, kept in memory
up to a budget.

Why: an index used to hold every gallery photo's descriptors in memory, 2.7 GB at 10,000 photos with 1,024
keypoints and twice that with the GPU's 2,048, although a shortlisted search reranks 40 of them. Here the
most recently used photos stay in memory until their arrays fill the budget (1 GiB by default); the others
are read again from the on-disk feature cache (a millisecond or two each) when a search, the shortlist's
bank or a null pair asks for them. A gallery that fits the budget behaves exactly as before. The memory is
shared by every view of the index (a shortlist's photos, a site's or species' subset) and handed on to the
next version of the index, so unchanged photos are not read again after an import or a decision.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar, overload

from core.engine.features import Features

__all__ = ["DEFAULT_FEATURE_MEMORY_MIB", "FeatureMemory", "GalleryFeatures", "features_at"]

#: What an index keeps in memory by default: a 1,000-photo gallery whole on a laptop (0.5 GB at the CPU's
#: settings), about 1,000 photos of a GPU gallery (1 MB each at 2,048 keypoints).
DEFAULT_FEATURE_MEMORY_MIB = 1024


class KeyedPhoto(Protocol):
    """What the store needs of a gallery photo (core.engine.index.GalleryPhoto): the key of its features."""

    @property
    def key(self) -> str: ...


Photo = TypeVar("Photo", bound=KeyedPhoto)


def _nbytes(features: Features) -> int:
    arrays = (features.keypoints, features.descriptors, features.scores, *features.extra.values())
    return sum(int(a.nbytes) for a in arrays)


class FeatureMemory:
    """Features by photo key, least recently used first out once their arrays pass ``budget`` bytes.

    Safe from several threads: the app's searches and its background index updates share one.
    """

    def __init__(self, budget: int) -> None:
        self.budget = max(0, int(budget))
        self.nbytes = 0
        self._kept: OrderedDict[str, tuple[Features, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: str) -> Features | None:
        with self._lock:
            hit = self._kept.get(key)
            if hit is None:
                return None
            self._kept.move_to_end(key)
            return hit[0]

    def put(self, key: str, features: Features) -> None:
        size = _nbytes(features)
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._kept[key] = (features, size)
            self.nbytes += size
            while self.nbytes > self.budget and len(self._kept) > 1:
                _, (_, dropped) = self._kept.popitem(last=False)
                self.nbytes -= dropped
            if self.nbytes > self.budget:  # even one photo is over the budget: keep none
                self._kept.clear()
                self.nbytes = 0


class GalleryFeatures(Sequence[Features], Generic[Photo]):
    """Features of ``photos`` in their order: from ``memory`` when there, else ``load(photo)`` (the cache)."""

    def __init__(self, photos: Sequence[Photo], load: Callable[[Photo], Features], memory: FeatureMemory) -> None:
        self.photos = list(photos)
        self.load = load
        self.memory = memory

    def __len__(self) -> int:
        return len(self.photos)

    @overload
    def __getitem__(self, position: int) -> Features: ...

    @overload
    def __getitem__(self, position: slice) -> GalleryFeatures[Photo]: ...

    def __getitem__(self, position: int | slice) -> Features | GalleryFeatures[Photo]:
        if isinstance(position, slice):
            return GalleryFeatures(self.photos[position], self.load, self.memory)
        return self.of(self.photos[position])

    def __iter__(self) -> Iterator[Features]:
        for photo in self.photos:
            yield self.of(photo)

    def of(self, photo: Photo) -> Features:
        hit = self.memory.get(photo.key)
        if hit is None:
            hit = self.load(photo)
            self.memory.put(photo.key, hit)
        return hit


def features_at(features: Sequence[Features], positions: Iterable[int]) -> Sequence[Features]:
    """The features at ``positions``, without reading any: a view sharing the memory, or a list of a list's."""
    chosen = list(positions)
    if isinstance(features, GalleryFeatures):
        return GalleryFeatures([features.photos[i] for i in chosen], features.load, features.memory)
    return [features[i] for i in chosen]
