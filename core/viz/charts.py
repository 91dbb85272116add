"""Figures that explain a score: the confidence CDF against the null, the score in one sentence, and the
evaluation's ROC curve and histograms. Plotly objects, so the app, a notebook and the tests share them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from core.evaluation.metrics import roc_curve

#: Colours of the figures: the candidate stands out, the null stays grey, other candidates are muted.
CANDIDATE_COLOUR = "#0f766e"
NULL_COLOUR = "#6b7280"
OTHER_COLOURS = ("#f59e0b", "#8b5cf6", "#ef4444", "#3b82f6", "#ec4899", "#84cc16")


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
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "match confidence", "range": [0, 1]},
        yaxis={"title": "share of matches at or below", "range": [0, 1.02], "tickformat": ".0%"},
        # Above the plot: under it, a phone's wrapped legend ran into the axis title.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left"},
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


def plain_sentence(
    label: str,
    *,
    method: str,
    z: float,
    probability: float | None,
    matches: int,
    strong_matches: int,
    null_mean: float,
) -> str:
    """The same evidence as :func:`score_sentence`, for a volunteer: points and chance, no statistics."""
    compared = _plain_verdict(z)
    tail = f", so Scute gives it {_share(probability)}." if probability is not None else "."
    usual = "fewer than one" if null_mean < 0.95 else f"about {null_mean:.0f}"
    if method == "count":
        return (
            f"{label}: {_points(matches)} {'matches' if matches == 1 else 'match'}. Photos of two different "
            f"animals match {usual}: this is {compared}{tail}"
        )
    if method == "confident":
        return (
            f"{label}: {strong_matches} of the {_points(matches)} that match are strong matches. Photos of two "
            f"different animals have {usual}: this is {compared}{tail}"
        )
    verb = "matches" if matches == 1 else "match"
    return f"{label}: {_points(matches)} {verb}, {strong_matches} of them strongly: this is {compared}{tail}"


def _share(probability: float) -> str:
    """A probability as the candidate cards show it: never a flat "100%" or "0%" for an estimate."""
    if 0.99 < probability < 1 or probability >= 1:
        return ">99%"
    if 0 < probability < 0.01 or probability <= 0:
        return "<1%"
    return f"{probability:.0%}"


def _points(count: int) -> str:
    return f"{count} point" if count == 1 else f"{count} points"


def _plain_verdict(z: float) -> str:
    if z >= 6:
        return "far more than chance gives"
    if z >= 3:
        return "clearly more than chance gives"
    if z >= 1.5:
        return "a little more than chance gives"
    return "about what chance gives"


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
