"""Device runner (not part of the app): every ordered pair of one catalogue matched once at the CPU preset, as
``exposure_pairs_h200.py``, keeping where in both photos each pair's strong matches lie: a histogram over how far
each match is from the centre of the query's and of the gallery photo's frame (``BINS`` rings of the box distance
max(|x/W - 1/2|, |y/H - 1/2|) * 2, 0 the centre, 1 the edge), of all strong matches and of those the shared-exposure
rule sets aside, so that weighting matches by where they lie can be chosen and measured offline
(``spatial_offline.py``) under identity folds.

    python spatial_pairs_h200.py WEIGHTS MANIFEST NAME [MANIFEST NAME ...]   # device; $OUT/NAME-spatial-pairs.npz
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())

BINS = 8


def rings(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each point's ring, 0 (centre) to BINS - 1 (edge)."""
    r = np.abs(points / np.asarray(size, dtype=np.float64) - 0.5).max(axis=1) * 2
    return np.clip((r * BINS).astype(int), 0, BINS - 1)


def main(manifest: Path, name: str, weights: Path) -> None:
    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.exposure import ExposureConf, shared_exposure
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    w.weights_dir = lambda override=None: Path(override) if override is not None else weights
    out = Path(os.environ.get("OUT", "/tmp/out"))
    t0 = time.time()
    engine = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cuda",
        cache_dir=Path("/tmp/cache"),
        turns=(0,),
        prior=False,
        exposure=None,
    )
    conf = ExposureConf()
    rows = read_manifest(manifest)
    photos = [manifest_photo(manifest.parent, r) for r in rows]
    gallery = [engine.photo_features(p) for p in photos]
    n = len(photos)
    strong = np.zeros((n, n, BINS, BINS), dtype=np.int16)
    shared = np.zeros((n, n, BINS, BINS), dtype=np.int16)
    for i, photo in enumerate(photos):
        views = engine.photo_views(photo)
        for j, result in enumerate(engine.match_views(views, gallery)):
            keep = result.confidence >= engine.scoring.strong
            if not keep.any():
                continue
            set_aside = shared_exposure(result.kpts0, result.kpts1, keep, conf, min(result.n0, result.n1) or None)
            r0, r1 = rings(result.kpts0, views[0].image_size), rings(result.kpts1, gallery[j].image_size)
            np.add.at(strong[i, j], (r0[keep], r1[keep]), 1)
            np.add.at(shared[i, j], (r0[set_aside], r1[set_aside]), 1)
        if i % 50 == 0:
            print(f"[{time.time() - t0:6.1f}s] {name}: query {i + 1} of {n}", flush=True)
    np.savez_compressed(
        out / f"{name}-spatial-pairs.npz",
        paths=np.array([r.path for r in rows]),
        strong=strong,
        shared=shared,
        bins=np.array(BINS),
        signature=np.array(engine.signature),
        seconds=np.array(time.time() - t0),
    )
    print(f"[{time.time() - t0:6.1f}s] {name}: done", flush=True)


if __name__ == "__main__":
    for m, nm in zip(sys.argv[2::2], sys.argv[3::2], strict=True):
        main(Path(m), nm, Path(sys.argv[1]))
