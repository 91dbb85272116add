"""Offline (not part of the app): the prior probability that a photo shows a new individual
(``ScoringConf.new_prior``, 0.5) against what volunteers meet: in a new project's 4 x 4 gallery a right first
answer is too rarely sure (>= 0.5) while unseen individuals are called new more often than the 80 % asked. Replays
the CPU's search as shipped (edge matches and shared exposures set aside, an individual by its two best photos;
``spatial_offline.py``'s matches) for each prior: small galleries (``small_gallery_offline.py``'s draws) and the
four identity folds. A prior is chosen on one set's small galleries, by the smaller of its two rates (right and
sure, unseen called new), and reported on the other set's, so that no figure is chosen on the draws it reports.

    python new_prior_offline.py [DRAWS [NYALA_MANIFEST]] > ../new-prior-offline.json   # after policy_offline.py extract
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exposure_offline
import policy_offline
import small_gallery_offline as sgo
import spatial_offline

PRIORS = (0.5, 0.4, 0.3, 0.2, 0.1)
SHIPPED = ("centre of both", 0.75)  # core.engine.framing's rule on the CPU preset


def folds(plain, aside) -> dict[str, dict[str, float]]:
    per_fold = exposure_offline.all_folds(aside, plain)
    return {s: {k: round(float(np.mean([f[s][k] for f in per_fold])), 3) for k in per_fold[0][s]} for s in per_fold[0]}


def main(draws: int) -> None:
    if len(sys.argv) > 2:  # the manifest the nyala pairs were matched from (their photos as WebP), when it differs
        policy_offline.SETS["nyala"] = sys.argv[2]
    table: dict = {}
    for name in policy_offline.SETS:
        plain, aside = spatial_offline.catalogues(name, *SHIPPED)
        table[name] = {}
        for prior in PRIORS:
            policy_offline.NEW_PRIOR = prior
            table[name][str(prior)] = {
                "small galleries": sgo.rates(sgo.pooled_outcomes(aside, draws, sgo.TWO_BEST, True, plain)),
                "folds": folds(plain, aside),
            }
            print(name, prior, json.dumps(table[name][str(prior)]["small galleries"]["rounds"]), file=sys.stderr)
    chosen = {}
    for chosen_on, reported_on in (("turtles", "nyala"), ("nyala", "turtles")):

        def worst_rate(prior: str, name: str) -> float:
            rates = table[name][prior]["small galleries"]["rounds"]
            return min(rates["known_sure"], rates["unseen_new"])

        best = max(table[chosen_on], key=lambda prior, n=chosen_on: worst_rate(prior, n))
        chosen[f"chosen on {chosen_on}"] = {"new_prior": float(best), f"{reported_on}": table[reported_on][best]}
    print(
        json.dumps(
            {"draws": draws, "search": "the CPU's rounds and exhaustive", "priors": table, "cross-set": chosen},
            indent=1,
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
