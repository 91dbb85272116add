"""Side by side, with and without zoom, from ``zoom_h200.py``'s per-query JSON; the zoom gate chosen by
cross-validation over the identity folds (not part of the product).

For each fold *k* the gate (region area, native-pixel gain, first-pass confidence) is the one that scores best on
the other folds of *both* sets (mean over the sets of top-1 and novelty AUROC), and is reported on fold *k* only;
the figures are the mean and spread of those held-out folds. The gate chosen on every fold is the one to ship.

    python docs/evaluation/runners/zoom_report.py zoom-turtles.json zoom-nyala.json > docs/evaluation/zoom-....json
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from core.evaluation.metrics import auroc

AREAS = (0.1, 0.2, 0.35, 0.5, 1.01)
GAINS = (0.0, 1.3, 1.6)
CONFIDENT = (0.3, 0.5, 0.8, 1.01)
GRID = list(itertools.product(AREAS, GAINS, CONFIDENT))


def pick(entry, mode, gate):
    """The outcome a query gets under ``gate`` (None: never zoom)."""
    run = entry[mode]
    if gate is None or "zoom" not in run:
        return run["first"]
    max_area, min_gain, confident = gate
    zoom = run["area"] < max_area and run["gain"] >= min_gain and run["first"]["best"] < confident
    return run["zoom"] if zoom else run["first"]


def metrics(entries, mode, gate):
    known = [pick(e, mode, gate) for e in entries if not e["novel"]]
    novel = [pick(e, mode, gate) for e in entries if e["novel"]]
    both = [(pick(e, mode, gate), e["novel"]) for e in entries]
    return {
        "top1": float(np.mean([o["rank"] < 1 for o in known])),
        "top5": float(np.mean([o["rank"] < 5 for o in known])),
        "novelty_auroc": auroc([o["best"] for o in known], [o["best"] for o in novel]),
        "new_decision_accuracy": float(np.mean([(o["new"] >= 0.5) == n for o, n in both])),
        "zoomed": float(np.mean([pick(e, mode, gate) is e[mode].get("zoom") for e in entries])),
    }


def per_fold(sets, mode, gate):
    return {
        name: [metrics([e for e in q if e["fold"] == k], mode, gate) for k in sorted({e["fold"] for e in q})]
        for name, q in sets.items()
    }


def objective(sets, mode, gate, folds):
    scores = [
        np.mean([m["top1"] + m["novelty_auroc"] for k, m in enumerate(ms) if k in folds])
        for ms in per_fold(sets, mode, gate).values()
    ]
    return float(np.mean(scores))


def mean_sd(ms):
    return {key: (float(np.nanmean([m[key] for m in ms])), float(np.nanstd([m[key] for m in ms]))) for key in ms[0]}


def report(sets, mode):
    folds = sorted({e["fold"] for q in sets.values() for e in q})
    without = per_fold(sets, mode, None)
    always = per_fold(sets, mode, (1.01, 0.0, 2.0))
    chosen, held_out = [], {name: [] for name in sets}
    for k in folds:
        others = [f for f in folds if f != k]
        gate = max(GRID, key=lambda g: (objective(sets, mode, g, others), -g[0], g[1], -g[2]))
        chosen.append(gate)
        for name, ms in per_fold(sets, mode, gate).items():
            held_out[name].append(ms[k])
    final = max(GRID, key=lambda g: (objective(sets, mode, g, folds), -g[0], g[1], -g[2]))
    return {
        "gates_chosen_per_held_out_fold": chosen,
        "gate_chosen_on_all_folds": final,
        "sets": {
            name: {
                "without_zoom": mean_sd(without[name]),
                "zoom_wherever_found": mean_sd(always[name]),
                "zoom_cross_validated_gate": mean_sd(held_out[name]),
            }
            for name in sets
        },
    }


if __name__ == "__main__":
    sets = {}
    for path in sys.argv[1:]:
        data = json.loads(Path(path).read_text())
        sets[data["set"]] = data["queries"]
    modes = [m for m in ("cpu", "exhaustive") if all(m in q[0] for q in sets.values())]
    out = {mode: report(sets, mode) for mode in modes}
    out["grid"] = {"max_area": AREAS, "min_gain": GAINS, "confident": CONFIDENT}
    print(json.dumps(out, indent=1))
