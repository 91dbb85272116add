"""Offline runner (not part of the app): does weighting a pair's strong matches by where they lie in the two frames
(the centre, where a crop puts its animal, against the edges, where other animals and the background sit) rank
better under identity folds? Replays ``spatial_pairs_h200.py``'s histograms of both sets: each weighting's matches
scored as the engine scores them (shared exposures set aside in searches, the fold prior on the pairs as matched,
an individual by its two best photos), with exhaustive search and the CPU's rounds; for each held-out fold the
weighting with the best summed top-1 and novelty AUROC of both sets on the other three folds.

    python spatial_offline.py > ../spatial-offline.json      # after spatial_pairs_h200.py, policy_offline.py extract
    python spatial_offline.py small [DRAWS] > ../small-galleries-spatial.json   # 4 x 4 galleries, without and with
                                                                              # the held-out folds' choice
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exposure_offline
import policy_offline

WEIGHTINGS = (
    [("none", 0.0)]
    + [("centre of both", a) for a in (0.625, 0.75, 0.875)]
    + [("centre of the gallery photo", a) for a in (0.75, 0.875)]
    + [("centre of the query photo", a) for a in (0.75, 0.875)]
    + [("linear, both", a) for a in (0.5, 0.8)]
    + [("linear, gallery photo", a) for a in (0.5, 0.8)]
)


def weights(kind: str, a: float, bins: int) -> np.ndarray:
    """A weight per (query ring, gallery ring): ``centre``: 1 inside box distance ``a``, else 0; ``linear``: 1 - a r."""
    r = (np.arange(bins) + 0.5) / bins
    rq, rg = np.meshgrid(r, r, indexing="ij")
    return {
        "none": np.ones((bins, bins)),
        "centre of both": ((rq < a) & (rg < a)).astype(float),
        "centre of the gallery photo": (rg < a) * np.ones_like(rq),
        "centre of the query photo": (rq < a) * np.ones_like(rg),
        "linear, both": np.clip(1 - a * rq, 0, 1) * np.clip(1 - a * rg, 0, 1),
        "linear, gallery photo": np.clip(1 - a * rg, 0, 1) * np.ones_like(rq),
    }[kind]


def catalogues(name: str, kind: str, a: float) -> tuple[policy_offline.Catalogue, policy_offline.Catalogue]:
    """One set's pairs weighted by ``kind``/``a``: as matched (the prior's pairs) and as searches score them
    (shared exposures set aside)."""
    data = np.load(policy_offline.PAIRS / f"{name}-spatial-pairs.npz")
    strong, shared = data["strong"].astype(np.float64), data["shared"].astype(np.float64)
    plain, aside = policy_offline.Catalogue(name), policy_offline.Catalogue(name)
    assert [Path(p).stem for p in data["paths"]] == [Path(r.path).stem for r in plain.rows], "another manifest"
    w = weights(kind, a, int(data["bins"]))
    plain.strong = np.einsum("ijab,ab->ij", strong, w)
    aside.strong = np.einsum("ijab,ab->ij", strong - shared, w)
    return plain, aside


def small(draws: int) -> None:
    """Small galleries (``small_gallery_offline.py``'s draws and outcomes), without and with the chosen weighting."""
    import small_gallery_offline as sgo

    report: dict = {"draws": draws, "sets": {}}
    for name in policy_offline.SETS:
        report["sets"][name] = {}
        for kind, a in (("none", 0.0), ("centre of both", 0.75)):
            plain, aside = catalogues(name, kind, a)
            pooled = sgo.pooled_outcomes(aside, draws, sgo.TWO_BEST, True, plain)
            report["sets"][name][kind if kind == "none" else f"{kind} {a:g}"] = sgo.rates(pooled)
    print(json.dumps(report, indent=1))


def main() -> None:
    figures: dict[str, dict[str, list]] = {}
    for name in policy_offline.SETS:
        figures[name] = {}
        for kind, a in WEIGHTINGS:
            plain, aside = catalogues(name, kind, a)
            label = kind if kind == "none" else f"{kind} {a:g}"
            figures[name][label] = exposure_offline.all_folds(aside, plain)
            print(name, label, file=sys.stderr, flush=True)
    print(json.dumps(exposure_offline.held_out_report(figures), indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["small"]:
        small(int(sys.argv[2]) if len(sys.argv) > 2 else 30)
    else:
        main()
