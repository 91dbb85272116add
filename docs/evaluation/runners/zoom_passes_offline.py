"""Offline (not part of the app): which of a zoomed search's two answers to keep, replayed from fold reports that
recorded both passes (``QueryOutcome.first_pass_*`` and, from 3 Dec night, ``zoomed_*``; before that a zoomed query's
``ranking`` is its zoomed pass). Rules: keep the zoomed answer always (the GPU default until 3 Dec night), never zoom,
keep the surer of the two (``ZoomConf.only_if_surer``), or zoom only below a lower gate on the first pass's best
probability. The rule is chosen as every "Unseen animals" rule is, by the summed top-1 and novelty AUROC of both
sets, with each nyala fold held out in turn (the turtles have one fold at the GPU defaults, always in the choice).

    python zoom_passes_offline.py OUT.json
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from core.evaluation.metrics import auroc

EVALUATION = Path("docs/evaluation")
NYALA = [EVALUATION / f"zoom-passes-gpu-nyala-fold{k}.json" for k in range(4)]
TURTLES = EVALUATION / "zoom-passes-gpu-turtles-fold0-half.json"
RULES = [("zoomed", 0.8), ("never", 0.0), ("surer", 0.8), ("gate", 0.5), ("gate", 0.3), ("gate", 0.2), ("gate", 0.1)]


def queries(path: Path) -> list[dict]:
    report = json.loads(path.read_text())
    return report["queries_detail"] if "queries_detail" in report else report["folds"][0]["queries_detail"]


def answer(query: dict, rule: str, gate: float) -> tuple[list[str], float]:
    """(ranking, best probability) that ``rule`` keeps for one query."""
    if query.get("first_pass_ranking") is None:  # the search did not zoom
        return query["ranking"], query["best_probability"]
    first = query["first_pass_ranking"], query["first_pass_probability"]
    # Reports from before 3 Dec night have no zoomed_*: their answer was the zoomed one.
    zoomed = query.get("zoomed_ranking", query["ranking"]), query.get("zoomed_probability", query["best_probability"])
    if rule == "zoomed":
        return zoomed
    if rule == "never":
        return first
    if rule == "surer":
        return zoomed if zoomed[1] >= first[1] else first
    return zoomed if first[1] < gate else first  # "gate": the zoom only where the first pass doubted more


def figures(fold: list[dict], rule: str, gate: float) -> dict[str, float]:
    ranks, known, novel = [], [], []
    for q in fold:
        ranking, p = answer(q, rule, gate)
        if q["novel"]:
            novel.append(p)
        else:
            ranks.append(ranking.index(q["identity"]) if q["identity"] in ranking else 99)
            known.append(p)
    r = np.array(ranks)
    return {
        "top1": float(np.mean(r < 1)),
        "top5": float(np.mean(r < 5)),
        "novelty_auroc": auroc(known, novel),
        "right_and_sure": float(np.mean((r < 1) & (np.array(known) >= 0.5))),
    }


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def choice_score(nyala: list[list[dict]], turtles: list[dict], rule: str, gate: float) -> float:
    n, t = mean([figures(f, rule, gate) for f in nyala]), figures(turtles, rule, gate)
    return n["top1"] + n["novelty_auroc"] + t["top1"] + t["novelty_auroc"]


def main(out: str) -> None:
    nyala, turtles = [queries(p) for p in NYALA], queries(TURTLES)
    name = lambda rule, gate: rule if rule != "gate" else f"gate {gate}"  # noqa: E731
    table = {
        name(r, g): {"nyala": mean([figures(f, r, g) for f in nyala]), "turtles": figures(turtles, r, g)}
        for r, g in RULES
    }
    held_out = []
    for k in range(len(nyala)):
        best = max(
            RULES,
            key=lambda rule_gate, k=k: choice_score([f for i, f in enumerate(nyala) if i != k], turtles, *rule_gate),
        )
        held_out.append({"held_out_nyala_fold": k, "chosen": name(*best), "held_out": figures(nyala[k], *best)})
    for rule, sets in table.items():
        print(f"{rule:10s}", "  ".join(f"{s} " + " ".join(f"{v:.3f}" for v in f.values()) for s, f in sets.items()))
    for h in held_out:
        print(h)
    Path(out).write_text(
        json.dumps(
            {
                "sources": [str(p) for p in [*NYALA, TURTLES]],
                "figures": "top1, top5, novelty_auroc, right_and_sure (right first at >= 0.5); nyala: mean of 4 folds",
                "rules": table,
                "held_out": held_out,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
