"""Device runner (not part of the app): the benchmark at several sizes with weights from .carry/weights.

Usage: python bench_h200.py SIZES MANIFEST CACHE_DIR QUERIES EXHAUSTIVE DEVICE IDENTITIES [MAX_SIDE KEYPOINTS TURNS]
(e.g. 100,1000,10000 .carry/data/turtles/manifest.csv /tmp/bench 50 10 cuda 0); JSON to $OUT/bench.json.
The GPU defaults: ... 1600 2048 all (photos at 1600 px, 2,048 keypoints, queries in four turns).
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from core.evaluation.bench.conf import BenchConf
from core.evaluation.bench.runner import Bench


def settings(extra):
    from core.engine.orientation import parse_turns

    if not extra:
        return {}
    return {"max_side": int(extra[0]), "keypoints": int(extra[1]), "turns": parse_turns(extra[2])}


def main():
    import core.engine.weights as w

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    OUT = Path(os.environ.get("OUT", "/tmp/out"))
    OUT.mkdir(exist_ok=True)
    sizes = tuple(int(s) for s in sys.argv[1].split(","))
    conf = BenchConf(
        manifest=Path(sys.argv[2]),
        cache_dir=Path(sys.argv[3]),
        sizes=sizes,
        queries=int(sys.argv[4]),
        exhaustive_queries=int(sys.argv[5]),
        device=sys.argv[6],
        identities=int(sys.argv[7]) or None,
        **settings(sys.argv[8:]),
    )
    t0 = time.time()

    def progress(stage, done, total):
        if done == total or done % 500 == 0:
            print(f"[{time.time() - t0:6.1f}s] {stage} {done}/{total}", flush=True)

    def save(report):
        (OUT / "bench.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
        print(report.table(), flush=True)

    b = Bench(conf, progress)
    print(
        "prior:",
        b.engine.prior.signature if b.engine.prior else None,
        "null pairs/photo:",
        b.engine.scoring.null_negatives,
        flush=True,
    )
    b.run(save)


if __name__ == "__main__":
    main()
