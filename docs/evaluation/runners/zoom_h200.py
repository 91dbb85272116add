"""GPU runner (not part of the product): issue 14 point 2, zoom to the animal, side by side with the same search
without zoom, over the identity folds, at the CPU preset (ALIKED 1024 px / 1024 keypoints, upright, fold priors).

Every query is searched once as it comes and once zoomed wherever a region is found (the gate is left wide open:
any region, any gain, any first-pass confidence), so that any gate (region area, native-pixel gain, first-pass
confidence) can be applied afterwards and chosen by cross-validation over the folds (``zoom_report.py``).

    python docs/evaluation/runners/zoom_h200.py SET [cpu] [exhaustive]   (SET: turtles, nyala; JSON under $OUT)

Turtles come from ``.carry/native/turtles`` (the shared photos at their native 2000 px, WebP), nyala from
``.carry/data/nyala`` (their originals are at most 1024 px already).
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from core.catalogue.manifest import read_manifest
from core.engine.localise import ZoomConf, area, gain
from core.engine.search import Engine, _photo_size
from core.engine.shortlist import SHORTLIST_CONFS
from core.evaluation.folds import fit_fold_prior, own_priors
from core.evaluation.protocol import METHODS, _side_indexes, manifest_photo, protocol_split

OUT = Path(os.environ.get("OUT", "/tmp/out"))
SETS = {"turtles": (Path(".carry/native/turtles"), "column"), "nyala": (Path(".carry/data/nyala"), "name")}
#: Zoom wherever a region is found; the gate is applied afterwards.
OPEN = ZoomConf(max_area=1.01, min_gain=0.0, confident=2.0)
t0 = time.time()


def log(*a):
    print(f"[{time.time() - t0:7.1f}s]", *a, flush=True)


def summary(identification, identity):
    ranking = identification.ranking
    return {
        "rank": ranking.index(identity) if identity in ranking else len(ranking),
        "best": identification.candidates[0].probability,
        "new": identification.new_individual_probability,
        "top": ranking[0],
    }


name, modes = sys.argv[1], sys.argv[2:] or ["cpu"]
root, encounters = SETS[name]
rows = read_manifest(root / "manifest.csv")
device = os.environ.get("DEVICE", "cuda")
engine = Engine(
    "aliked",
    {"max_side": 1024, "max_keypoints": 1024},
    device=device,
    cache_dir=Path("/tmp/cache"),
    turns=(0,),
    weights_dir=Path(".carry/weights") if Path(".carry/weights").exists() else None,
    prior=False,
)
folds = int(os.environ.get("FOLDS", 4))
limit = int(os.environ.get("LIMIT", 0))  # queries per fold (a smoke test), 0: all
result = {"set": name, "root": str(root), "modes": modes, "folds": folds, "zoom": OPEN.__dict__, "queries": []}
with own_priors(engine, True):
    for fold in range(folds):
        split = protocol_split(rows, fold, folds, encounters)
        gallery = [manifest_photo(root, r) for r in split.gallery]
        engine.prior = fit_fold_prior(engine, split.gallery, gallery, METHODS)
        index = engine.build_index(gallery)
        sides = _side_indexes(engine, split.gallery, gallery, index)
        for row in split.queries[: limit or None]:
            photo = manifest_photo(root, row)
            searched = sides.get(row.side, index)
            searched = searched if searched.photos else index
            novel = row.identity not in {p.identity for p in searched.photos}
            entry = {"fold": fold, "path": row.path, "identity": row.identity, "novel": novel}
            for mode in modes:
                shortlist = SHORTLIST_CONFS["cpu"] if mode == "cpu" else False
                out = engine.search_photo(photo.path, photo.sha256, searched, shortlist=shortlist, zoom=OPEN)
                first = out.zoom.first if out.zoom else out.identification
                entry[mode] = {"first": summary(first, row.identity)}
                if out.zoom:
                    entry[mode]["zoom"] = summary(out.identification, row.identity)
                    entry[mode]["region"] = [round(v, 4) for v in out.zoom.region]
                    entry[mode]["area"] = area(out.zoom.region)
                    entry[mode]["gain"] = gain(out.zoom.region, out.zoom.frame_size, _photo_size(photo.path), 1024)
            result["queries"].append(entry)
        log(name, "fold", fold, "queries", len(result["queries"]))
        (OUT / f"zoom-{name}.json").write_text(json.dumps(result))
log("done")
