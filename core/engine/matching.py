"""The matcher contract (:class:`Matcher`), its result (:class:`MatchResult`) and geometric verification.

The matchers themselves live in :mod:`core.engine.matchers` (LightGlue for learned features, mutual
nearest neighbours for SIFT).

A :class:`MatchResult` keeps every matched keypoint pair with one confidence each, because the
scoring compares whole confidence distributions rather than counting matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from core.engine.device import pick_device
from core.engine.features import Features

log = logging.getLogger(__name__)


@dataclass
class MatchResult:
    """Matches from a query (0) to a gallery photo (1), in each image's working-size pixel frame."""

    idx0: np.ndarray  # (M,) int64 indices into the query's keypoints
    idx1: np.ndarray  # (M,) int64 indices into the gallery photo's keypoints
    confidence: np.ndarray  # (M,) float32 in [0, 1]
    kpts0: np.ndarray  # (M, 2) float32
    kpts1: np.ndarray  # (M, 2) float32
    n0: int  # keypoints in the query
    n1: int  # keypoints in the gallery photo
    inliers: np.ndarray | None = None  # (M,) bool after geometric verification
    turn: int = 0  # clockwise degrees the query was turned to find these (core.engine.orientation); kpts0 are un-turned
    shared_exposure: int = 0  # strong matches set aside as a shared exposure (core.engine.exposure)
    outside_frame: int = 0  # matches set aside near either frame's edge (core.engine.framing)
    #: Every match before the frame rule set some aside: the animal is located from all of them (core.engine.localise).
    unframed: MatchResult | None = None

    @property
    def n_matches(self) -> int:
        return int(self.idx0.shape[0])

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum()) if self.inliers is not None else self.n_matches

    @classmethod
    def from_indices(
        cls, f0: Features, f1: Features, idx0: np.ndarray, idx1: np.ndarray, confidence: np.ndarray
    ) -> MatchResult:
        idx0 = np.asarray(idx0, dtype=np.int64)
        idx1 = np.asarray(idx1, dtype=np.int64)
        order = np.argsort(-np.asarray(confidence), kind="stable")
        idx0, idx1 = idx0[order], idx1[order]
        return cls(
            idx0,
            idx1,
            np.clip(np.asarray(confidence, dtype=np.float32)[order], 0.0, 1.0),
            f0.keypoints[idx0],
            f1.keypoints[idx1],
            len(f0),
            len(f1),
        )

    def only(self, keep: np.ndarray, **why: Any) -> MatchResult:
        """The matches ``keep`` marks, with ``why`` (fields of this class) recording why the others were set aside."""
        return dataclasses.replace(
            self,
            idx0=self.idx0[keep],
            idx1=self.idx1[keep],
            confidence=self.confidence[keep],
            kpts0=self.kpts0[keep],
            kpts1=self.kpts1[keep],
            inliers=None if self.inliers is None else self.inliers[keep],
            **why,
        )


class Matcher:
    """Base: ``match`` one pair, ``match_many`` one query against many gallery photos."""

    name: ClassVar[str]
    #: Confidence from which one match is strong evidence on its own (the ``confident`` score's threshold).
    strong_confidence: ClassVar[float] = 0.8
    default_conf: ClassVar[dict[str, Any]] = {}

    weights: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"unknown {self.name} settings: {sorted(unknown)}")
        self.conf = {**self.default_conf, **(conf or {})}
        self.device = device if isinstance(device, torch.device) else pick_device(device)

    @property
    def version(self) -> str:
        """Changes whenever the settings or the weights change, so cached matches are never reused across them."""
        blob = json.dumps({"name": self.name, "conf": self.conf, "weights": self.weights}, sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"

    @property
    def batch_size(self) -> int:
        """Pairs worth handing over at once; progress is reported after each batch."""
        return 64

    def match(self, f0: Features, f1: Features) -> MatchResult:
        return self.match_many(f0, [f1])[0]

    def match_many(self, query: Features, gallery: Sequence[Features]) -> list[MatchResult]:
        return [self.match(query, g) for g in gallery]


def verify_geometry(result: MatchResult, method: str = "fundamental", threshold: float = 4.0) -> MatchResult:
    """Mark matches consistent with one epipolar geometry (MAGSAC++); too few matches means no inliers."""
    if method not in ("fundamental", "homography"):
        raise ValueError(f"unknown geometric model {method!r}")
    min_matches = 8 if method == "fundamental" else 4
    inliers = np.zeros(result.n_matches, dtype=bool)
    p0, p1 = result.kpts0.astype(np.float64), result.kpts1.astype(np.float64)
    # Points that all lie on one line (or on one spot) in either photo fit infinitely many geometries:
    # MAGSAC then reports every match as an inlier, which is no evidence at all.
    if result.n_matches >= min_matches and not (_on_a_line(p0, threshold) or _on_a_line(p1, threshold)):
        try:
            if method == "fundamental":
                _, mask = cv2.findFundamentalMat(p0, p1, cv2.USAC_MAGSAC, threshold, 0.999, 10_000)
            else:
                _, mask = cv2.findHomography(p0, p1, cv2.USAC_MAGSAC, threshold, maxIters=10_000, confidence=0.999)
        except cv2.error:  # degenerate configurations (all points on a line, duplicates) have no model
            mask = None
        if mask is not None and mask.shape[0] == result.n_matches:
            inliers = mask.ravel().astype(bool)
    result.inliers = inliers
    return result


def _on_a_line(points: np.ndarray, tolerance: float) -> bool:
    """Whether the points lie within ``tolerance`` pixels (RMS) of one straight line (or one point)."""
    centred = points - points.mean(axis=0)
    spread = np.linalg.svd(centred, compute_uv=False)  # RMS extent along and across the principal axis
    return bool(spread[-1] / np.sqrt(len(points)) < tolerance)
