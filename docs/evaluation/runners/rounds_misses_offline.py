"""Offline runner (not part of the app): where the CPU's shortlist in rounds loses against exhaustive search, and
whether another order of an individual's photos would win it back. Replays searches from the matches and
descriptors of ``policy_offline.py`` (run its ``extract`` first), on the same identity folds and fold priors.

    python rounds_misses_offline.py misses SET             # queries exhaustive search gets right and the rounds not:
                                                           # where the right individual stood in the votes
    python rounds_misses_offline.py orders SET KIND,...    # the rounds with photos ordered by KIND: votes (the app's),
                                                           # countT (descriptors above similarity T), bgP (above each
                                                           # descriptor's P-th percentile over the gallery), topK

Writes ``/tmp/policy/SET-misses.json`` or ``/tmp/policy/SET-orders.json``.
"""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_offline import CPU_ROUNDS, WORK, Catalogue, fold_prior, replay, votes

from core.evaluation.metrics import auroc
from core.evaluation.protocol import protocol_split

SCHEDULES = {
    "2x2,4x2,6x3": CPU_ROUNDS,
    "2x2,4x3": ((2, 2), (4, 3)),
    "2x2,4x2,6x2": ((2, 2), (4, 2), (6, 2)),
    "2x2,3x4,6x3": ((2, 2), (3, 4), (6, 3)),
}


def fold_queries(cat: Catalogue, k: int):
    """(query, its own-side gallery, novel?, fold prior) of fold ``k``, as the protocol compares them."""
    split = protocol_split(cat.rows, k, 4, cat.encounter)
    gallery = [cat.at[r.path] for r in split.gallery]
    prior = fold_prior(cat, gallery)
    for row in split.queries:
        own = [j for j in gallery if row.side in ("", "unknown") or cat.sides[j] in (row.side, "unknown")]
        g = np.array(own or gallery)
        yield row, cat.at[row.path], g, row.identity not in set(cat.ids[g]), prior


def misses(name: str) -> dict:
    cat = Catalogue(name)
    kinds, detail = Counter(), []
    for k in range(4):
        for row, q, g, novel, prior in fold_queries(cat, k):
            if novel:
                continue
            order, photo_votes = voted = votes(cat, q, g)
            exhaustive = replay(cat, q, g, prior, None, 1.0)[0]
            rounds, best, _, pairs = replay(cat, q, g, prior, CPU_ROUNDS, 0.5, voted)
            if exhaustive[0] == row.identity and rounds[0] != row.identity:
                place = order.index(row.identity)
                own = [p for p in np.lexsort((np.arange(len(g)), -photo_votes)) if cat.ids[g][p] == row.identity]
                best_photo = int(np.argmax(cat.strong[q, g[own]]))  # its exhaustive best, by place in the votes
                kinds["right individual beyond the six best voted" if place >= 6 else "among the six best voted"] += 1
                detail.append(
                    {
                        "fold": k,
                        "query": row.path,
                        "individual_place_in_votes": place,
                        "best_photo_place_among_its_photos": best_photo,
                        "its_photos": len(own),
                        "pairs": pairs,
                        "best_probability": round(float(best), 3),
                    }
                )
            elif exhaustive[0] != row.identity and rounds[0] == row.identity:
                kinds["rounds right, exhaustive wrong"] += 1
    return {"set": name, "counts": dict(kinds), "lost": detail}


def photo_scores(cat: Catalogue, q: int, g: np.ndarray, kind: str) -> np.ndarray:
    if kind == "votes":
        return votes(cat, q, g)[1]
    sims = np.asarray(cat.sims[q], dtype=np.float32)[:, g]  # query descriptor x photo
    if kind.startswith("count"):
        return (sims > float(kind[5:])).sum(0).astype(float)
    if kind.startswith("bg"):
        return np.clip(sims - np.percentile(sims, float(kind[2:]), axis=1, keepdims=True), 0, None).sum(0)
    if kind.startswith("top"):
        return -np.sort(-sims, axis=0)[: int(kind[3:])].sum(0)
    raise ValueError(kind)


def orders(name: str, kinds: list[str]) -> dict:
    cat = Catalogue(name)
    labels = ["exhaustive"] + [f"{kind} {s}" for kind in kinds for s in SCHEDULES]
    folds = []
    for k in range(4):
        t = {label: {"rank": [], "known": [], "novel": [], "pairs": []} for label in labels}
        for row, q, g, novel, prior in fold_queries(cat, k):
            order = votes(cat, q, g)[0]
            outcomes = {"exhaustive": replay(cat, q, g, prior, None, 1.0)}
            for kind in kinds:
                voted = (order, photo_scores(cat, q, g, kind))
                for s, schedule in SCHEDULES.items():
                    outcomes[f"{kind} {s}"] = replay(cat, q, g, prior, schedule, 0.5, voted)
            for label, (ranking, best, _, pairs) in outcomes.items():
                t[label]["pairs"].append(pairs)
                if novel:
                    t[label]["novel"].append(best)
                else:
                    t[label]["known"].append(best)
                    t[label]["rank"].append(ranking.index(row.identity) if row.identity in ranking else len(ranking))
        folds.append(
            {
                label: {
                    "top1": float(np.mean(np.array(x["rank"]) < 1)),
                    "top5": float(np.mean(np.array(x["rank"]) < 5)),
                    "novelty_auroc": auroc(x["known"], x["novel"]),
                    "pairs_mean": float(np.mean(x["pairs"])),
                }
                for label, x in t.items()
            }
        )
    mean = {
        label: {m: round(float(np.mean([f[label][m] for f in folds])), 3) for m in folds[0][label]} for label in labels
    }
    return {"set": name, "mean_over_folds": mean, "folds": folds}


if __name__ == "__main__":
    what, name = sys.argv[1], sys.argv[2]
    out = misses(name) if what == "misses" else orders(name, sys.argv[3].split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}-{what}.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps(out.get("counts") or out["mean_over_folds"], indent=1))
