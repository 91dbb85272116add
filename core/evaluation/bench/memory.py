"""The feature cache with an in-memory layer, so a benchmark holds each gallery photo's features once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from core.engine.features import FeatureCache, Features


class MemoryFeatureCache(FeatureCache):
    """The on-disk feature cache plus one in-memory copy of every entry read or written during a size.

    ``Engine.build_index`` reads every gallery photo's features again: with this layer it gets the very
    objects the benchmark already holds instead of a second copy. With ``half`` the descriptors stay in
    half precision, exactly what the disk cache stores, which halves the gallery's memory (LightGlue
    converts them to its own precision anyway).
    """

    def __init__(self, root: Path, half: bool) -> None:
        super().__init__(root)
        self.half = half
        self.memory: dict[tuple[str, str], Features] = {}

    def get(self, version: str, key: str) -> Features | None:
        hit = self.memory.get((version, key))
        if hit is None:
            hit = super().get(version, key)
            if hit is not None:
                if self.half:
                    hit.descriptors = hit.descriptors.astype(np.float16)
                self.memory[(version, key)] = hit
        return hit

    def put(self, features: Features, key: str) -> Path:
        """Write to disk and keep what a read would give back (descriptors rounded to half precision, as
        stored), so that the benchmark never reads its own writes again. Safe from several writer threads."""
        path = super().put(features, key)
        half = features.descriptors.astype(np.float16)
        kept = dataclasses.replace(features, descriptors=half if self.half else half.astype(np.float32))
        self.memory[(features.version, key)] = kept
        return path

    def forget(self) -> None:
        self.memory.clear()
