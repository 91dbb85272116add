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


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = width / w
    size = (width, max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)


def zoom_box(
    points: np.ndarray, size: tuple[int, int], *, margin: float = 0.15, min_share: float = 0.3
) -> tuple[int, int, int, int]:
    """The part ``(x0, y0, x1, y1)`` of a ``size`` (W, H) frame around ``points``, with a margin, at least
    ``min_share`` of each side (a few matches on one scale should not fill the screen), inside the frame."""
    w, h = size
    if len(points) == 0:
        return 0, 0, w, h
    lo, hi = np.min(points, axis=0), np.max(points, axis=0)
    box = []
    for axis, extent in ((0, w), (1, h)):
        span = hi[axis] - lo[axis]
        want = min(extent, max(span * (1 + 2 * margin), min_share * extent))
        centre = (lo[axis] + hi[axis]) / 2
        start = float(np.clip(centre - want / 2, 0, extent - want))
        box.append((round(start), round(min(extent, start + want))))
    (x0, x1), (y0, y1) = box
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _zoomed(image: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``image`` cut to the matched region; the points and the frame size follow the cut."""
    x0, y0, x1, y1 = zoom_box(points, size)
    sx, sy = image.shape[1] / size[0], image.shape[0] / size[1]
    top, left = round(y0 * sy), round(x0 * sx)
    cut = image[top : max(round(y1 * sy), top + 1), left : max(round(x1 * sx), left + 1)]
    return np.ascontiguousarray(cut), points - [x0, y0], (x1 - x0, y1 - y0)


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
    layout: str = "side",
    width: int = 720,
    zoom: bool = False,
    legend: bool = False,
    thickness: int | None = None,
) -> Overlay:
    """Query and gallery photo with a line per match coloured by confidence.

    ``layout="side"`` puts the query left and the gallery photo right at one ``height`` (a desktop);
    ``"stacked"`` puts the query above the gallery photo at one ``width`` (a phone, where two photos side by
    side would be a few pixels tall). Keypoints live in each photo's working frame, whose size ``(W, H)`` is
    ``query_size`` / ``gallery_size`` (``Features.image_size``); by default the images given are that frame.
    Matches below ``threshold`` are left out, and at most ``max_lines`` of the most confident are drawn so the
    picture stays readable; the most confident are drawn last, on top. ``zoom`` cuts both photos to the region
    of the drawn matches; ``legend`` adds a colour key under the picture. Lines are ``thickness`` pixels wide
    (by default they grow with the picture, so they stay visible when a browser shrinks it).
    """
    if height < 16:
        raise ValueError(f"height must be at least 16 pixels, got {height}")
    if not 0.0 <= line_opacity <= 1.0:
        raise ValueError(f"line_opacity must be between 0 and 1, got {line_opacity}")
    if layout not in ("side", "stacked"):
        raise ValueError(f"layout must be 'side' or 'stacked', got {layout!r}")
    query_rgb, gallery_rgb = as_rgb(query, "query"), as_rgb(gallery, "gallery")
    q_size = query_size or (query_rgb.shape[1], query_rgb.shape[0])
    g_size = gallery_size or (gallery_rgb.shape[1], gallery_rgb.shape[0])

    conf = np.asarray(match.confidence, dtype=np.float64)
    keep = np.flatnonzero(conf >= threshold)
    keep = keep[np.argsort(conf[keep], kind="stable")][-max_lines:] if max_lines > 0 else keep[:0]
    p0 = np.asarray(match.kpts0, dtype=np.float64).reshape(-1, 2)[keep]
    p1 = np.asarray(match.kpts1, dtype=np.float64).reshape(-1, 2)[keep]
    if zoom and keep.size:
        query_rgb, p0, q_size = _zoomed(query_rgb, p0, q_size)
        gallery_rgb, p1, g_size = _zoomed(gallery_rgb, p1, g_size)

    if layout == "side":
        first, second = _fit_height(query_rgb, height), _fit_height(gallery_rgb, height)
        canvas = np.full((height, first.shape[1] + gap + second.shape[1], 3), 255, dtype=np.uint8)
        offset = np.array([first.shape[1] + gap, 0])
        canvas[:, : first.shape[1]] = first
        canvas[:, offset[0] :] = second
    else:
        first, second = _fit_width(query_rgb, width), _fit_width(gallery_rgb, width)
        canvas = np.full((first.shape[0] + gap + second.shape[0], width, 3), 255, dtype=np.uint8)
        offset = np.array([0, first.shape[0] + gap])
        canvas[: first.shape[0]] = first
        canvas[offset[1] :] = second

    if keep.size:
        a_pts = np.rint(p0 * [first.shape[1] / q_size[0], first.shape[0] / q_size[1]]).astype(int)
        b_pts = np.rint(p1 * [second.shape[1] / g_size[0], second.shape[0] / g_size[1]] + offset).astype(int)
        colours = confidence_colours(conf[keep])
        line = thickness or max(2, round(max(canvas.shape[:2]) / 350))
        radius = line + 2
        # Lines are blended so the photos stay visible under a dense bundle; the points stay solid.
        # cv2 draws on RGB as on BGR (the channels are just numbers), so RGB tuples go in as they are.
        layer = canvas.copy()
        for a, b, colour in zip(a_pts, b_pts, colours, strict=True):
            cv2.line(layer, tuple(a), tuple(b), tuple(int(v) for v in colour), line, cv2.LINE_AA)
        canvas = cv2.addWeighted(layer, line_opacity, canvas, 1.0 - line_opacity, 0.0)
        for a, b, colour in zip(a_pts, b_pts, colours, strict=True):
            rgb = tuple(int(v) for v in colour)
            cv2.circle(canvas, tuple(a), radius, rgb, -1, cv2.LINE_AA)
            cv2.circle(canvas, tuple(b), radius, rgb, -1, cv2.LINE_AA)
    if legend:
        canvas = np.concatenate([canvas, legend_strip(canvas.shape[1])], axis=0)
    return Overlay(canvas, int(keep.size), int(conf.size))


#: The words under the colour key, at the confidences they stand for.
LEGEND_WORDS = ((0.0, "unsure"), (0.5, "fair"), (1.0, "confident"))


def legend_strip(width: int) -> np.ndarray:
    """A white band as wide as the overlay: the colour ramp with "unsure", "fair" and "confident" under it."""
    unit = max(14, min(width // 28, 30))  # readable when a phone shows a 720 px picture 360 px wide
    scale, weight = unit / 22, max(1, unit // 12)
    text_height = cv2.getTextSize("fair", cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][1]
    baseline = unit // 2 + unit + unit // 2 + text_height
    band = np.full((baseline + unit // 2 + weight, width, 3), 255, dtype=np.uint8)
    bar_width = min(width - 2 * unit, unit * 24)
    x0 = (width - bar_width) // 2
    band[unit // 2 : unit // 2 + unit, x0 : x0 + bar_width] = colour_legend(bar_width, unit)
    for at, word in LEGEND_WORDS:
        tw = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][0]
        x = int(np.clip(x0 + at * bar_width - tw / 2, 0, width - tw))
        cv2.putText(band, word, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (15, 23, 42), weight, cv2.LINE_AA)
    return band


def colour_legend(width: int = 320, height: int = 14) -> np.ndarray:
    """A horizontal strip from confidence 0 (left) to 1 (right), to show under an overlay."""
    colours = confidence_colours(np.linspace(0.0, 1.0, width))
    return np.repeat(colours[None, :, :], height, axis=0)


# --- confidence distributions ----------------------------------------------------------------------
