"""Offline runner (not part of the app): a new project's small gallery (4 individuals x 4 photos, their other
encounters as known queries, 4 unseen individuals' photos as new ones; ``core.evaluation.small_gallery``'s draws)
replayed on the all-pairs matches of ``policy_offline.py``, for an individual scored by its best photo and by the
mean of its two best, with the CPU's rounds and with exhaustive search. Each draw's prior is fitted on the
individuals it does not use, with the same rule, on each side's gallery as the engine fits it (``sides``: the
mean of the two best with the prior fitted per side and on every photo at once, the engine before 3 Dec).

    python small_gallery_offline.py [DRAWS] > small-galleries-individual-score.json   # after policy_offline.py extract
    python small_gallery_offline.py sides [DRAWS] > small-galleries-prior-sides.json
    python small_gallery_offline.py exposure [DRAWS] > small-galleries-exposure.json   # shared exposures set aside
                                                                                  # (exposure_offline.py's matches)
"""

import itertools
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_offline

from core.engine.scoring import individual_score

TWO_BEST = partial(individual_score, photos=2)
RULES = {"best photo": (policy_offline.best_photo, True), "mean of the two best": (TWO_BEST, True)}
PRIOR_SIDES = {"prior per side": (TWO_BEST, True), "prior on every photo": (TWO_BEST, False)}
SEARCHES = {"rounds": (policy_offline.CPU_ROUNDS, 0.5), "exhaustive": (None, 1.0)}


def draw_outcomes(cat, draw: int, rule, sides: bool = True, prior_of=None) -> dict[str, dict[str, list]]:
    from core.evaluation.small_gallery import small_gallery_split

    split = small_gallery_split(cat.rows, draw, encounters=cat.encounter)
    gallery = [cat.at[r.path] for r in split.gallery]
    used = {r.identity for r in split.gallery} | set(split.novel)
    rest = [i for i, r in enumerate(cat.rows) if r.identity not in used]
    prior = policy_offline.fold_prior(prior_of or cat, rest, individual_score=rule, sides=sides)
    out = {s: {"known_first": [], "known_sure": [], "unseen_new": []} for s in SEARCHES}
    for row in split.queries:
        q, g, novel = policy_offline.searched(cat, row, gallery)
        for search, (schedule, stop) in SEARCHES.items():
            ranking, best, p_new, _ = policy_offline.replay(cat, q, g, prior, schedule, stop, None, rule)
            if novel:
                out[search]["unseen_new"].append(p_new >= 0.5)
            else:
                first = ranking[0] == row.identity
                out[search]["known_first"].append(first)
                out[search]["known_sure"].append(first and best >= 0.5)
    return out


def pooled_outcomes(cat, draws: int, rule, sides: bool = True, prior_of=None) -> dict[str, dict[str, list]]:
    """Every draw's :func:`draw_outcomes` put together, per search."""
    pooled: dict[str, dict[str, list]] = {s: {"known_first": [], "known_sure": [], "unseen_new": []} for s in SEARCHES}
    for draw in range(draws):
        for s, lists in draw_outcomes(cat, draw, rule, sides, prior_of).items():
            for k, v in lists.items():
                pooled[s][k] += v
    return pooled


def rates(pooled: dict[str, dict[str, list]]) -> dict[str, dict[str, float]]:
    """Each search's share of known queries right first, right and sure, and of unseen ones called new."""
    return {s: {k: round(float(np.mean(v)), 3) for k, v in lists.items()} for s, lists in pooled.items()}


def main(draws: int, variants: dict, exposure: bool = False) -> None:
    """``variants``: label -> (rule, sides); ``exposure``: each variant on ``exposure_offline.py``'s matches, without
    and with shared exposures set aside in searches (the prior's pairs as matched)."""
    report = {"draws": draws, "sets": {}}
    for name in policy_offline.SETS:
        plain = policy_offline.Catalogue(name)
        cats = {"": (plain, None)}
        if exposure:
            import exposure_offline

            plain.strong = exposure_offline.scores(name, None)
            aside = policy_offline.Catalogue(name)
            aside.strong = exposure_offline.scores(name, (1, 0.5, True))  # core.engine.exposure.ExposureConf
            cats = {", without": (plain, None), ", shared exposures set aside": (aside, plain)}
        per_rule = {}
        for (label, (rule, sides)), (suffix, (cat, prior_of)) in itertools.product(variants.items(), cats.items()):
            label += suffix
            pooled = pooled_outcomes(cat, draws, rule, sides, prior_of)
            per_rule[label] = {
                s: r | {"known": len(pooled[s]["known_first"]), "unseen": len(pooled[s]["unseen_new"])}
                for s, r in rates(pooled).items()
            }
        report["sets"][name] = per_rule
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["exposure"]:
        main(int(sys.argv[2]) if len(sys.argv) > 2 else 30, {"mean of the two best": (TWO_BEST, True)}, exposure=True)
    elif sys.argv[1:2] == ["sides"]:
        main(int(sys.argv[2]) if len(sys.argv) > 2 else 30, PRIOR_SIDES)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 30, RULES)
