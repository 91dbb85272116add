"""GPU runner (not part of the product): priors and side-by-side evaluations at the CPU preset, for issue 13."""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from core.catalogue.manifest import read_manifest
from core.engine.index import fit_prior
from core.engine.scoring import ScoringConf
from core.engine.search import Engine
from core.engine.shortlist import SHORTLIST_CONFS
from core.evaluation.protocol import METHODS, evaluate, manifest_photo, protocol_split

OUT = Path(os.environ["OUT"])
W = Path(".carry/weights")
D = Path(".carry/data")
CACHE = Path("/tmp/cache")


def engine(kp, prior, neg=None, pos=None):
    e = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": kp},
        scoring=ScoringConf(null_negatives=neg, null_positives=pos),
        device="cuda",
        cache_dir=CACHE,
        turns=(0,),
        weights_dir=W,
        prior=prior,
    )
    return e


sets = ["turtles", "nyala"]
t0 = time.time()


def log(*a):
    print(f"[{time.time() - t0:7.1f}s]", *a, flush=True)


def fit(split, name):
    e = engine(1024, False, 24, 4)
    idx = []
    src = {"catalogues": [], "split": split, "negatives_per_photo": 24, "positives_per_photo": 4}
    for ds in sets:
        rows = read_manifest(D / ds / "manifest.csv")
        if split == "gallery":
            rows = protocol_split(rows).gallery
        photos = [manifest_photo(D / ds, r) for r in rows]
        idx.append(e.build_index(photos))
        src["catalogues"].append({"name": ds, "photos": len(photos), "identities": len({r.identity for r in rows})})
    p = fit_prior(idx, METHODS, e.signature, src)
    p.save(OUT / name)
    log("prior", name, e.signature, {m: dataclasses.asdict(v) | {"null_profile": None} for m, v in p.methods.items()})
    return OUT / name


fit("gallery", "prior_gallery.json")
fit("all", "prior_all.json")
results = {}
for ds in sets:
    rows = read_manifest(D / ds / "manifest.csv")
    for label, kp, prior, neg, pos, sl in [
        ("today_2048_nulls_exhaustive", 2048, False, 24, 4, False),
        ("kp1024_nulls", 1024, False, 24, 4, False),
        ("new_kp1024_prior_cpu_shortlist", 1024, OUT / "prior_gallery.json", None, None, SHORTLIST_CONFS["cpu"]),
        (
            "kp1024_prior_shortlist6",
            1024,
            OUT / "prior_gallery.json",
            None,
            None,
            dataclasses.replace(SHORTLIST_CONFS["cpu"], max_individuals=6, min_individuals=6, max_pairs=6),
        ),
    ]:
        e = engine(kp, prior, neg, pos)
        r = evaluate(rows, D / ds, e, list(METHODS), None, sl)
        d = r.to_dict()
        d.pop("queries_detail")
        results[f"{ds}/{label}"] = d
        log(ds, label, "\n" + r.table())
        (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
