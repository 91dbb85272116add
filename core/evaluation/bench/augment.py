"""Galleries of any size grown from real photos with identity-keeping augmentations, cached on disk."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from core.engine.index import GalleryPhoto
from core.evaluation.bench.conf import BenchConf
from core.io import atomic_write, sha256_hex
from core.progress import StageProgress

#: Bump when the augmentation recipe changes, so cached copies made by the old one are not reused.
AUGMENT_VERSION = 1


def augment(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One identity-preserving variant of a photo and the JPEG quality to save it with.

    Geometry stays small (±12°, ±10 % scale, ±5 % shift, crops keeping ≥ 85 % of each side), as between
    two photos of one encounter; photometry covers lighting, white balance, focus and sensor noise.
    """
    h, w = rgb.shape[:2]
    angle = rng.uniform(-12.0, 12.0)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.05, 0.05, 2) * (w, h)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    cw, ch = int(w * rng.uniform(0.85, 1.0)), int(h * rng.uniform(0.85, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = out[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25.0, 25.0)
    gains = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    mean = out.mean()
    out = ((out - mean) * contrast + mean + brightness) * gains
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.4:
        out = out + rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), int(rng.integers(80, 96))


def _augment_job(job: tuple[str, str, list[tuple[str, int]], int, int]) -> list[tuple[str, str]]:
    """Write the missing augmented copies of one source photo (in a worker process), decoding it once.

    Returns each copy's path and content hash.
    """
    from core.engine.images import prepare

    source, sha, copies, seed, max_side = job
    cv2.setNumThreads(1)  # one process per core already
    rgb: np.ndarray | None = None
    out: list[tuple[str, str]] = []
    for dest, copy in copies:
        path = Path(dest)
        if not path.exists():
            if rgb is None:
                rgb = prepare(Path(source), max_side=max_side)
            # The copy depends on the source's content, the copy number and the seed, not on run order.
            rng = np.random.default_rng([seed, copy, int(sha[:15], 16)])
            pixels, quality = augment(rgb, rng)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"could not encode {dest}")
            atomic_write(path, buf.tobytes())
        out.append((dest, sha256_hex(path.read_bytes())))
    return out


def _path_order(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()


def grow_gallery(
    base: Sequence[GalleryPhoto],
    size: int,
    conf: BenchConf,
    progress: StageProgress | None = None,
) -> list[GalleryPhoto]:
    """``size`` photos: the real ones first (in a fixed pseudo-random order), then augmented copies.

    Copy ``k`` of every real photo comes before copy ``k + 1`` of any, so smaller galleries are subsets
    of larger ones and every individual grows in proportion.
    """
    base = sorted(base, key=lambda p: _path_order(p.path.name))
    if size <= len(base):
        return list(base[:size])
    folder = conf.cache_dir / "augmented" / f"v{AUGMENT_VERSION}-seed{conf.seed}-{conf.max_side}px"
    order: list[tuple[str, str]] = []  # (dest, identity) in gallery order
    by_source: dict[int, list[tuple[str, int]]] = {}
    for n in range(size - len(base)):
        copy, k = 1 + n // len(base), n % len(base)
        photo = base[k]
        dest = str(folder / photo.identity / f"{photo.path.stem}-{photo.sha256[:8]}-{copy:04d}.jpg")
        order.append((dest, photo.identity))
        by_source.setdefault(k, []).append((dest, copy))
    jobs = [(str(base[k].path), base[k].sha256, copies, conf.seed, conf.max_side) for k, copies in by_source.items()]
    workers = min(conf.workers or os.cpu_count() or 1, len(jobs))
    done: dict[str, str] = {}
    # Clean workers, never forked ones: a fork of a process that has run torch (its OpenMP pool, or a CUDA
    # context) can hang in the child before it does any work.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context) if workers > 1 else None
    try:
        results = pool.map(_augment_job, jobs) if pool else map(_augment_job, jobs)
        for result in results:
            done.update(result)
            if progress:
                progress("augmenting", len(done), len(order))
    finally:
        if pool:
            pool.shutdown()
    return list(base) + [GalleryPhoto(done[dest], identity, Path(dest)) for dest, identity in order]
