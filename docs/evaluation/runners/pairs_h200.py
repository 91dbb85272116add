"""Device runner (not part of the app): every ordered pair of one catalogue matched once, so that search policies
(shortlist sizes, stopping rules, priors, the probability of a new individual) can be compared offline on the
same matches under identity folds, instead of one device run per variant.

For each query photo ``i`` (every turn of the preset) and gallery photo ``j`` it keeps LightGlue's number of
matches and of strong matches (confidence >= the matcher's strong threshold): the ``confident`` score is the
number of strong matches, so z-scores, priors and probabilities follow from these counts alone
(``docs/evaluation/runners/policy_offline.py``).

    python pairs_h200.py MANIFEST NAME cpu|gpu        # on the device; writes $OUT/NAME-cpu-pairs.npz
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())

PRESETS = {
    "cpu": ({"max_side": 1024, "max_keypoints": 1024}, (0,)),
    "gpu": ({"max_side": 1600, "max_keypoints": 2048}, None),
}


def main(manifest: Path, name: str, preset: str) -> None:
    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    out = Path(os.environ.get("OUT", "/tmp/out"))
    t0 = time.time()
    conf, turns = PRESETS[preset]
    engine = Engine("aliked", conf, device="cuda", cache_dir=Path("/tmp/cache"), turns=turns, prior=False)
    rows = read_manifest(manifest)
    photos = [manifest_photo(manifest.parent, r) for r in rows]
    gallery = [engine.photo_features(p) for p in photos]
    print(f"[{time.time() - t0:6.1f}s] {len(photos)} photos extracted", flush=True)
    n = len(photos)
    strong = np.zeros((n, n), dtype=np.int16)
    matches = np.zeros((n, n), dtype=np.int16)
    turn = np.zeros((n, n), dtype=np.int16)
    for i, photo in enumerate(photos):
        views = engine.photo_views(photo)
        for j, result in enumerate(engine.match_views(views, gallery)):
            strong[i, j] = np.count_nonzero(result.confidence >= engine.scoring.strong)
            matches[i, j] = result.n_matches
            turn[i, j] = result.turn
        if i % 50 == 0:
            print(f"[{time.time() - t0:6.1f}s] query {i + 1} of {n}", flush=True)
    np.savez_compressed(
        out / f"{name}-{preset}-pairs.npz",
        paths=np.array([r.path for r in rows]),
        identities=np.array([r.identity for r in rows]),
        sides=np.array([r.side for r in rows]),
        strong=strong,
        matches=matches,
        turn=turn,
        strong_threshold=np.array(engine.scoring.strong),
        signature=np.array(engine.signature),
        seconds=np.array(time.time() - t0),
    )
    print(f"[{time.time() - t0:6.1f}s] done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
