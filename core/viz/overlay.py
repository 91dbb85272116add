"""The match overlay: the query and a gallery photo side by side, matched points joined by lines coloured
by LightGlue's confidence (red unsure, amber fair, green confident)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.engine.matching import MatchResult
from core.viz.pictures import as_rgb

_STOPS = np.array([0.0, 0.5, 1.0])
_STOP_RGB = np.array([[220, 38, 38], [245, 158, 11], [22, 163, 74]], dtype=np.float64)


def confidence_colours(confidence: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` colour per match confidence in [0, 1]: red, through amber, to green."""
    c = np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)
    channels = [np.interp(c, _STOPS, _STOP_RGB[:, k]) for k in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8) if c.size else np.zeros((0, 3), np.uint8)


@dataclass
class Overlay:
    """The side-by-side image and how many matches it shows (at or above the threshold)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    shown: int
    total: int


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = height / h
    size = (max(1, round(w * scale)), height)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)


def match_overlay(
    query: np.ndarray,
    gallery: np.ndarray,
    match: MatchResult,
    *,
    query_size: tuple[int, int] | None = None,
    gallery_size: tuple[int, int] | None = None,
    threshold: float = 0.0,
    height: int = 480,
    max_lines: int = 200,
    gap: int = 16,
    line_opacity: float = 0.75,
) -> Overlay:
    """Query (left) and gallery photo (right) at the same height, a line per match coloured by confidence.

    Keypoints live in each photo's working frame, whose size ``(W, H)`` is ``query_size`` /
    ``gallery_size`` (``Features.image_size``); by default the images given are that frame. Matches
    below ``threshold`` are left out, and at most ``max_lines`` of the most confident are drawn so the
    picture stays readable; the most confident are drawn last, on top.
    """
    if height < 16:
        raise ValueError(f"height must be at least 16 pixels, got {height}")
    if not 0.0 <= line_opacity <= 1.0:
        raise ValueError(f"line_opacity must be between 0 and 1, got {line_opacity}")
    left = _fit_height(as_rgb(query, "query"), height)
    right = _fit_height(as_rgb(gallery, "gallery"), height)
    qw, qh = query_size or (query.shape[1], query.shape[0])
    gw, gh = gallery_size or (gallery.shape[1], gallery.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, dtype=np.uint8)
    canvas[:, : left.shape[1]] = left
    offset = left.shape[1] + gap
    canvas[:, offset:] = right

    conf = np.asarray(match.confidence, dtype=np.float64)
    keep = np.flatnonzero(conf >= threshold)
    keep = keep[np.argsort(conf[keep], kind="stable")][-max_lines:] if max_lines > 0 else keep[:0]
    if keep.size:
        p0 = np.asarray(match.kpts0, dtype=np.float64)[keep] * [left.shape[1] / qw, height / qh]
        p1 = np.asarray(match.kpts1, dtype=np.float64)[keep] * [right.shape[1] / gw, height / gh]
        p1[:, 0] += offset
        colours = confidence_colours(conf[keep])
        thickness = 2 if height >= 640 else 1
        radius = max(2, height // 160)
        # Lines are blended so the photos stay visible under a dense bundle; the points stay solid.
        # cv2 draws on RGB as on BGR (the channels are just numbers), so RGB tuples go in as they are.
        layer = canvas.copy()
        a_pts, b_pts = np.rint(p0).astype(int), np.rint(p1).astype(int)
        for a, b, colour in zip(a_pts, b_pts, colours, strict=True):
            cv2.line(layer, tuple(a), tuple(b), tuple(int(v) for v in colour), thickness, cv2.LINE_AA)
        canvas = cv2.addWeighted(layer, line_opacity, canvas, 1.0 - line_opacity, 0.0)
        for a, b, colour in zip(a_pts, b_pts, colours, strict=True):
            rgb = tuple(int(v) for v in colour)
            cv2.circle(canvas, tuple(a), radius, rgb, -1, cv2.LINE_AA)
            cv2.circle(canvas, tuple(b), radius, rgb, -1, cv2.LINE_AA)
    return Overlay(canvas, int(keep.size), int(conf.size))


def colour_legend(width: int = 320, height: int = 14) -> np.ndarray:
    """A horizontal strip from confidence 0 (left) to 1 (right), to show under an overlay."""
    colours = confidence_colours(np.linspace(0.0, 1.0, width))
    return np.repeat(colours[None, :, :], height, axis=0)


# --- confidence distributions ----------------------------------------------------------------------
