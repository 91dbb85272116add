"""Pictures that explain a match: keypoint overlays, confidence CDFs, ROC curves and score histograms.

*Why does Scute think this is T-0042?* The overlay draws the matched scute corners between the two
photos, coloured by LightGlue's confidence; the CDF shows the pair's confidence distribution standing
clear of the null distribution of non-matching pairs; one sentence says the same in words. The
evaluation page reuses the ROC and histogram figures. Images are numpy RGB arrays and figures are
plotly objects, so the app, a notebook and the tests all use the same code; nothing here imports
Streamlit.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageOps

from core.engine.matching import MatchResult

#: Colours of the figures: the candidate stands out, the null stays grey, other candidates are muted.
CANDIDATE_COLOUR = "#0f766e"
NULL_COLOUR = "#6b7280"
OTHER_COLOURS = ("#f59e0b", "#8b5cf6", "#ef4444", "#3b82f6", "#ec4899", "#84cc16")

# Low confidence red, middling amber, high green: the convention volunteers read without a legend.
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


def _as_rgb(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


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
    left = _fit_height(_as_rgb(query, "query"), height)
    right = _fit_height(_as_rgb(gallery, "gallery"), height)
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


def empirical_cdf(confidences: np.ndarray, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Share of matches with confidence at or below x, on a grid over [0, 1]; all zeros when empty."""
    grid = np.linspace(0.0, 1.0, 101) if grid is None else np.asarray(grid, dtype=np.float64)
    values = np.sort(np.asarray(confidences, dtype=np.float64).reshape(-1))
    if values.size == 0:
        return grid, np.zeros_like(grid)
    return grid, np.searchsorted(values, grid, side="right") / values.size


@dataclass(frozen=True)
class Curve:
    """One query/candidate pair's match confidences, labelled for the legend."""

    label: str
    confidences: np.ndarray


def cdf_figure(
    candidate: Curve,
    null: np.ndarray,
    others: Sequence[Curve] = (),
    *,
    threshold: float | None = None,
    height: int = 360,
) -> go.Figure:
    """CDFs of the candidate's match confidences, the null (non-matching pairs) and other candidates.

    A true match puts many matches at high confidence, so its curve stays low and rises late, well to
    the right of the grey null; a wrong candidate's curve hugs the null.
    """
    fig = go.Figure()
    grid = np.linspace(0.0, 1.0, 201)
    _, y = empirical_cdf(null, grid)
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=y,
            name=f"non-matching pairs (null, {len(null):,} matches)",
            line={"color": NULL_COLOUR, "width": 3, "dash": "dash"},
            hovertemplate="confidence ≤ %{x:.2f}: %{y:.0%}<extra>null</extra>",
        )
    )
    for i, other in enumerate(others):
        _, y = empirical_cdf(other.confidences, grid)
        fig.add_trace(
            go.Scatter(
                x=grid,
                y=y,
                name=f"{_escape(other.label)} ({len(other.confidences)} matches)",
                line={"color": OTHER_COLOURS[i % len(OTHER_COLOURS)], "width": 1.5},
                opacity=0.8,
                hovertemplate="confidence ≤ %{x:.2f}: %{y:.0%}<extra>" + _escape(other.label) + "</extra>",
            )
        )
    _, y = empirical_cdf(candidate.confidences, grid)
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=y,
            name=f"{_escape(candidate.label)} ({len(candidate.confidences)} matches)",
            line={"color": CANDIDATE_COLOUR, "width": 4},
            hovertemplate="confidence ≤ %{x:.2f}: %{y:.0%}<extra>" + _escape(candidate.label) + "</extra>",
        )
    )
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": "#111827", "width": 1, "dash": "dot"})
        fig.add_annotation(
            x=threshold, y=0.04, yref="paper", text=f"strong ≥ {threshold:.2f}", showarrow=False, xanchor="right"
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "match confidence", "range": [0, 1]},
        yaxis={"title": "share of matches at or below", "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        template="plotly_white",
    )
    return fig


def _escape(label: str) -> str:
    """Plotly renders a little HTML in names and hover texts: names typed by users must stay text."""
    return label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def score_sentence(
    label: str,
    *,
    method: str,
    z: float,
    probability: float | None,
    matches: int,
    strong_matches: int,
    null_mean: float,
    threshold: float,
) -> str:
    """One sentence that says why the candidate scored as it did, in the units of the scoring method."""
    verdict = _verdict(z)
    tail = f"{_sd(z)} what photos of other individuals get" + (
        f", so Scute gives {probability:.0%}." if probability is not None else "."
    )
    if method == "confident":
        return (
            f"{label}: {strong_matches} of {matches} matches are at least {threshold:.0%} confident, against "
            f"about {null_mean:.1f} for a non-matching pair — {verdict}, {tail}"
        )
    if method == "count":
        return f"{label}: {matches} matches, against about {null_mean:.0f} for a non-matching pair — {verdict}, {tail}"
    if method == "wasserstein":
        return (
            f"{label}: the {matches} match confidences stand well above the null curve ({strong_matches} strong) "
            f"— {verdict}, {tail}"
            if z >= 2
            else f"{label}: the {matches} match confidences stay close to the null curve — {verdict}, {tail}"
        )
    return f"{label}: {matches} matches ({strong_matches} strong) — {verdict}, {tail}"


def _sd(z: float) -> str:
    size = "more than 20" if abs(z) > 20 else f"{abs(z):.1f}"  # beyond that the number means nothing more
    return f"{size} standard deviations {'above' if z >= 0 else 'below'}"


def _verdict(z: float) -> str:
    if z >= 6:
        return "far beyond chance"
    if z >= 3:
        return "clearly above chance"
    if z >= 1.5:
        return "somewhat above chance"
    return "no better than chance"


# --- evaluation figures ----------------------------------------------------------------------------


def roc_curve(positives: Sequence[float], negatives: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over every threshold, and the area under the curve (ties count half).

    Positives should score higher. Returns ``(fpr, tpr, auc)``; the AUC is nan without both classes.
    """
    pos = np.asarray(positives, dtype=np.float64).reshape(-1)
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = np.concatenate([[0.0], [(pos >= t).mean() for t in thresholds]])
    fpr = np.concatenate([[0.0], [(neg >= t).mean() for t in thresholds]])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids; np.trapezoid needs numpy 2
    return fpr, tpr, auc


def roc_figure(
    positives: Sequence[float],
    negatives: Sequence[float],
    *,
    positive_label: str = "known individuals",
    negative_label: str = "new individuals",
    height: int = 360,
) -> go.Figure:
    """ROC curve of telling ``positives`` from ``negatives`` by score, with the AUROC in the title."""
    fpr, tpr, auc = roc_curve(positives, negatives)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], name="chance", line={"color": NULL_COLOUR, "dash": "dash"}, hoverinfo="skip")
    )
    fig.add_trace(
        go.Scatter(
            x=fpr,
            y=tpr,
            name=f"Scute (AUROC {auc:.3f})",
            line={"color": CANDIDATE_COLOUR, "width": 3, "shape": "hv"},
            hovertemplate="false alarms %{x:.0%}<br>found %{y:.0%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        title=f"Known vs new individual · AUROC {auc:.3f}",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": f"{negative_label} wrongly taken as known", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": f"{positive_label} recognised", "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 0.02, "x": 0.35},
        template="plotly_white",
    )
    return fig


def histogram_figure(
    groups: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    x_title: str = "score",
    y_title: str = "share of pairs",
    bins: int = 30,
    height: int = 320,
) -> go.Figure:
    """Overlaid histograms (as shares of each group) on shared bins, e.g. same vs different individual pairs."""
    arrays = {name: np.asarray(values, dtype=np.float64).reshape(-1) for name, values in groups.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] or [np.zeros(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    palette = (CANDIDATE_COLOUR, "#ef4444", *OTHER_COLOURS)
    fig = go.Figure()
    for i, (name, values) in enumerate(arrays.items()):
        values = values[np.isfinite(values)]
        counts, _ = np.histogram(values, bins=edges)
        share = counts / max(1, values.size)
        fig.add_trace(
            go.Bar(
                x=centres,
                y=share,
                width=(edges[1] - edges[0]),
                name=f"{_escape(name)} ({values.size})",
                marker={"color": palette[i % len(palette)]},
                opacity=0.6,
                hovertemplate="%{x:.2f}: %{y:.0%}<extra>" + _escape(name) + "</extra>",
            )
        )
    fig.update_layout(
        barmode="overlay",
        height=height,
        title=title,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis={"title": x_title},  # the legend sits under the axis title, clear of the plot's title
        yaxis={"title": y_title, "tickformat": ".0%"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.28, "x": 0},
        template="plotly_white",
    )
    return fig


# --- small images ----------------------------------------------------------------------------------


def thumbnail(path: Path, max_side: int = 320) -> np.ndarray:
    """A small RGB copy of a stored photo, upright, decoded at reduced size where JPEG allows it.

    Only for photos already in the store (they were checked by ``core.engine.images`` when they arrived).
    """
    with Image.open(path) as im:
        im.draft("RGB", (max_side, max_side))  # JPEG decodes at 1/2, 1/4, 1/8 scale: far quicker
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(im)


def crop_preview(pixels: np.ndarray, crop: tuple[float, float, float, float] | None) -> np.ndarray:
    """The photo with everything outside the crop dimmed and the crop's border drawn."""
    image = _as_rgb(pixels, "pixels").copy()
    if crop is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h))
    dimmed = (image * 0.35).astype(np.uint8)
    dimmed[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    thickness = max(2, max(h, w) // 300)
    cv2.rectangle(dimmed, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (250, 204, 21), thickness, cv2.LINE_AA)
    return dimmed


def cover(image: np.ndarray, aspect: float = 4 / 3) -> np.ndarray:
    """The largest centred part of ``image`` with width / height = ``aspect``, so cards line up."""
    image = _as_rgb(image, "image")
    h, w = image.shape[:2]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        x0 = (w - new_w) // 2
        return np.ascontiguousarray(image[:, x0 : x0 + new_w])
    new_h = max(1, round(w / aspect))
    y0 = (h - new_h) // 2
    return np.ascontiguousarray(image[y0 : y0 + new_h])


def placeholder(width: int = 320, height: int = 240, text: str = "?") -> np.ndarray:
    """A quiet tile with a big character, standing in for a photo (the "new individual" card)."""
    tile = np.empty((height, width, 3), dtype=np.uint8)
    tile[:] = (238, 246, 245)
    scale = height / (45 * max(1, len(text)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, max(1, round(scale * 2)))
    origin = ((width - tw) // 2, (height + th) // 2 - height // 24)  # optically centred
    cv2.putText(
        tile, text, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (15, 118, 110), max(1, round(scale * 2)), cv2.LINE_AA
    )
    return tile


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an RGB array as PNG (for downloads and for tests that compare images)."""
    buffer = io.BytesIO()
    Image.fromarray(_as_rgb(image, "image")).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
