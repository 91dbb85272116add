"""Matches near a frame's edge are set aside before a pair is scored.

A photo sent to identification is framed on one animal (a volunteer's crop, a catalogue's box, the zoomed
region). Its edges hold what the animal stands among: the herd's other animals, the rocks and water of a drinking
place. Those match between different individuals about as well as between two photos of one, so counting them
makes strangers look alike. Chosen under identity folds on both shared sets (README, "Unseen animals").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.engine.features import Features
from core.engine.matching import MatchResult


@dataclass(frozen=True)
class FrameConf:
    """Which matches count: those within ``inner`` of both frames' centres (the query's alone without ``gallery``),
    in box distance (0 the centre, 1 the edge: max(|x/W - 1/2|, |y/H - 1/2|) * 2); 0.75 sets each side's outer eighth
    aside."""

    inner: float = 0.75
    #: The gallery photo's edges too. False: only the query's, whose frame a volunteer or the zoom chose, as an
    #: uncropped gallery photo may show its animal anywhere, edges included.
    gallery: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.inner <= 1.0:
            raise ValueError(f"the inner box distance must lie in (0, 1], not {self.inner}")

    @property
    def tag(self) -> str:
        """For cache keys and prior signatures: results under another frame rule are not interchangeable."""
        return f"frame-{self.inner:g}" + ("" if self.gallery else "-query")

    @classmethod
    def from_tag(cls, tag: str) -> FrameConf:
        """The rule a :attr:`tag` names (its ``frame-`` prefix optional): ``frame-0.75``, ``0.75-query``."""
        inner, _, sides = tag.removeprefix("frame-").partition("-")
        if sides not in ("", "query"):
            raise ValueError(f"not a frame rule: {tag!r}")
        return cls(float(inner), gallery=sides != "query")


CENTRED = FrameConf()


def preset_frame(extractor: str) -> FrameConf | None:
    """The rule where it was chosen and its priors fitted: ALIKED, on a CPU (its rounds replayed under identity
    folds) and on a GPU (four nyala folds and a turtle fold at the GPU defaults, README "Unseen animals").
    Elsewhere every match counts: no other extractor was measured with the rule."""
    return CENTRED if extractor == "aliked" else None


def box_distance(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """How far each (x, y) point lies from the centre of a W x H frame: 0 at the centre, 1 on its edge."""
    if len(points) == 0:
        return np.zeros(0)
    half = np.asarray(size, dtype=np.float64) / 2
    return np.abs((np.asarray(points, dtype=np.float64) - half) / half).max(axis=1)


def central(features: Features, conf: FrameConf) -> np.ndarray:
    """Which of a photo's keypoints lie within ``conf.inner`` of its centre."""
    return box_distance(features.keypoints, features.image_size) < conf.inner


def inside(
    kpts0: np.ndarray, size0: tuple[int, int], kpts1: np.ndarray, size1: tuple[int, int], conf: FrameConf
) -> np.ndarray:
    """Which matches lie within ``conf.inner`` of the centre in both frames (in the query's, ``kpts0``, alone where
    ``conf.gallery`` is off)."""
    keep = box_distance(kpts0, size0) < conf.inner
    return keep & (box_distance(kpts1, size1) < conf.inner) if conf.gallery else keep


def keep_inside(result: MatchResult, size0: tuple[int, int], size1: tuple[int, int], conf: FrameConf) -> MatchResult:
    """``result`` without its matches near either frame's edge, their number in ``outside_frame``; ``size0`` is the
    frame of ``result.kpts0`` (the query as given, whatever turn matched it)."""
    keep = inside(result.kpts0, size0, result.kpts1, size1, conf)
    if keep.all():
        return result
    return result.only(keep, outside_frame=result.outside_frame + int((~keep).sum()), unframed=result)
