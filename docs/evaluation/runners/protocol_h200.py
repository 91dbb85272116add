"""GPU runner (not part of the product): the issue-14 protocol (identity folds, encounters, sides) and small
galleries on both shared sets, at the CPU preset (1024 px, 1024 keypoints, upright) or the GPU preset.

    python docs/evaluation/runners/protocol_h200.py folds|cpu|small|gpu|encounters   (writes JSON under $OUT)
"""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from core.catalogue.manifest import read_manifest
from core.engine.search import Engine
from core.evaluation.folds import evaluate_folds
from core.evaluation.protocol import METHODS
from core.evaluation.small_gallery import evaluate_small_galleries

OUT = Path(os.environ["OUT"])
W = Path(".carry/weights")
SETS = {"turtles": (Path(".carry/data/turtles"), "column"), "nyala": (Path(".carry/data/nyala"), "name")}
t0 = time.time()


def log(*a):
    print(f"[{time.time() - t0:7.1f}s]", *a, flush=True)


def engine(prior, gpu=False):
    conf = {"max_side": 1600, "max_keypoints": 2048} if gpu else {"max_side": 1024, "max_keypoints": 1024}
    return Engine(
        "aliked",
        conf,
        device="cuda",
        cache_dir=Path("/tmp/cache"),
        turns=None if gpu else (0,),
        weights_dir=W,
        prior=prior,
    )


def save(name, data):
    (OUT / name).write_text(json.dumps(data, indent=1, default=str))


part = sys.argv[1]
results = {}
if part == "cpu":  # the CPU preset as deployed: the CPU's shortlist for the app's search, exhaustive beside it
    from core.engine.shortlist import SHORTLIST_CONFS

    cpu = SHORTLIST_CONFS["cpu"]
    for name, exhaustive in (("nyala", True), ("turtles", False)):
        root, encounters = SETS[name]
        rows = read_manifest(root / "manifest.csv")
        r = evaluate_folds(
            rows,
            root,
            engine(False),
            METHODS,
            folds=4,
            encounters=encounters,
            fold_prior=True,
            shortlist=cpu,
            exhaustive=exhaustive,
        )
        log(name, "\n" + r.table())
        results[f"{name}/fold-prior/cpu-shortlist"] = r.to_dict()
        save("protocol-cpu.json", results)
    for name, (root, encounters) in SETS.items():
        rows = read_manifest(root / "manifest.csv")
        r = evaluate_small_galleries(
            rows, root, engine(False), draws=6, encounters=encounters, fold_prior=True, shortlist=cpu
        )
        d = dataclasses.asdict(r)
        log(name, "small", {k: v for k, v in d.items() if k != "outcomes"})
        results[f"{name}/small/fold-prior"] = d
        save("protocol-cpu.json", results)
if part == "encounters":  # issue 16: top-1 per encounter beside per photo, nyala (left + right flank per encounter)
    from core.engine.shortlist import SHORTLIST_CONFS

    root, encounters = SETS["nyala"]
    rows = read_manifest(root / "manifest.csv")
    r = evaluate_folds(
        rows,
        root,
        engine(False),
        METHODS,
        folds=4,
        encounters=encounters,
        fold_prior=True,
        shortlist=SHORTLIST_CONFS["cpu"],
        exhaustive=True,
    )
    log("nyala", "\n" + r.table())
    results["nyala/fold-prior/cpu-shortlist/encounters"] = r.to_dict()
    save("protocol-encounters.json", results)
if part in ("folds", "gpu"):
    sets = dict(SETS)
    if part == "gpu":
        sets["turtles"] = (Path(".carry/t1600"), "column")
    for name, (root, encounters) in sets.items():
        if not root.exists():  # each run carries what fits in 64 MiB
            continue
        rows = read_manifest(root / "manifest.csv")
        runs = (
            [("fold-prior", False, True)]
            if part == "gpu"
            else [("fold-prior", False, True), ("shipped-prior", True, False)]
        )
        for label, prior, fold_prior in runs:
            e = engine(prior, gpu=part == "gpu")
            exhaustive = part == "folds" and label == "fold-prior"
            r = evaluate_folds(
                rows, root, e, METHODS, folds=4, encounters=encounters, fold_prior=fold_prior, exhaustive=exhaustive
            )
            log(name, label, "\n" + r.table())
            results[f"{name}/{label}"] = r.to_dict()
            save(f"protocol-{part}.json", results)
if part == "small":
    for name, (root, encounters) in SETS.items():
        rows = read_manifest(root / "manifest.csv")
        for label, prior, fold_prior in [("shipped-prior", True, False), ("fold-prior", False, True)]:
            r = evaluate_small_galleries(
                rows, root, engine(prior), draws=10, encounters=encounters, fold_prior=fold_prior
            )
            d = dataclasses.asdict(r)
            log(name, label, {k: v for k, v in d.items() if k != "outcomes"})
            results[f"{name}/{label}"] = d
            save("small-galleries.json", results)
log("done")
