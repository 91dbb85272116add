import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from core.catalogue.manifest import read_manifest
from core.engine.search import Engine
from core.engine.shortlist import SHORTLIST_CONFS
from core.evaluation.protocol import evaluate

OUT = Path(os.environ["OUT"])
W = Path(".carry/weights")
D = Path(".carry/data")
t0 = time.time()


def log(*a):
    print(f"[{time.time() - t0:7.1f}s]", *a, flush=True)


cpu = SHORTLIST_CONFS["cpu"]
V = {
    "A_3x1": cpu,
    "B_3x2": dataclasses.replace(cpu, min_individuals=3, max_individuals=3, photos_per_individual=2, max_pairs=6),
    "C_2x3": dataclasses.replace(cpu, min_individuals=2, max_individuals=2, photos_per_individual=3, max_pairs=6),
    "D_4x1_q1024": dataclasses.replace(cpu, min_individuals=4, max_individuals=4, max_pairs=4, query_descriptors=1024),
    "E_3x1_q1024_g512": dataclasses.replace(cpu, query_descriptors=1024, gallery_descriptors=512),
    "F_2x2": dataclasses.replace(cpu, min_individuals=2, max_individuals=2, photos_per_individual=2, max_pairs=4),
    "G_4x2": dataclasses.replace(cpu, min_individuals=4, max_individuals=4, photos_per_individual=2, max_pairs=8),
    "H_5x3": dataclasses.replace(cpu, min_individuals=5, max_individuals=5, photos_per_individual=3, max_pairs=15),
    "I_2x2_q1024_g512": dataclasses.replace(
        cpu,
        min_individuals=2,
        max_individuals=2,
        photos_per_individual=2,
        max_pairs=4,
        query_descriptors=1024,
        gallery_descriptors=512,
    ),
}
res = {}
for ds in ("turtles", "nyala"):
    rows = read_manifest(D / ds / "manifest.csv")
    e = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cuda",
        cache_dir=Path("/tmp/cache"),
        turns=(0,),
        weights_dir=W,
        prior=Path(".carry/prior_gallery.json"),
    )
    for name, conf in V.items():
        r = evaluate(rows, D / ds, e, ["confident"], None, conf, exhaustive=False)
        s = r.search
        res[f"{ds}/{name}"] = dataclasses.asdict(s)
        log(
            ds,
            name,
            f"top1 {s.top1:.3f} top3 {s.top3:.3f} top5 {s.top5:.3f}",
            f"auroc {s.novelty_auroc:.3f} newacc {s.new_decision_accuracy:.3f}",
        )
        (OUT / "variants.json").write_text(json.dumps(res, indent=1))
