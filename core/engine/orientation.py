"""Try a query in each quarter-turn: photos taken upside down or sideways match nothing as they are.

ALIKED descriptors and LightGlue are not rotation invariant, and a snorkeller photographing a turtle from
below often holds the camera upside down (no EXIF orientation records that). On the turtle photos, 3 of
the 16 wrongly ranked known queries were upside down and matched their own individual only after half a
turn. So the engine extracts the query in each of ``turns`` (clockwise degrees added to the photo's own
rotation) and keeps, per gallery photo, the turn with most strong matches. The null pairs of the gallery
are matched the same way, so scores stay comparable: the null then knows that four tries give chance
four times the opportunity.

Matches are reported in the frame of the photo as given, so overlays draw on the photo the user sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from core.engine.features import Features
from core.engine.matching import MatchResult
from core.errors import ScuteError

UPRIGHT: tuple[int, ...] = (0,)
QUARTER_TURNS: tuple[int, ...] = (0, 90, 180, 270)


def parse_turns(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"all"``, ``"none"`` or degrees such as ``"0,180"``; None stays None (the device decides)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text == "all":
            return QUARTER_TURNS
        if text == "none":
            return UPRIGHT
        try:
            degrees = [int(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise ScuteError(f"Turns must be 'all', 'none' or degrees such as '0,180', not {value!r}.") from None
    else:
        degrees = [int(d) for d in value]
    turns = sorted({d % 360 for d in degrees} | {0})
    if any(d % 90 for d in turns):
        raise ScuteError(f"Turns must be multiples of 90 degrees, not {value!r}.")
    return tuple(turns)


def default_turns(device: torch.device | str) -> tuple[int, ...]:
    """All four on a GPU, where matching four times costs milliseconds; upright only on a CPU.

    On a CPU each extra turn adds a LightGlue pass per compared photo (about 0.7 s each on two cores), so
    there the volunteer's rotation control on the Identify page does the turning. The ``turns`` setting
    (``SCUTE_TURNS``, ``--turns``) overrides either choice.
    """
    return QUARTER_TURNS if torch.device(device).type == "cuda" else UPRIGHT


def as_views(query: Features | Sequence[Features]) -> list[Features]:
    """A query as the list of its views: one Features is the photo as given, upright only."""
    return [query] if isinstance(query, Features) else list(query)


def to_given_frame(points: np.ndarray, turn: int, turned_size: tuple[int, int]) -> np.ndarray:
    """Points of the image turned ``turn`` degrees clockwise (size ``(W, H)``) in the un-turned frame."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    width, height = turned_size
    turn %= 360
    if turn == 0:
        return points.copy()
    if turn == 90:
        return np.stack([y, width - x], axis=1)
    if turn == 180:
        return np.stack([width - x, height - y], axis=1)
    if turn == 270:
        return np.stack([height - y, x], axis=1)
    raise ValueError(f"turn must be a multiple of 90 degrees, got {turn}")


def strongest(confidences: Sequence[np.ndarray], threshold: float) -> int:
    """Index of the try with most strong matches, then the highest total confidence, then the first."""
    best, best_strength = 0, (-1, -1.0)
    for i, conf in enumerate(confidences):
        strength = (int(np.count_nonzero(conf >= threshold)), float(np.sum(conf)))
        if strength > best_strength:
            best, best_strength = i, strength
    return best


def best_turn(
    tries: Sequence[MatchResult], turns: Sequence[int], sizes: Sequence[tuple[int, int]], threshold: float
) -> MatchResult:
    """The try with most strong matches (then the highest total confidence, then the smallest turn).

    Its query keypoints are moved into the un-turned frame and ``turn`` records how the query was turned.
    """
    if not tries or len(tries) != len(turns) or len(turns) != len(sizes):
        raise ValueError("one match result, turn and turned size per try")
    best = strongest([t.confidence for t in tries], threshold)
    chosen = tries[best]
    if turns[best] % 360 == 0:
        return chosen
    return dataclasses.replace(
        chosen, kpts0=to_given_frame(chosen.kpts0, turns[best], sizes[best]), turn=turns[best] % 360
    )
