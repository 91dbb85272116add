"""Device runner (not part of the app): the laptop's search as deployed (ALIKED 1024 px / 1024 keypoints, upright,
LightGlue with early stopping, pairs one at a time as on a CPU) under the identity folds of one shared set, the
shortlist in rounds beside the earlier four fixed pairs on the same queries, fold priors; and the pairs of the
shipped CPU prior for that set. One process per fold and one for the prior run side by side on the GPU.

    python cpu_rounds_h200.py SET            # turtles|nyala; writes $OUT/SET-fold-K.json and $OUT/SET-pairs.npz
    python cpu_rounds_h200.py SET fold K     # one fold (what the first form starts)
    python cpu_rounds_h200.py SET collect    # the prior's pairs
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())
sys.path.insert(0, str(Path(__file__).parent))

SETS = {
    "turtles": (Path(".carry/t1600/manifest.csv"), "column"),
    "nyala": (Path(".carry/nyala/manifest.csv"), "name"),
}
OUT = Path(os.environ.get("OUT", "/tmp/out"))
MATCHER = {"depth_confidence": 0.95}  # what "auto" resolves to on a CPU


def engine(scoring=None):
    import core.engine.weights as w
    from core.engine.matchers.lightglue import LightGlueMatcher
    from core.engine.search import Engine

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    LightGlueMatcher.batch_size = property(lambda self: 1)  # one pair at a time, as on a CPU
    return Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        MATCHER,
        scoring=scoring,
        device=os.environ.get("RUNNER_DEVICE", "cuda"),
        cache_dir=Path(os.environ.get("RUNNER_CACHE", "/tmp/cache")),
        turns=(0,),
        prior=False,
    )


def collect(name):
    from prior_h200 import NEGATIVES, POSITIVES, collect_pairs

    from core.engine.scoring import ScoringConf

    collect_pairs(engine(ScoringConf(null_negatives=NEGATIVES, null_positives=POSITIVES)), SETS[name][0], name, OUT)


def fold(name, k):
    from core.catalogue.manifest import read_manifest
    from core.engine.shortlist import SHORTLIST_CONFS
    from core.evaluation.folds import fit_fold_prior, own_priors
    from core.evaluation.protocol import _side_indexes, _Tally, manifest_photo, protocol_split

    e = engine()
    manifest, encounters = SETS[name]
    root = manifest.parent
    rows = read_manifest(manifest)
    rounds = SHORTLIST_CONFS["cpu"]
    fixed = dataclasses.replace(rounds, max_pairs=4, rounds=())
    t0 = time.time()
    with own_priors(e, True):
        split = protocol_split(rows, k, 4, encounters)
        gallery = [manifest_photo(root, r) for r in split.gallery]
        e.prior = fit_fold_prior(e, split.gallery, gallery, ("confident",))
        index = e.build_index(gallery)
        sides = _side_indexes(e, split.gallery, gallery, index)
        tallies = {"rounds": _Tally(), "fixed4": _Tally()}
        pairs = {"rounds": [], "fixed4": []}
        seconds = {"rounds": [], "fixed4": []}
        queries = []
        for row in split.queries:
            photo = manifest_photo(root, row)
            searched = sides.get(row.side, index)
            if not searched.photos:
                searched = index
            novel = row.identity not in {p.identity for p in searched.photos}
            views = e.photo_views(photo)
            q = {"path": row.path, "identity": row.identity, "novel": novel}
            for label, conf in (("rounds", rounds), ("fixed4", fixed)):
                start = time.perf_counter()
                outcome = e.search(views, searched, shortlist=conf)
                seconds[label].append(time.perf_counter() - start)
                ident = outcome.identification
                tallies[label].add(ident, row.identity, novel)
                pairs[label].append(len(outcome.results))
                q[label] = {
                    "ranking": ident.ranking[:5],
                    "best_probability": ident.candidates[0].probability,
                    "new_probability": ident.new_individual_probability,
                    "pairs": len(outcome.results),
                }
            queries.append(q)
    report = {
        "set": name,
        "fold": k,
        "novel_identities": split.novel,
        "signature": e.signature,
        "gallery_photos": len(gallery),
        "queries": len(split.queries),
        "seconds": time.time() - t0,
        "search": {
            label: dict(
                dataclasses.asdict(t.report("confident")),
                pairs_mean=float(np.mean(pairs[label])),
                pairs_median=float(np.median(pairs[label])),
                gpu_seconds_median=float(np.median(seconds[label])),
            )
            for label, t in tallies.items()
        },
        "queries_detail": queries,
    }
    (OUT / f"{name}-fold-{k}.json").write_text(json.dumps(report, indent=1, default=str))
    print(name, "fold", k, json.dumps(report["search"]), f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    name = sys.argv[1]
    OUT.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) == 2:
        jobs = [[sys.executable, __file__, name, "collect"]]
        jobs += [[sys.executable, __file__, name, "fold", str(k)] for k in range(4)]
        procs = [subprocess.Popen(j) for j in jobs]
        sys.exit(max(p.wait() for p in procs))
    elif sys.argv[2] == "collect":
        collect(name)
    else:
        fold(name, int(sys.argv[3]))
