"""Offline runner (not part of the app): set aside a pair's strong matches that one similarity maps within a
pixel or two when they are most of them (``core.engine.exposure``: crops of one exposure share pixels, not an
animal), replayed on every pair of both shared sets matched on the device (``exposure_pairs_h200.py``) under the
identity folds of ``policy_offline.py``: fold priors refitted on the same scores or left as matched, exhaustive
search and the CPU's rounds, an individual scored by its two best photos. The rule (tolerance, least fraction of the
strong matches, and whether the similarity must lie within 3 degrees of a quarter turn: ``exposure_quarter_cpu.py``
matched the flagged pairs again for that) is chosen for each held-out fold on the other three folds of both sets
(summed top-1 and novelty AUROC).

    python exposure_offline.py > exposure-offline.json      # after policy_offline.py extract for both sets
"""

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_offline

from core.engine.exposure import ExposureConf
from core.engine.scoring import individual_score

SEARCHES = {"exhaustive": (None, 1.0), "rounds": (policy_offline.CPU_ROUNDS, 0.5)}
MIN_MATCHES = ExposureConf().min_matches
RULES = (
    {"none": None}
    | {
        f"within {tol:g} px, at least {frac:g} of the strong matches": (t, frac, False)
        for t, tol in enumerate((1.0, 2.0))
        for frac in (0.3, 0.5, 0.7)
    }
    | {"within 2 px, at least 0.5 of the strong matches, within 3 degrees of a quarter turn": (1, 0.5, True)}
)
METRICS = ("top1", "top5", "novelty_auroc", "new_decision_accuracy", "known_sure", "pairs_mean")


def shared_pairs(name: str, rule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strong matches and the exact set of every ordered pair, and which pairs ``rule`` (tolerance index, least
    fraction, quarter-turn limit) sets aside as a shared exposure; a pair with itself never."""
    data = np.load(policy_offline.PAIRS / f"{name}-exposure-pairs.npz")
    t, frac, quarter = rule
    strong, exact = data["strong"].astype(np.float64), data["exact"][t].astype(np.float64)
    shared = (exact >= np.maximum(MIN_MATCHES, frac * strong)) & ~np.eye(len(strong), dtype=bool)
    if quarter:  # the pairs flagged without the limit, matched again (exposure_quarter_cpu.py)
        checked = json.loads((policy_offline.PAIRS / f"{name}-exposure-quarter.json").read_text())["pairs"]
        for a, b, n_strong, _, turned in checked:
            shared[a, b] &= turned >= max(MIN_MATCHES, frac * n_strong)
    return strong, exact, shared


def scores(name: str, rule) -> np.ndarray:
    if rule is None:
        return np.load(policy_offline.PAIRS / f"{name}-exposure-pairs.npz")["strong"].astype(np.float64)
    strong, exact, shared = shared_pairs(name, rule)
    return strong - np.where(shared, exact, 0.0)


def held_out_report(figures: dict[str, dict[str, list]]) -> dict:
    """``figures[set][label][fold][search]``: each label's mean over the folds, and for each held-out fold the label
    with the best summed top-1 and novelty AUROC of both sets on the other three folds."""

    def mean(name, label, folds, search, key):
        return float(np.mean([figures[name][label][k][search][key] for k in folds]))

    held_out = {}
    for search in SEARCHES:
        rows = []
        for held in range(4):
            train = [k for k in range(4) if k != held]
            chosen = max(
                list(figures["turtles"]),
                key=lambda r: sum(
                    mean(n, r, train, search, "top1") + mean(n, r, train, search, "novelty_auroc")
                    for n in policy_offline.SETS
                ),
            )
            rows.append(
                {"fold": held, "chosen": chosen, **{n: figures[n][chosen][held][search] for n in policy_offline.SETS}}
            )
        held_out[search] = {
            "folds": rows,
            "mean": {
                n: {k: round(float(np.mean([r[n][k] for r in rows])), 3) for k in METRICS} for n in policy_offline.SETS
            },
        }
    summary = {
        search: {
            label: {n: {k: round(mean(n, label, range(4), search, k), 3) for k in METRICS} for n in policy_offline.SETS}
            for label in figures["turtles"]
        }
        for search in SEARCHES
    }
    return {"summary": summary, "held_out": held_out}


def all_folds(searched, prior_of=None) -> list:
    """Both searches on each of the four folds, an individual scored by its two best photos; the fold prior fitted on
    ``prior_of``'s pairs (default ``searched``'s, see ``policy_offline.fold_figures``)."""
    two_best = partial(individual_score, photos=2)
    return [policy_offline.fold_figures(searched, k, SEARCHES, two_best, prior_of=prior_of) for k in range(4)]


def main() -> None:
    figures = {}
    for name in policy_offline.SETS:
        cat = policy_offline.Catalogue(name)
        figures[name] = {}
        plain = policy_offline.Catalogue(name)
        plain.strong = scores(name, None)
        for label, rule in RULES.items():
            cat.strong = scores(name, rule)
            figures[name][label] = all_folds(cat)
            # As the engine ships it: the query's pairs set aside, the prior's sampled pairs as matched.
            figures[name][f"{label}, searches only"] = all_folds(cat, plain)

    print(json.dumps(held_out_report(figures), indent=1))


if __name__ == "__main__":
    main()
