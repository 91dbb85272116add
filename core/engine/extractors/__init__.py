"""The registry of keypoint extractors: each has a ``name``, a ``default_conf`` and a ``version``.

A new extractor subclasses :class:`core.engine.features.Extractor` in a module of its own here and is
added to :data:`EXTRACTORS`; its ``matcher`` names the matcher in :mod:`core.engine.matchers` that suits it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.engine.extractors.aliked import AlikedExtractor
from core.engine.extractors.disk import DiskExtractor
from core.engine.extractors.sift import SiftExtractor
from core.engine.features import Extractor

EXTRACTORS: dict[str, type[Extractor]] = {cls.name: cls for cls in (SiftExtractor, DiskExtractor, AlikedExtractor)}
DEFAULT_EXTRACTOR = "aliked"

__all__ = ["DEFAULT_EXTRACTOR", "EXTRACTORS", "AlikedExtractor", "DiskExtractor", "SiftExtractor", "make_extractor"]


def make_extractor(
    name: str = DEFAULT_EXTRACTOR,
    conf: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    weights_dir: Path | None = None,
) -> Extractor:
    try:
        cls = EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown extractor {name!r}; choose from {sorted(EXTRACTORS)}") from None
    return cls(conf, device, weights_dir)
