"""Offline runner (not part of the app): should only the central keypoints vote in the CPU's shortlist? The frame
rule counts only strong matches within box distance 0.75 of both centres (``core.engine.framing``); the shortlist's
votes still come from every keypoint, so the neighbours and the drinking place at a nyala photo's edges vote for
whichever individual drank there too. Replayed under the identity folds of ``policy_offline.py`` on the frame
rule's pair scores (``spatial_offline.py``'s histograms, shared exposures set aside, fold priors on the pairs as
matched, an individual by its two best photos): the CPU's rounds with votes from every keypoint against votes from
central keypoints only, in the query and the bank alike or in the query alone (each strongest first); for each
held-out fold the one with the best summed top-1 and AUROC of both sets on the other three; exhaustive search,
which does not vote, alongside.

    python central_votes_offline.py extract SET [query]   # central-only similarities here on the CPU (4-11 min)
    python central_votes_offline.py > ../central-votes-offline.json
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exposure_offline
import policy_offline
import spatial_offline

from core.engine.framing import CENTRED, central


def extract(name: str, sides: str = "both") -> None:
    """``policy_offline.extract``'s ``S[query, descriptor, photo]`` from central keypoints only: a query's strongest
    central descriptors against each photo's strongest central ones (padding never the best); ``sides="query"``:
    against each photo's strongest descriptors wherever they lie, as banked without the rule."""
    import torch

    from core.catalogue.manifest import read_manifest
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    engine = Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cpu",
        cache_dir=policy_offline.WORK / "cache",
        turns=(0,),
        prior=False,
    )
    manifest = Path(policy_offline.SETS[name])
    rows = read_manifest(manifest)
    n_query, n_bank = policy_offline.QUERY_DESCRIPTORS, policy_offline.GALLERY_DESCRIPTORS
    desc = np.zeros((len(rows), n_query, 128), np.float32)
    valid = np.zeros((len(rows), n_query), bool)
    banked = np.zeros((len(rows), n_bank, 128), np.float32)
    for i, row in enumerate(rows):
        f = engine.photo_features(manifest_photo(manifest.parent, row))
        order = np.argsort(-f.scores, kind="stable")
        keep = order[central(f, CENTRED)[order]][:n_query]
        desc[i, : len(keep)], valid[i, : len(keep)] = f.descriptors[keep], True
        banked[i, : min(n_bank, len(f))] = (f.descriptors[keep[:n_bank]] if sides == "both" else f.descriptors[order])[
            :n_bank
        ]
    x = torch.from_numpy(desc)
    x = x / x.norm(dim=2, keepdim=True).clamp(min=1e-6)
    bank = torch.from_numpy(banked)
    bank = (bank / bank.norm(dim=2, keepdim=True).clamp(min=1e-6)).reshape(-1, x.shape[2])
    padding = torch.from_numpy(~valid[:, :n_bank] if sides == "both" else np.zeros((len(rows), n_bank), bool))
    padding = padding.reshape(1, len(rows), n_bank)
    sims = np.zeros((len(rows), n_query, len(rows)), np.float16)
    with torch.inference_mode():
        for i in range(len(rows)):
            s = (x[i] @ bank.T).reshape(n_query, len(rows), n_bank).masked_fill(padding, -1.0).amax(dim=2)
            s[~torch.from_numpy(valid[i])] = 0.0  # a padded query row votes for no one
            sims[i] = s.numpy()
    np.save(policy_offline.WORK / f"{name}-S-central{'' if sides == 'both' else '-' + sides}.npy", sims)


def main() -> None:
    figures: dict[str, dict[str, list]] = {}
    for name in policy_offline.SETS:
        plain, aside = spatial_offline.catalogues(name, "centre of both", CENTRED.inner)
        figures[name] = {}
        for label, sims in (
            ("every keypoint votes", aside.sims),
            ("central keypoints vote, banked", np.load(policy_offline.WORK / f"{name}-S-central.npy", mmap_mode="r")),
            (
                "the query's central keypoints vote",
                np.load(policy_offline.WORK / f"{name}-S-central-query.npy", mmap_mode="r"),
            ),
        ):
            aside.sims = sims
            figures[name][label] = exposure_offline.all_folds(aside, plain)
            print(name, label, file=sys.stderr, flush=True)
    print(json.dumps(exposure_offline.held_out_report(figures), indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["extract"]:
        extract(*sys.argv[2:4])
    else:
        main()
