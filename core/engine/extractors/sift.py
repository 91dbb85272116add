"""RootSIFT (OpenCV): the classical baseline, no weights needed."""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from core.engine.features import Extractor


class SiftExtractor(Extractor):
    """OpenCV SIFT with RootSIFT descriptors: the classical baseline, no weights needed."""

    name = "sift"
    matcher = "mnn"  # no LightGlue weights exist for SIFT here
    default_conf: ClassVar[dict[str, Any]] = {"max_side": 1024, "max_keypoints": 4096, "contrast_threshold": 0.02}

    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        sift = cv2.SIFT.create(
            nfeatures=int(self.conf["max_keypoints"]), contrastThreshold=float(self.conf["contrast_threshold"])
        )
        keypoints, desc = sift.detectAndCompute(gray, None)
        if desc is None or not keypoints:
            return np.zeros((0, 2)), np.zeros((0, 128)), np.zeros(0), {}
        # RootSIFT: L1-normalise then square-root, so Euclidean distance approximates the Hellinger kernel.
        desc = np.sqrt(desc / (np.abs(desc).sum(axis=1, keepdims=True) + 1e-7))
        kpts = np.array([k.pt for k in keypoints])
        scores = np.array([k.response for k in keypoints])
        extra = {
            "scales": np.array([k.size for k in keypoints], dtype=np.float32),
            "oris": np.deg2rad(np.array([k.angle for k in keypoints], dtype=np.float32)),
        }
        return kpts, desc, scores, extra
