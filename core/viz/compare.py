"""The compare view: the query and one candidate side by side at full resolution, zoomed and panned together.

Checking a match means looking at the same few scales on both photos at full size (Wildbook #1737, #1747).
Both photos are placed in one coordinate frame: the candidate is scaled and shifted so that its matched points
land where the query's are (a median similarity without rotation, robust to a few wrong matches), or simply
scaled to the query's height when there are too few matches. The two subplots' axes are linked (``matches``),
so zooming or panning one shows the same area of the other. The matched points carry the same number on both
photos, coloured by confidence; file name, date and site are written above each photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import plotly.graph_objects as go

from core.viz.overlay import confidence_colours
from core.viz.pictures import as_rgb, data_uri

FULL_SIDE = 2400  # the longest side a photo is shown at: full resolution for any phone photo's head crop
MIN_ALIGN_MATCHES = 3


@dataclass(frozen=True)
class ComparePhoto:
    """One side of the comparison: the picture, its matched points in its own pixels, and what it is."""

    image: np.ndarray  # (H, W, 3) uint8 RGB at display resolution (at most FULL_SIDE)
    points: np.ndarray  # (M, 2) x, y of the matched keypoints in ``image``'s pixels, in match order
    label: str  # "file name · date · site"


def scaled_points(points: np.ndarray, working_size: tuple[int, int], shown: np.ndarray) -> np.ndarray:
    """Keypoints found in the working image of ``working_size`` (W, H), in the pixels of the ``shown`` picture."""
    height, width = shown.shape[:2]
    factor = np.array([width / max(1, working_size[0]), height / max(1, working_size[1])], dtype=np.float64)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * factor


def placement(
    query: np.ndarray, candidate: np.ndarray, query_height: int, candidate_height: int
) -> tuple[float, float, float]:
    """Scale and shift ``(s, tx, ty)`` putting candidate pixels into the query's frame: matched points coincide.

    The scale is the median ratio of distances between pairs of matches, the shift the median residual; with
    fewer than :data:`MIN_ALIGN_MATCHES` matches, or a degenerate scale, the candidate gets the query's height.
    """
    fallback = (query_height / max(1, candidate_height), 0.0, 0.0)
    if len(query) < MIN_ALIGN_MATCHES:
        return fallback
    ratios = []
    for i, j in combinations(range(len(query)), 2):
        far = float(np.linalg.norm(candidate[i] - candidate[j]))
        if far > 1e-6:
            ratios.append(float(np.linalg.norm(query[i] - query[j])) / far)
    if not ratios:
        return fallback
    scale = float(np.median(ratios))
    if not np.isfinite(scale) or not 0.05 < scale / fallback[0] < 20:
        return fallback
    shift = np.median(query - scale * candidate, axis=0)
    return scale, float(shift[0]), float(shift[1])


def _plain(text: str) -> str:
    """A label as plain text: plotly reads tags in titles (links, line breaks), and file names are typed by users."""
    return text.replace("<", "‹").replace(">", "›")


def _height(width: float, height: float, panel: int = 560) -> int:
    """A figure height that fits two panels of about ``panel`` px without bands above and below the photos."""
    return int(min(900, max(320, panel * height / max(width, 1.0) + 40)))


def _strongest(confidence: np.ndarray, count: int, limit: int) -> np.ndarray:
    order = np.argsort(-np.asarray(confidence, dtype=np.float64).reshape(-1)[:count], kind="stable")
    return order[:limit]


def compare_figure(
    query: ComparePhoto,
    candidate: ComparePhoto,
    confidence: np.ndarray,
    *,
    max_matches: int = 40,
    height: int | None = None,
) -> go.Figure:
    """Two image subplots with linked axes; the ``max_matches`` most confident matches numbered on both."""
    qh, qw = query.image.shape[:2]
    ch, cw = candidate.image.shape[:2]
    count = min(len(query.points), len(candidate.points), len(np.asarray(confidence).reshape(-1)))
    keep = _strongest(confidence, count, max_matches)
    q_points = np.asarray(query.points, dtype=np.float64).reshape(-1, 2)[keep]
    c_points = np.asarray(candidate.points, dtype=np.float64).reshape(-1, 2)[keep]
    scale, tx, ty = placement(q_points, c_points, qh, ch)
    c_shown = c_points * scale + np.array([tx, ty])
    x_lo, x_hi = min(0.0, tx), max(float(qw), tx + cw * scale)
    y_lo, y_hi = min(0.0, ty), max(float(qh), ty + ch * scale)

    figure = go.Figure()
    titles = (_plain(query.label), _plain(candidate.label))
    figure.set_subplots(rows=1, cols=2, horizontal_spacing=0.02, subplot_titles=titles)
    figure.add_layout_image(
        source=data_uri(as_rgb(query.image, "query"), quality=88),
        xref="x", yref="y", x=0, y=0, sizex=qw, sizey=qh,
        xanchor="left", yanchor="top", sizing="stretch", layer="below",
    )  # fmt: skip
    figure.add_layout_image(
        source=data_uri(as_rgb(candidate.image, "candidate"), quality=88),
        xref="x2", yref="y2", x=tx, y=ty, sizex=cw * scale, sizey=ch * scale,
        xanchor="left", yanchor="top", sizing="stretch", layer="below",
    )  # fmt: skip
    colours = [f"rgb({r},{g},{b})" for r, g, b in confidence_colours(np.asarray(confidence).reshape(-1)[keep])]
    numbers = [str(i + 1) for i in range(len(keep))]
    hover = [
        f"match {i + 1}: confidence {float(np.asarray(confidence).reshape(-1)[k]):.2f}" for i, k in enumerate(keep)
    ]
    for col, points, name in ((1, q_points, "query matches"), (2, c_shown, "candidate matches")):
        figure.add_trace(
            go.Scatter(
                x=points[:, 0], y=points[:, 1], mode="markers+text", name=name, text=numbers,
                textposition="top center", textfont={"color": "white", "size": 11}, hovertext=hover,
                hoverinfo="text", marker={"size": 9, "color": colours, "line": {"color": "white", "width": 1.5}},
                showlegend=False,
            ),
            row=1, col=col,
        )  # fmt: skip
    figure.update_xaxes(range=[x_lo, x_hi], showgrid=False, zeroline=False, showticklabels=False, constrain="domain")
    figure.update_yaxes(range=[y_hi, y_lo], showgrid=False, zeroline=False, showticklabels=False, constrain="domain")
    figure.update_layout(
        yaxis={"scaleanchor": "x"},  # square pixels; the second subplot follows through ``matches``
        xaxis2={"matches": "x"},
        yaxis2={"matches": "y"},
        height=height or _height(x_hi - x_lo, y_hi - y_lo),
        margin={"l": 0, "r": 0, "t": 36, "b": 0},
        dragmode="zoom",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    return figure
