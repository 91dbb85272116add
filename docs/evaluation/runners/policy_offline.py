"""Offline runner (not part of the app): choose the laptop's shortlist rounds on identity folds of both shared sets,
from matches computed once, without a device run per variant.

Inputs: ``docs/evaluation/pairs/SET-cpu-pairs.npz``, every ordered pair of a set matched once at the CPU preset
(``pairs_h200.py``: strong-match counts, the ``confident`` score), and each photo's ALIKED descriptors at the same
preset, extracted here. A search is replayed from these: the shortlist's votes as ``core.engine.shortlist`` computes
them, z-scores against a prior fitted on the fold's gallery, probabilities as ``core.engine.scoring`` computes them.
Exhaustive search is the same replay with every gallery photo verified.

    python policy_offline.py extract SET MANIFEST      # descriptors here on the CPU (about 10 min per set)
    python policy_offline.py choose                    # every round schedule on every fold; the choice per fold
                                                       # made on the other three, on both sets together

Approximations (why the deployed search is measured again on the device, ``cpu_rounds_h200.py``): the replay's
fold priors sample their partners with another generator than the engine's, and LightGlue ran at full depth.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from core.engine.scoring import Calibrator, identity_probabilities
from core.evaluation.metrics import auroc

HERE = Path(__file__).resolve().parent
PAIRS = HERE.parent / "pairs"
WORK = Path("/tmp/policy")
SETS = {"turtles": ".carry/t1600/manifest.csv", "nyala": ".carry/nyala/manifest.csv"}
ENCOUNTERS = {"turtles": "column", "nyala": "name"}
MIN_SPREAD = 2.0  # ScoringConf.min_spread
NEGATIVES, POSITIVES = 24, 4  # core.evaluation.folds.FOLD_PRIOR_PAIRS
GALLERY_DESCRIPTORS, QUERY_DESCRIPTORS = 512, 1024  # the CPU preset's bank
CPU_ROUNDS = ((2, 2), (4, 2), (6, 3))  # the shipped schedule (ShortlistConf's CPU preset), stopping at 0.5
SCHEDULES = {
    "2x2 (four fixed pairs)": ((2, 2),),
    "2x2, 4x2": ((2, 2), (4, 2)),
    "2x2, 4x3": ((2, 2), (4, 3)),
    "2x2, 4x2, 6x3": CPU_ROUNDS,
    "2x2, 4x3, 6x3": ((2, 2), (4, 3), (6, 3)),
    "2x2, 4x2, 6x2, 8x2": ((2, 2), (4, 2), (6, 2), (8, 2)),
    "2x2, 4x3, 6x4": ((2, 2), (4, 3), (6, 4)),
    "3x2, 6x3": ((3, 2), (6, 3)),
    "2x2, 4x2, 6x3, 8x3": ((2, 2), (4, 2), (6, 3), (8, 3)),
}
STOPS = (0.5, 0.7, 0.9)
PAIR_BUDGET = 14  # mean pairs a search may cost: about 5 s on two cores at 0.36 s a pair
NEW_PRIOR = 0.5  # ScoringConf.new_prior (new_prior_offline.py varies it)


def extract(name: str, manifest: Path) -> None:
    """Each photo's 1,024 strongest descriptors (by detector score), then the best similarity of every query
    descriptor in every photo's 512 strongest: ``S[query, descriptor, photo]``."""
    import torch

    from core.catalogue.manifest import read_manifest
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    engine = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cpu",
        cache_dir=WORK / "cache",
        turns=(0,),
        prior=False,
    )
    rows = read_manifest(manifest)
    desc = np.zeros((len(rows), QUERY_DESCRIPTORS, 128), np.float32)
    for i, row in enumerate(rows):
        f = engine.photo_features(manifest_photo(manifest.parent, row))
        keep = np.argsort(-f.scores, kind="stable")[:QUERY_DESCRIPTORS]
        desc[i, : len(keep)] = f.descriptors[keep]
    x = torch.from_numpy(desc)
    x = x / x.norm(dim=2, keepdim=True).clamp(min=1e-6)
    bank = x[:, :GALLERY_DESCRIPTORS].reshape(-1, x.shape[2])
    sims = np.zeros((len(rows), QUERY_DESCRIPTORS, len(rows)), np.float16)
    with torch.inference_mode():
        for i in range(len(rows)):
            sims[i] = (x[i] @ bank.T).reshape(QUERY_DESCRIPTORS, len(rows), -1).amax(dim=2).numpy()
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(WORK / f"{name}-S.npy", sims)


class Catalogue:
    def __init__(self, name: str) -> None:
        from core.catalogue.manifest import read_manifest

        self.rows = read_manifest(Path(SETS[name]))
        data = np.load(PAIRS / f"{name}-cpu-pairs.npz")
        assert list(data["paths"]) == [r.path for r in self.rows], "the pairs belong to another manifest"
        self.strong = data["strong"].astype(np.float64)
        self.ids = np.array([r.identity for r in self.rows])
        self.sides = np.array([r.side for r in self.rows])
        self.encounter = ENCOUNTERS[name]
        self.at = {r.path: i for i, r in enumerate(self.rows)}
        self.sims = np.load(WORK / f"{name}-S.npy", mmap_mode="r")


def best_photo(z: np.ndarray) -> float:
    """An individual's score from its verified photos' z-scores (highest first): its best photo's, as the engine."""
    return float(z[0])


def fold_prior(cat: Catalogue, gallery: list[int], seed: int = 0, individual_score=best_photo, sides: bool = True):
    """Pooled null and calibrator from 24 other-individual and 4 same-individual partners sampled per gallery photo,
    as ``core.evaluation.folds.fit_fold_prior`` and ``core.engine.index.fit_prior`` do: within each side's gallery
    (``core.evaluation.protocol.side_galleries``; ``sides=False``: every photo at once, the engine before 3 Dec);
    ``individual_score`` (default the best photo's) makes each individual's sample from its partners' z-scores."""
    from core.evaluation.protocol import side_galleries

    rng = np.random.default_rng(seed)
    rows = [cat.rows[j] for j in gallery]
    groups = side_galleries(rows).values() if sides else [range(len(gallery))]
    partners = []
    for at in groups:
        g = np.array([gallery[i] for i in at])
        ids = cat.ids[g]
        for a, j in enumerate(g):
            others, own = g[ids != ids[a]], g[(ids == ids[a]) & (g != j)]
            partners.append(
                (
                    j,
                    rng.choice(others, min(NEGATIVES, len(others)), replace=False),
                    rng.choice(own, min(POSITIVES, len(own)), replace=False),
                )
            )
    different = np.concatenate([cat.strong[j, neg] for j, neg, _ in partners])
    mean, spread = different.mean(), max(different.std(), MIN_SPREAD)
    same, other = [], []
    for j, neg, pos in partners:
        if len(pos):
            same.append(individual_score(np.sort((cat.strong[j, pos] - mean) / spread)[::-1]))
        per: dict[str, list[float]] = {}
        for k in neg:
            per.setdefault(cat.ids[k], []).append((cat.strong[j, k] - mean) / spread)
        other += [individual_score(np.sort(v)[::-1]) for v in per.values()]
    return mean, spread, Calibrator.fit(same, other)


def votes(cat: Catalogue, query: int, gallery: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Individuals by votes and votes per photo, as ``ShortlistIndex.votes`` computes them."""
    sims = np.asarray(cat.sims[query], dtype=np.float32)[:, gallery]
    names = sorted(set(cat.ids[gallery]))
    column = np.array([names.index(x) for x in cat.ids[gallery]])
    per = np.stack([sims[:, column == c].max(axis=1) for c in range(len(names))], axis=1)
    if len(names) > 1:
        order = np.argsort(-per, axis=1)
        winner, rows = order[:, 0], np.arange(len(per))
        best, second = per[rows, winner], np.maximum(per[rows, order[:, 1]], -1.0)
    else:
        winner, best, second = np.zeros(len(per), int), per[:, 0], np.full(len(per), -1.0)
    ident_votes = np.zeros(len(names))
    np.add.at(ident_votes, winner, best - second)
    bar = np.where(column[None, :] == winner[:, None], second[:, None], best[:, None])
    photo_votes = np.clip(sims - bar, 0, None).sum(axis=0)
    return sorted(names, key=lambda x: (-ident_votes[names.index(x)], x)), photo_votes


def replay(cat, query, gallery, prior, schedule, stop, voted=None, individual_score=best_photo):
    """(ranking, best probability, new probability, pairs) of one search; ``schedule`` None is exhaustive.

    ``voted``: (individuals in vote order, a score per gallery photo ordering each individual's photos) where the
    caller has them or orders photos otherwise; default the shortlist's :func:`votes`. ``individual_score``: an
    individual's score from its verified photos' z-scores, highest first (other rules: ``individual_score_offline.py``;
    ``prior``'s calibrator should be fitted with the same rule, as :func:`fold_figures` fits it)."""
    mean, spread, calibrator = prior

    def rank(verified):
        photos: dict[str, list[float]] = {}
        for p in verified:
            photos.setdefault(cat.ids[gallery[p]], []).append((cat.strong[query, gallery[p]] - mean) / spread)
        best = {k: individual_score(np.sort(v)[::-1]) for k, v in photos.items()}
        ranking = sorted(best, key=lambda k: (-best[k], k))
        probs, p_new = identity_probabilities(calibrator.log_likelihood_ratio([best[k] for k in ranking]), NEW_PRIOR)
        return ranking, probs, p_new

    if schedule is None:
        ranking, probs, p_new = rank(range(len(gallery)))
        return ranking, probs[0], p_new, len(gallery)
    order, photo_votes = voted if voted is not None else votes(cat, query, gallery)
    ids = cat.ids[gallery]
    by_votes = list(np.lexsort((np.arange(len(gallery)), -photo_votes)))
    verified: list[int] = []
    for individuals, photos in schedule:
        for ident in order[:individuals]:
            best_voted = [p for p in by_votes if ids[p] == ident][:photos]
            verified += [p for p in best_voted if p not in verified]
        ranking, probs, p_new = rank(verified)
        if probs[0] >= stop:
            break
    return ranking + [k for k in order if k not in ranking], probs[0], p_new, len(verified)


def searched(cat: Catalogue, row, gallery: list[int]) -> tuple[int, np.ndarray, bool]:
    """The query's index, the gallery photos it is compared with (its own side and unknown, as the app does) and
    whether its individual is new to them."""
    own = [j for j in gallery if row.side in ("", "unknown") or cat.sides[j] in (row.side, "unknown")]
    g = np.array(own or gallery)
    return cat.at[row.path], g, row.identity not in set(cat.ids[g])


def fold_figures(
    cat: Catalogue, fold: int, policies: dict, individual_score=best_photo, sides: bool = True, prior_of=None
) -> dict[str, dict[str, float]]:
    """Each policy, ``(schedule, stop)``, replayed on one fold; ``individual_score`` as in :func:`replay`, the fold
    prior's calibrator fitted with the same rule (``sides`` as in :func:`fold_prior`) on ``prior_of``'s scores
    (default ``cat``'s: a catalogue whose pairs are scored as the gallery's sampled pairs are)."""
    from core.evaluation.protocol import protocol_split

    split = protocol_split(cat.rows, fold, 4, cat.encounter)
    gallery = [cat.at[r.path] for r in split.gallery]
    prior = fold_prior(prior_of or cat, gallery, individual_score=individual_score, sides=sides)
    tallies = {label: {"rank": [], "known": [], "novel": [], "pairs": [], "decided": []} for label in policies}
    for row in split.queries:
        q, g, novel = searched(cat, row, gallery)
        for label, (schedule, stop) in policies.items():
            ranking, best, p_new, pairs = replay(cat, q, g, prior, schedule, stop, None, individual_score)
            t = tallies[label]
            t["pairs"].append(pairs)
            t["decided"].append((p_new >= 0.5) == novel)
            if novel:
                t["novel"].append(best)
            else:
                t["known"].append(best)
                t["rank"].append(ranking.index(row.identity) if row.identity in ranking else len(ranking))
    out = {}
    for label, t in tallies.items():
        ranks = np.array(t["rank"])
        out[label] = {
            "top1": float(np.mean(ranks < 1)),
            "top5": float(np.mean(ranks < 5)),
            "novelty_auroc": auroc(t["known"], t["novel"]),
            "new_decision_accuracy": float(np.mean(t["decided"])),
            "known_sure": float(np.mean(np.array(t["known"])[ranks < 1] >= 0.5) * np.mean(ranks < 1)),
            "pairs_mean": float(np.mean(t["pairs"])),
        }
    return out


def choose() -> None:
    policies = {"exhaustive": (None, 1.0)}
    policies |= {f"{name} stop {stop}": (s, stop) for name, s in SCHEDULES.items() for stop in STOPS}
    figures = {name: [fold_figures(Catalogue(name), k, policies) for k in range(4)] for name in SETS}

    def mean(name, label, folds, key):
        return float(np.mean([figures[name][k][label][key] for k in folds]))

    held_out = []
    for held in range(4):
        train = [k for k in range(4) if k != held]
        affordable = [
            p
            for p in policies
            if p != "exhaustive" and max(mean(n, p, train, "pairs_mean") for n in SETS) <= PAIR_BUDGET
        ]
        chosen = max(affordable, key=lambda p: sum(mean(n, p, train, "top1") for n in SETS))
        held_out.append({"fold": held, "chosen": chosen, **{n: figures[n][held][chosen] for n in SETS}})
    summary = {
        label: {
            n: {k: round(mean(n, label, range(4), k), 3) for k in ("top1", "top5", "novelty_auroc", "pairs_mean")}
            for n in SETS
        }
        for label in policies
    }
    print(json.dumps({"pair_budget": PAIR_BUDGET, "summary": summary, "held_out": held_out}, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "extract":
        extract(sys.argv[2], Path(sys.argv[3]))
    else:
        choose()
