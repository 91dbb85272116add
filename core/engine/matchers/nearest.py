"""Mutual nearest neighbours with Lowe's ratio test: the matcher for SIFT, which has no LightGlue weights."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from core.engine.features import Features
from core.engine.matching import Matcher, MatchResult


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
