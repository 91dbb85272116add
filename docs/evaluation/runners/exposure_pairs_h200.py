"""Device runner (not part of the app): every ordered pair of one catalogue matched once at the CPU preset, as
``pairs_h200.py``, keeping beside each pair's strong matches the largest set of them that one similarity maps
within 1 and within 2 pixels (``core.engine.exposure.similarity_inliers``), so that the shared-exposure rule can be
chosen and measured offline (``exposure_offline.py``) under identity folds.

    python exposure_pairs_h200.py MANIFEST NAME      # on the device; writes $OUT/NAME-exposure-pairs.npz
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())

TOLERANCES = (1.0, 2.0)


def main(manifest: Path, name: str) -> None:
    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.exposure import ExposureConf, similarity_inliers
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    out = Path(os.environ.get("OUT", "/tmp/out"))
    t0 = time.time()
    engine = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cuda",
        cache_dir=Path("/tmp/cache"),
        turns=(0,),
        prior=False,
    )
    rows = read_manifest(manifest)
    photos = [manifest_photo(manifest.parent, r) for r in rows]
    gallery = [engine.photo_features(p) for p in photos]
    n = len(photos)
    strong = np.zeros((n, n), dtype=np.int16)
    exact = np.zeros((len(TOLERANCES), n, n), dtype=np.int16)
    trials = ExposureConf().trials
    for i, photo in enumerate(photos):
        for j, result in enumerate(engine.match_views(engine.photo_views(photo), gallery)):
            keep = result.confidence >= engine.scoring.strong
            strong[i, j] = int(keep.sum())
            if keep.sum() >= 2:
                for t, tol in enumerate(TOLERANCES):
                    exact[t, i, j] = int(similarity_inliers(result.kpts0[keep], result.kpts1[keep], tol, trials).sum())
        if i % 50 == 0:
            print(f"[{time.time() - t0:6.1f}s] query {i + 1} of {n}", flush=True)
    np.savez_compressed(
        out / f"{name}-exposure-pairs.npz",
        paths=np.array([r.path for r in rows]),
        strong=strong,
        exact=exact,
        tolerances=np.array(TOLERANCES),
        signature=np.array(engine.signature),
        seconds=np.array(time.time() - t0),
    )
    print(f"[{time.time() - t0:6.1f}s] done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
