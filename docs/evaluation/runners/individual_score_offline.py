"""Offline runner (not part of the app): how an individual's score is made from its verified photos. The engine
takes its best photo's z-score; here the second-best photo also counts: ``(best + beta * second) / (1 + beta)``, an
individual with one photo counting that photo twice (neither favoured nor penalised against one with two equal
photos), on the same matches and folds as ``policy_offline.py``, for exhaustive search and the CPU's rounds, each
fold prior's calibrator fitted with the same rule (its partners' scores made into one per individual the same way).
The rule is chosen per held-out fold on the other three folds of both sets (summed top-1), as
``policy_offline.py choose`` chooses schedules.

    python individual_score_offline.py > individual-score.json    # after policy_offline.py extract for both sets
    python individual_score_offline.py mean-of 2 3 4 > mean-of-k.json   # the mean of the k best photos instead
"""

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_offline

from core.engine.scoring import individual_score


def best_and_second(z: np.ndarray, beta: float) -> float:
    return float((z[0] + beta * (z[1] if len(z) > 1 else z[0])) / (1 + beta))


RULES = {"best photo": policy_offline.best_photo} | {
    f"(best + {beta} x second) / {1 + beta}": partial(best_and_second, beta=beta) for beta in (0.2, 0.35, 0.5, 1.0)
}
SEARCHES = {"exhaustive": (None, 1.0), "rounds": (policy_offline.CPU_ROUNDS, 0.5)}
METRICS = ("top1", "top5", "novelty_auroc", "new_decision_accuracy", "known_sure", "pairs_mean")


def main(rules: dict) -> None:
    policies = {f"{s} | {r}": SEARCHES[s] for s in SEARCHES for r in rules}
    figures = {}
    for name in policy_offline.SETS:
        cat = policy_offline.Catalogue(name)
        figures[name] = [{} for _ in range(4)]
        for r, rule in rules.items():
            mine = {label: p for label, p in policies.items() if label.endswith(f"| {r}")}
            for k in range(4):
                figures[name][k] |= policy_offline.fold_figures(cat, k, mine, rule)

    def mean(name, label, folds, key):
        return float(np.mean([figures[name][k][label][key] for k in folds]))

    held_out = {}
    for search in SEARCHES:
        labels = [f"{search} | {r}" for r in rules]
        rows = []
        for held in range(4):
            train = [k for k in range(4) if k != held]
            chosen = max(labels, key=lambda p: sum(mean(n, p, train, "top1") for n in policy_offline.SETS))
            rows.append({"fold": held, "chosen": chosen, **{n: figures[n][held][chosen] for n in policy_offline.SETS}})
        held_out[search] = {
            "folds": rows,
            "mean": {
                n: {k: round(float(np.mean([r[n][k] for r in rows])), 3) for k in METRICS} for n in policy_offline.SETS
            },
        }
    summary = {
        label: {n: {k: round(mean(n, label, range(4), k), 3) for k in METRICS} for n in policy_offline.SETS}
        for label in policies
    }
    print(json.dumps({"summary": summary, "held_out": held_out}, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["mean-of"]:  # the engine's rule (core.engine.scoring.individual_score) for each k
        main(
            {"best photo": policy_offline.best_photo}
            | {f"mean of the {k} best": partial(individual_score, photos=int(k)) for k in sys.argv[2:]}
        )
    else:
        main(RULES)
