"""Offline runner (not part of the app): the null and calibration prior fitted on each side's gallery, as the app
searches (``core.evaluation.protocol.side_galleries``, since 3 Dec 2026), against one fitted on every photo at once,
on the identity folds of both sets (``policy_offline.py``'s matches, exhaustive search and the CPU's rounds, an
individual scored by its two best photos). Rankings do not depend on the calibrator; its probabilities do.

    python prior_sides_offline.py > prior-sides-offline.json      # after policy_offline.py extract for both sets
"""

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_offline

from core.engine.scoring import individual_score

SEARCHES = {"exhaustive": (None, 1.0), "rounds": (policy_offline.CPU_ROUNDS, 0.5)}
PRIORS = {"prior per side": True, "prior on every photo": False}
METRICS = ("top1", "top5", "novelty_auroc", "new_decision_accuracy", "known_sure", "pairs_mean")


def main() -> None:
    rule = partial(individual_score, photos=2)
    report = {}
    for name in policy_offline.SETS:
        cat = policy_offline.Catalogue(name)
        report[name] = {}
        for label, sides in PRIORS.items():
            folds = [policy_offline.fold_figures(cat, k, SEARCHES, rule, sides) for k in range(4)]
            report[name][label] = {
                s: {m: round(float(np.mean([f[s][m] for f in folds])), 3) for m in METRICS}
                | {"per_fold_known_sure": [round(f[s]["known_sure"], 3) for f in folds]}
                for s in SEARCHES
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
