"""Offline (not part of the app): one fold's report from the parts that ``gpu_fold_h200.py`` ran with
``QUERY_PART=K/N`` (same gallery and prior, every N-th query each): the queries put together and the figures
recomputed from them as ``core.evaluation.protocol`` computes them (top-1/3/5 of known queries, novelty AUROC of the
best probability, new-individual decisions at 0.5).

    python merge_query_parts.py OUT.json PART.json PART.json ...
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from core.evaluation.metrics import auroc


def figures(queries: list[dict]) -> dict[str, float]:
    known = [q for q in queries if not q["novel"]]
    novel = [q for q in queries if q["novel"]]
    decisions = [(q["new_individual_probability"] >= 0.5) == q["novel"] for q in queries]
    ranks = np.array([q["ranking"].index(q["identity"]) if q["identity"] in q["ranking"] else 99 for q in known])
    return {
        "top1": float(np.mean(ranks < 1)),
        "top3": float(np.mean(ranks < 3)),
        "top5": float(np.mean(ranks < 5)),
        "novelty_auroc": auroc([q["best_probability"] for q in known], [q["best_probability"] for q in novel]),
        "new_decision_accuracy": float(np.mean(decisions)),
        "known_queries": len(known),
        "novel_queries": len(novel),
    }


def main(out: str, parts: list[str]) -> None:
    reports = [json.loads(Path(p).read_text()) for p in parts]
    folds = [r["folds"][0] for r in reports]
    queries = [q for f in folds for q in f["queries_detail"]]
    assert len({q["path"] for q in queries}) == len(queries), "the parts share queries"
    same = [{k: v for k, v in f["settings"].items() if k != "split"} for f in folds]  # the split counts its part
    assert len({json.dumps(s, sort_keys=True) for s in same}) == 1, "the parts ran other settings"
    merged = {
        "protocol": reports[0]["protocol"],
        "parts": parts,
        "search": figures(queries),
        "gallery_photos": folds[0]["gallery_photos"],
        "novel_identities": folds[0]["novel_identities"],
        "latency_median_s": float(np.median([q["seconds"] for q in queries])),
        "latency_p95_s": float(np.percentile([q["seconds"] for q in queries], 95)),
        "settings": same[0],
        "machine": folds[0]["machine"],
        "queries_detail": queries,
    }
    Path(out).write_text(json.dumps(merged, indent=1))
    print(json.dumps(merged["search"]), merged["latency_median_s"], merged["latency_p95_s"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
