"""Runner (not part of the app, CPU): for every ordered pair that the 2 px / half rule flags on the device's matches
(``exposure_pairs_h200.py``), match it again here (LightGlue at full depth, as on the device) and record its strong
matches and the largest exact set within 2 px, unconstrained and turned at most 3 degrees from a quarter turn
(``core.engine.exposure.ExposureConf.max_rotation``). ``exposure_offline.py`` replays the rule with the constraint
from these: the constrained set is never larger, so pairs the rule did not flag stay unflagged.

    python exposure_quarter_cpu.py SET > ../pairs/SET-exposure-quarter.json     # nyala: 279 pairs, turtles: 110
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exposure_offline
import policy_offline

from core.engine.exposure import ExposureConf, similarity_inliers


def main(name: str) -> None:
    from core.catalogue.manifest import read_manifest
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    conf = ExposureConf()
    manifest = Path(policy_offline.SETS[name])
    rows = read_manifest(manifest)
    _, _, flagged = exposure_offline.shared_pairs(name, (1, conf.min_fraction, False))  # within 2 px, no limit
    engine = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        {"depth_confidence": -1.0},
        device="cpu",
        cache_dir=policy_offline.WORK / "cache",
        turns=(0,),
        prior=False,
    )
    features: dict[int, object] = {}

    def of(i: int):
        if i not in features:
            features[i] = engine.photo_features(manifest_photo(manifest.parent, rows[i]))
        return features[i]

    out = []
    for a, b in zip(*np.where(flagged), strict=True):
        result = engine.matcher.match(of(a), of(b))
        keep = result.confidence >= engine.scoring.strong
        p0, p1 = result.kpts0[keep], result.kpts1[keep]
        free = similarity_inliers(p0, p1, conf.tolerance, conf.trials)
        turned = similarity_inliers(p0, p1, conf.tolerance, conf.trials, conf.max_rotation)
        out.append([int(a), int(b), int(keep.sum()), int(free.sum()), int(turned.sum())])
    print(
        json.dumps(
            {"set": name, "columns": ["query", "gallery", "strong", "exact", "exact_quarter_turn"], "pairs": out}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
