"""Matches that only say two photos share pixels, not that they show the same animal.

Catalogues hold several crops of one exposure: two nyala drinking side by side cut from one frame, two turtles on
one reef photo. Their overlapping background (rocks, water, the other animal's legs) matches pixel for pixel:
hundreds of strong matches between different individuals, all related by one similarity (the crops' offset and
their scales) to within a pixel. Photos of one animal taken at different moments never are, because the animal and
the camera move. So the largest set of strong matches that one similarity explains within ``tolerance`` pixels,
turned no more than a few degrees from a quarter turn (crops of one frame are not turned against each other, a
turtle's head seen twice usually is), when it is most of them, is set aside as a shared exposure before a pair
is scored. Unless it covers most of either photo: then the two are one photo (a copy, turned, resized or cropped
tighter), which shows the same animal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.engine.matching import MatchResult


@dataclass(frozen=True)
class ExposureConf:
    """When a pair's strong matches count as one shared exposure (chosen by cross-validation over identity folds
    of both shared sets: docs/evaluation/runners/exposure_offline.py)."""

    tolerance: float = 2.0  # pixels in the gallery photo's working frame
    min_matches: int = 12  # fewer exact matches than this are chance
    min_fraction: float = 0.5  # of the pair's strong matches
    trials: int = 256  # similarity hypotheses, each from two matches
    copy_fraction: float = 0.5  # of the fewer photo's keypoints: a set this large is one photo twice (a copy), kept
    max_rotation: float | None = 3.0  # degrees from a quarter turn (None: any): crops of one frame are not turned


SHARED_EXPOSURE = ExposureConf()  # the engine's default


def similarity_inliers(
    p0: np.ndarray, p1: np.ndarray, tolerance: float, trials: int, max_rotation: float | None = None, seed: int = 0
) -> np.ndarray:
    """The largest set of matches ``p0[i] -> p1[i]`` (N x 2 pixels) that one similarity (scale, rotation,
    translation) maps within ``tolerance`` pixels, from ``trials`` hypotheses through two matches each;
    ``max_rotation``: only similarities turned at most this many degrees from a quarter turn."""
    n = len(p0)
    if n < 2:
        return np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)  # a fixed seed: a pair always scores the same
    a, b = rng.integers(0, n, trials), rng.integers(0, n, trials)
    z0 = p0[:, 0].astype(np.float64) + 1j * p0[:, 1]
    z1 = p1[:, 0].astype(np.float64) + 1j * p1[:, 1]
    d0 = z0[b] - z0[a]
    usable = np.abs(d0) > 1e-3
    if not usable.any():
        return np.zeros(n, dtype=bool)
    a, b, d0 = a[usable], b[usable], d0[usable]
    m = (z1[b] - z1[a]) / d0  # scale and rotation as one complex factor
    t = z1[a] - m * z0[a]
    if max_rotation is not None:
        turned = np.abs((np.degrees(np.angle(m)) + 45.0) % 90.0 - 45.0) <= max_rotation
        if not turned.any():
            return np.zeros(n, dtype=bool)
        m, t = m[turned], t[turned]
    inliers = np.abs(z1[None, :] - (m[:, None] * z0[None, :] + t[:, None])) < tolerance
    return inliers[int(np.argmax(inliers.sum(axis=1)))]


def shared_exposure(
    kpts0: np.ndarray, kpts1: np.ndarray, strong: np.ndarray, conf: ExposureConf, keypoints: int | None = None
) -> np.ndarray:
    """Which matches to set aside as a shared exposure (all False when the pair is not one); ``strong`` marks the
    matches the score counts, the only ones tested; ``keypoints``: the fewer of the two photos' keypoints, above
    ``conf.copy_fraction`` of which the pair is one photo twice and keeps its matches."""
    out = np.zeros(len(strong), dtype=bool)
    at = np.flatnonzero(strong)
    if len(at) < conf.min_matches:
        return out
    inliers = similarity_inliers(kpts0[at], kpts1[at], conf.tolerance, conf.trials, conf.max_rotation)
    found = int(inliers.sum())
    if keypoints is not None and found >= conf.copy_fraction * keypoints:
        return out
    if found >= max(conf.min_matches, conf.min_fraction * len(at)):
        out[at[inliers]] = True
    return out


def set_aside_shared_exposure(result: MatchResult, strong: float, conf: ExposureConf) -> MatchResult:
    """``result`` without the matches :func:`shared_exposure` finds among its ``strong`` ones (confidence at least
    ``strong``), their number in ``shared_exposure``; ``result`` itself when there are none."""
    shared = shared_exposure(
        result.kpts0, result.kpts1, result.confidence >= strong, conf, min(result.n0, result.n1) or None
    )
    if not shared.any():
        return result
    return result.only(~shared, shared_exposure=int(shared.sum()))
