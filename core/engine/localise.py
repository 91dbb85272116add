"""Find the animal before matching it: zoom to where the first pass's matches lie, at the photo's own resolution.

A turtle a few dozen pixels long in a 2000-px field scene shrinks to a few dozen *working* pixels at the
engine's ``max_side``, where its scutes are no longer matchable. No detector weights ship with the engine, so
the animal is found the weight-free way: the query's keypoints matched (with some confidence) to the best
candidates of a first search lie on the animal, far more than on water or sand, which every photo has. A robust
box around them, with a margin, is cut from the photo at its native resolution (the crop is applied before the
downscale, so the region gets up to ``max_side`` pixels of its own) and the search runs again on it.

Regions are normalised ``(x0, y0, x1, y1)`` in the frame of the query *as the engine received it* (after the
volunteer's crop and rotation): the frame the Identify page shows. :func:`region_to_crop` turns one into a crop
of the original photo (the form :func:`core.engine.images.crop_and_rotate` takes); :func:`to_frame` moves the
zoomed search's query keypoints back into the as-given working frame, so that overlays and stored evidence keep
describing the photo the volunteer sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.engine.matching import MatchResult

Region = tuple[float, float, float, float]


@dataclass(frozen=True)
class ZoomConf:
    """When and how to zoom. The gate's defaults were chosen by cross-validation over identity folds on both
    shared sets (README, issue 14): neither the region's size nor the pixels gained predicted a better answer,
    the first pass's doubt did. Since edge matches are set aside (core.engine.framing) the zoomed answer is kept only
    when it is at least as sure as the first: kept always, it lost more turtle answers than it won."""

    candidates: int = 3  # best-ranked candidates whose matches point to the animal
    min_confidence: float = 0.2  # matches at least this confident count as pointing to it
    min_points: int = 8  # fewer such query keypoints locate nothing
    quantile: float = 0.05  # the box spans the quantile .. 1 - quantile of their positions (robust to strays)
    margin: float = 0.25  # added on each side, as a fraction of the box's width and height
    min_fraction: float = 0.2  # the region spans at least this fraction of the image's width and of its height
    max_area: float = 1.0  # zoom only when the region covers less than this share of the image (1: not all) ...
    min_gain: float = 0.0  # ... and the zoomed crop has this many times the region's working pixels (linear) ...
    confident: float = 0.8  # ... and the first pass's best probability is below this (above 1: always)
    only_if_surer: bool = True  # the zoomed answer replaces the first only when its best probability is as high

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.min_points < 1:
            raise ValueError("zoom candidates and min_points must be at least 1")
        if not 0.0 <= self.quantile < 0.5 or self.margin < 0 or not 0 < self.min_fraction <= 1:
            raise ValueError("zoom quantile must be in [0, 0.5), margin non-negative, min_fraction in (0, 1]")


def locate(matches: Sequence[MatchResult], frame_size: tuple[int, int], conf: ZoomConf = ZoomConf()) -> Region | None:
    """Where the animal is in the query: a robust box around its confidently matched keypoints, or None.

    ``matches``: the first pass's results with its best candidates, best first, query keypoints in the
    as-given working frame of size ``frame_size`` (W, H). Each keypoint counts once even if several
    candidates matched it.
    """
    every = [m if m.unframed is None else m.unframed for m in matches[: conf.candidates]]
    points = [m.kpts0[m.confidence >= conf.min_confidence] for m in every]
    if not points:
        return None
    found = np.unique(np.concatenate(points).reshape(-1, 2), axis=0)
    if len(found) < conf.min_points:
        return None
    width, height = frame_size
    low = np.quantile(found, conf.quantile, axis=0)
    high = np.quantile(found, 1.0 - conf.quantile, axis=0)
    x0, x1 = _span(low[0] / width, high[0] / width, conf)
    y0, y1 = _span(low[1] / height, high[1] / height, conf)
    return (x0, y0, x1, y1)


def _span(start: float, stop: float, conf: ZoomConf) -> tuple[float, float]:
    """One side of the box: widened by the margin and to the minimum size, kept inside [0, 1]."""
    pad = (stop - start) * conf.margin
    start, stop = start - pad, stop + pad
    if stop - start < conf.min_fraction:
        centre = (start + stop) / 2
        start, stop = centre - conf.min_fraction / 2, centre + conf.min_fraction / 2
    if start < 0:  # shift rather than shrink, so a box at the edge keeps its size
        start, stop = 0.0, stop - start
    if stop > 1:
        start, stop = start - (stop - 1), 1.0
    return max(0.0, float(start)), min(1.0, float(stop))


def area(region: Region) -> float:
    x0, y0, x1, y1 = region
    return (x1 - x0) * (y1 - y0)


def gain(region: Region, frame_size: tuple[int, int], native_size: tuple[int, int], max_side: int) -> float:
    """How many times more pixels (per side) the region gets when cut from the native photo than it has now.

    ``native_size``: the as-given photo (volunteer's crop and rotation applied) at full resolution; the zoomed
    crop is downscaled to ``max_side`` like any photo, never upscaled.
    """
    x0, y0, x1, y1 = region
    now = max((x1 - x0) * frame_size[0], (y1 - y0) * frame_size[1])
    native = max((x1 - x0) * native_size[0], (y1 - y0) * native_size[1])
    return min(native, max_side) / max(now, 1e-6)


def worth_zooming(
    region: Region | None,
    frame_size: tuple[int, int],
    native_size: tuple[int, int],
    max_side: int,
    best_probability: float,
    conf: ZoomConf = ZoomConf(),
) -> bool:
    """Zoom when the animal was found in a small part of the photo, the photo has the pixels to show it larger,
    and the first pass is not already sure."""
    return (
        region is not None
        and area(region) < conf.max_area
        and gain(region, frame_size, native_size, max_side) >= conf.min_gain
        and best_probability < conf.confident
    )


def region_to_crop(region: Region, crop: Region | None = None, rotation: int = 0) -> Region:
    """The crop of the original photo (fractions of its EXIF-oriented width and height) that shows ``region``.

    ``region`` is normalised in the as-given frame: the photo cut to ``crop`` and then turned ``rotation``
    degrees clockwise, as :func:`core.engine.images.crop_and_rotate` does.
    """
    x0, y0, x1, y1 = _unturn(region, rotation)
    if crop is None:
        return (x0, y0, x1, y1)
    cx0, cy0, cx1, cy1 = crop
    w, h = cx1 - cx0, cy1 - cy0
    return (cx0 + x0 * w, cy0 + y0 * h, cx0 + x1 * w, cy0 + y1 * h)


def _unturn(region: Region, rotation: int) -> Region:
    """A normalised box of the turned image, in the image before it was turned clockwise by ``rotation``."""
    x0, y0, x1, y1 = region
    turn = rotation % 360
    if turn == 0:
        return region
    if turn == 90:  # a point (x, y) of the original lands at (1 - y, x)
        return (y0, 1 - x1, y1, 1 - x0)
    if turn == 180:
        return (1 - x1, 1 - y1, 1 - x0, 1 - y0)
    if turn == 270:  # (x, y) lands at (y, 1 - x)
        return (1 - y1, x0, 1 - y0, x1)
    raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")


def native_size(width: int, height: int, crop: Region | None, rotation: int) -> tuple[int, int]:
    """The as-given photo's full-resolution size (W, H): the original's, cut to ``crop``, turned by ``rotation``."""
    if crop is not None:
        width, height = round((crop[2] - crop[0]) * width), round((crop[3] - crop[1]) * height)
    return (height, width) if rotation % 180 == 90 else (width, height)


def to_frame(
    result: MatchResult, region: Region, zoomed_size: tuple[int, int], frame_size: tuple[int, int]
) -> MatchResult:
    """``result`` of the zoomed query with its query keypoints moved into the as-given working frame."""
    unframed = None if result.unframed is None else to_frame(result.unframed, region, zoomed_size, frame_size)
    return dataclasses.replace(
        result, kpts0=points_to_frame(result.kpts0, region, zoomed_size, frame_size), unframed=unframed
    )


def points_to_frame(
    points: np.ndarray, region: Region, zoomed_size: tuple[int, int], frame_size: tuple[int, int]
) -> np.ndarray:
    """Pixel positions in the zoomed working image (size ``zoomed_size``) in the as-given working frame."""
    x0, y0, x1, y1 = region
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    scale = np.array([(x1 - x0) * frame_size[0] / zoomed_size[0], (y1 - y0) * frame_size[1] / zoomed_size[1]])
    offset = np.array([x0 * frame_size[0], y0 * frame_size[1]])
    return (points * scale + offset).astype(np.float32)
