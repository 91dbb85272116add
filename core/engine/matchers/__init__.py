"""The registry of matchers: each has a ``name``, a ``default_conf`` and a ``version``.

An extractor names the matcher that suits its features (``Extractor.matcher``); :func:`matcher_for`
builds it. A new matcher subclasses :class:`core.engine.matching.Matcher` in a module of its own here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.engine.extractors import EXTRACTORS
from core.engine.matchers.lightglue import LightGlueMatcher
from core.engine.matchers.nearest import NearestNeighborMatcher
from core.engine.matching import Matcher

MATCHERS: dict[str, type[Matcher]] = {cls.name: cls for cls in (LightGlueMatcher, NearestNeighborMatcher)}

__all__ = ["MATCHERS", "LightGlueMatcher", "NearestNeighborMatcher", "matcher_for"]


def matcher_for(
    extractor: str,
    conf: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    weights_dir: Path | None = None,
) -> Matcher:
    """The matcher that suits an extractor's features: LightGlue where weights exist, else nearest neighbours."""
    try:
        name = EXTRACTORS[extractor].matcher
    except KeyError:
        raise ValueError(f"unknown extractor {extractor!r}; choose from {sorted(EXTRACTORS)}") from None
    cls = MATCHERS[name]
    if cls is LightGlueMatcher:
        conf = {"features": extractor, **(conf or {})}
    return cls(conf, device, weights_dir)
