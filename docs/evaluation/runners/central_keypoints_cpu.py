"""CPU runner (not part of the app): would LightGlue on only the central keypoints (box distance < 0.75, the frame
rule's) be faster at no cost? Against matching every keypoint and then counting the central strong matches, on the
same random pairs (N of one individual, at another encounter for the nyala, and N of two individuals, one side),
one at a time on this CPU as the laptop matches. Features come from the CPU-preset cache of the replays.

    python docs/evaluation/runners/central_keypoints_cpu.py [N]   # writes docs/evaluation/central-keypoints-cpu.json
"""

import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())

SETS = {"turtles": Path(".carry/t1600/manifest.csv"), "nyala": Path(".carry/nyala/manifest.csv")}
FIELDS = ("strong_every", "strong_central_only", "seconds_every", "seconds_central_only", "keypoints", "central")


def _encounter(row) -> str:
    return Path(row.path).name.split("_")[0]


def _pairs(rows, name: str, n: int, rng: random.Random) -> dict[str, list]:
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r.identity, []).append(r)
    same, different = [], []
    while len(same) < n:
        a, b = rng.sample(by[rng.choice([i for i in by if len(by[i]) > 1])], 2)
        if a.side == b.side and (name != "nyala" or _encounter(a) != _encounter(b)):
            same.append((a, b))
    while len(different) < n:
        a, b = rng.sample(rows, 2)
        if a.identity != b.identity and a.side == b.side:
            different.append((a, b))
    return {"same": same, "different": different}


def _auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    return float(np.mean([(p > q) + 0.5 * (p == q) for p in positives for q in negatives]))


def main(n: int) -> None:
    import torch

    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.framing import CENTRED, central, inside
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    torch.set_num_threads(2)
    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    cache = Path(os.environ.get("RUNNER_CACHE", "/tmp/policy/cache"))
    engine = Engine(
        "aliked", {"max_side": 1024, "max_keypoints": 1024}, device="cpu", cache_dir=cache, turns="none", prior=False
    )
    strong = engine.scoring.strong

    def central_only(f):
        keep = central(f, CENTRED)
        return dataclasses.replace(
            f, keypoints=f.keypoints[keep], descriptors=f.descriptors[keep], scores=f.scores[keep]
        )

    def timed(f0, f1):
        start = time.perf_counter()
        (result,) = engine.matcher.match_many(f0, [f1])
        return result, time.perf_counter() - start

    report: dict = {"machine": "2-core AMD EPYC, torch threads 2", "pairs_per_kind": n}
    for name, manifest in SETS.items():
        rows = read_manifest(manifest)
        measured = {}
        for kind, pairs in _pairs(rows, name, n, random.Random(7)).items():
            values = []
            for a, b in pairs:
                f0, f1 = (engine.photo_features(manifest_photo(manifest.parent, r)) for r in (a, b))
                every, t_every = timed(f0, f1)
                c0, c1 = central_only(f0), central_only(f1)
                only, t_only = timed(c0, c1)
                counted = (every.confidence >= strong) & inside(
                    every.kpts0, f0.image_size, every.kpts1, f1.image_size, CENTRED
                )
                values.append((counted.sum(), (only.confidence >= strong).sum(), t_every, t_only, len(f0), len(c0)))
            measured[kind] = np.array(values, dtype=np.float64)
            means = measured[kind].mean(axis=0).round(3).tolist()
            report.setdefault(name, {})[kind] = dict(zip(FIELDS, means, strict=True))
            print(name, kind, report[name][kind], flush=True)
        same, different = measured["same"], measured["different"]
        report[name]["auroc_every"] = _auroc(same[:, 0], different[:, 0])
        report[name]["auroc_central_only"] = _auroc(same[:, 1], different[:, 1])
        print(name, "AUROC", report[name]["auroc_every"], "->", report[name]["auroc_central_only"], flush=True)
    Path("docs/evaluation/central-keypoints-cpu.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
