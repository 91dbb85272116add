"""Features of many photos at once, with decoding, batching and the network overlapped and memory bounded.

Why: one photo at a time, the network thread also decoded, resized and converted, and a GPU sat idle for
most of each photo (45 photos/s on an H200, whose network alone does about 300). Here decoding threads
(one per core) read ahead of the network by a bounded ``window``; decoded images wait in buckets of one
network shape (:meth:`Extractor.batch_key`) until a batch is full; on a GPU two network threads, each on
its own CUDA stream, keep the GPU busy while the other one cuts out each image's keypoints (per-image work
that waits on the GPU). On a CPU it is one network thread and batches of one: the path :meth:`extract` takes.
:func:`cached_stream` puts the feature cache in front, as :meth:`FeatureCache.get_or_extract` does for one photo.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.engine.features import Extractor, FeatureCache, Features, photo_key
from core.engine.images import prepare
from core.errors import ScuteError

__all__ = ["DecodedPhoto", "cached_stream", "extract_stream"]

#: Network threads on a GPU: one runs the dense network while the other runs the per-image heads.
GPU_STREAMS = 2


def extract_stream(
    extractor: Extractor,
    count: int,
    load: Callable[[int], np.ndarray | Features],
    on_result: Callable[[int, Features | ScuteError], None],
    *,
    workers: int | None = None,
    window: int | None = None,
) -> None:
    """Features of items ``0 .. count - 1``; ``load(i)`` decodes item ``i`` (RGB, already cropped and turned),
    or gives its features when they are already known (a cache hit), which then skip the network.

    ``on_result(i, features_or_error)`` is called on this thread, in completion order (not item order), for
    every item: a photo that cannot be decoded or that the extractor refuses (blank, too small, too few
    keypoints) gives its :class:`ScuteError`; anything else (a programming error) is raised here. At most
    ``window`` decoded images wait for the network (default: 64 batches on a GPU, in its memory; on a CPU
    four batches per network thread, at least two per decoding thread), so memory does not grow with ``count``.
    """
    workers = workers or max(2, os.cpu_count() or 2)
    on_gpu = extractor.device.type == "cuda"
    streams = GPU_STREAMS if on_gpu else 1
    batch = max(1, int(getattr(extractor, "batch", 1)))
    # On a GPU the waiting images are staged in GPU memory (1.7 MB each at 1024 px), not in this process's, so
    # the window can hold enough of them for photos of many sizes to fill batches of one padded size.
    window = window or (64 * batch if on_gpu else max(4 * batch * streams, 2 * workers))
    stream_of: dict[int, Any] = {}  # network thread -> its CUDA stream

    def read(i: int) -> tuple[int, Any]:
        try:
            loaded = load(i)
            return i, loaded if isinstance(loaded, Features) else extractor.stage(extractor.working(loaded))
        except ScuteError as exc:
            return i, exc

    def network(items: list[tuple[int, Any]]) -> list[tuple[int, Features | ScuteError]]:
        context: Any = nullcontext()
        if on_gpu:
            me = threading.get_ident()
            if me not in stream_of:
                stream_of[me] = torch.cuda.Stream(extractor.device)
            context = torch.cuda.stream(stream_of[me])
        with context:
            results = extractor.extract_staged([image for _, image in items])
        return [(i, r) for (i, _), r in zip(items, results, strict=True)]

    todo = iter(range(count))
    buckets: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
    held = reading = running = 0  # images waiting in buckets, reads and network runs not finished
    # Finished futures arrive here (waiting on a set of a thousand futures would cost more than a photo).
    finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
    readers, networks = ThreadPoolExecutor(workers), ThreadPoolExecutor(streams)
    try:
        while True:
            while reading + held < window and (i := next(todo, None)) is not None:
                readers.submit(read, i).add_done_callback(finished.put)
                reading += 1
            # Full batches go as soon as a network thread can take them; a partial one only when the
            # window is full of waiting images or nothing more is coming.
            while running < 2 * streams and buckets:
                key = max(buckets, key=lambda k: len(buckets[k]))
                if len(buckets[key]) < batch and reading + held < window and reading:
                    break
                items = buckets.pop(key)
                held -= len(items)
                networks.submit(network, items).add_done_callback(finished.put)
                running += 1
            if not reading and not running and not buckets:
                return
            outcome = finished.get().result()
            if isinstance(outcome, tuple):  # a read: (item, staged image, known features or the error)
                reading -= 1
                i, image = outcome
                if isinstance(image, ScuteError | Features):
                    on_result(i, image)
                else:
                    buckets.setdefault(extractor.batch_key(tuple(image.shape)), []).append((i, image))
                    held += 1
            else:  # a network run: [(item, features or error)]
                running -= 1
                for i, result in outcome:
                    on_result(i, result)
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        networks.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class DecodedPhoto:
    """A decoded photo (full-size RGB, as :func:`core.engine.images.load_image` gives it) and how it is framed:
    with its content's hash, what the feature cache files its features under (:func:`photo_key`)."""

    pixels: np.ndarray
    sha256: str
    crop: tuple[float, float, float, float] | None = None
    rotation: int = 0

    @property
    def key(self) -> str:
        return photo_key(self.sha256, self.crop, self.rotation)


def cached_stream(
    extractor: Extractor,
    cache: FeatureCache,
    count: int,
    load: Callable[[int], DecodedPhoto],
    on_result: Callable[[int, Features | ScuteError], None],
    *,
    workers: int | None = None,
    window: int | None = None,
) -> None:
    """:func:`extract_stream` for photos the app keeps: each gives the same features, under the same cache key,
    as :meth:`FeatureCache.get_or_extract` photo by photo (the engine's ``features``), so caches and indexes
    stay valid whichever way a photo came in.

    A photo whose features are cached skips the network; new features are cached before ``on_result`` sees
    them, so work that a stopped import finished is not redone. ``load`` runs on the decoding threads.

    On a CPU one photo is decoded ahead of the network, no more: more decoding threads take cores from the
    network's own threads, and in the browser a 16-photo import took about 10 % longer with two of them.
    """
    if extractor.device.type != "cuda":
        workers, window = workers or 1, window or 1
    keys: dict[int, str] = {}  # items on their way through the network -> their cache key

    def framed(i: int) -> np.ndarray | Features:
        photo = load(i)
        cached = cache.get(extractor.version, photo.key)
        if cached is not None:
            return cached
        keys[i] = photo.key
        return prepare(photo.pixels, crop=photo.crop, rotation=photo.rotation, max_side=extractor.max_side)

    def keep(i: int, result: Features | ScuteError) -> None:
        key = keys.pop(i, None)
        if key is not None and isinstance(result, Features):
            result = cache.keep(result, key)
        on_result(i, result)

    extract_stream(extractor, count, framed, keep, workers=workers, window=window)
