"""Device runner (not part of the app): the prior for the GPU defaults, one catalogue per device call.

Why two steps: the device's upload is capped at 64 MiB, so the turtle photos at 1600 px and the nyala photos
travel in separate calls. ``collect`` builds one catalogue's index with sampled pairs exactly as
``python -m core prior`` does (GPU defaults: 1600 px, 2,048 keypoints, four turns; 24 other-individual and 4
same-individual partners per photo) and saves the pairs' confidences; ``fit`` (here, on the CPU) pools the
saved catalogues with :func:`core.engine.index.fit_prior`, as the command would in one process.

    python prior_h200.py collect MANIFEST NAME            # on the device; writes $OUT/NAME-pairs.npz
    python prior_h200.py fit OUT.json A-pairs.npz B-pairs.npz

``fit`` scores individuals by the engine's rule (``ScoringConf.individual_photos``, the mean of the two best photos
since 3 Dec 2026), whatever rule the pairs were collected under: the pairs themselves do not depend on it.
"""

import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.getcwd())

NEGATIVES, POSITIVES = 24, 4


def _pack(groups: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    keys = sorted(groups)
    counts = [len(groups[k]) for k in keys]
    arrays = [a for k in keys for a in groups[k]]
    lengths = [len(a) for a in arrays]
    values = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros(0, np.float32)
    return {"keys": np.array(keys), "counts": np.array(counts), "lengths": np.array(lengths), "values": values}


def _unpack(data, prefix: str) -> dict[str, list[np.ndarray]]:
    keys, counts, lengths = data[f"{prefix}_keys"], data[f"{prefix}_counts"], data[f"{prefix}_lengths"]
    values = data[f"{prefix}_values"]
    out, at, pair = {}, 0, 0
    for key, count in zip(keys, counts, strict=True):
        arrays = []
        for _ in range(int(count)):
            n = int(lengths[pair])
            arrays.append(values[at : at + n])
            at += n
            pair += 1
        out[str(key)] = arrays
    return out


def collect(manifest: Path, name: str) -> None:
    import core.engine.weights as w
    from core.engine.scoring import ScoringConf
    from core.engine.search import Engine

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(exist_ok=True)
    engine = Engine(
        "aliked",
        scoring=ScoringConf(null_negatives=NEGATIVES, null_positives=POSITIVES),
        device=os.environ.get("RUNNER_DEVICE", "cuda"),
        cache_dir=Path("/tmp/prior-cache"),
        prior=False,
        frame=frame_rule(os.environ.get("FRAME", "preset")),
    )
    print("signature", engine.signature, "conf", engine.extractor.conf, "turns", engine.turns, flush=True)
    collect_pairs(engine, manifest, name, out)


def collect_pairs(engine, manifest: Path, name: str, out: Path) -> None:
    """Build ``manifest``'s index with ``engine``'s sampled pairs and save them as ``out/NAME-pairs.npz`` for
    :func:`fit` (``engine`` samples NEGATIVES + POSITIVES partners per photo and has no prior)."""
    from core.catalogue.manifest import read_manifest
    from core.evaluation.protocol import manifest_photo, side_indexes

    rows = read_manifest(manifest)
    photos = [manifest_photo(manifest.parent, r) for r in rows]
    t0 = time.time()

    def tick(side: str, done: int, total: int) -> None:
        if done == total or done % 2000 == 0:
            print(f"[{time.time() - t0:6.1f}s] {side}: pairs {done}/{total}", flush=True)

    # One index per side, as the app searches and ``python -m core prior`` fits (a photo of unknown side sits in
    # every side's gallery: its partners from the first are kept).
    indexes = side_indexes(engine, rows, photos, tick)
    merged: dict[str, dict] = {"negatives": {}, "positives": {}, "negative_identities": {}}
    for index in reversed(indexes):
        for field in merged:
            merged[field] |= getattr(index, field)
    identities = {k: list(v) for k, v in merged["negative_identities"].items()}
    negatives, positives = _pack(merged["negatives"]), _pack(merged["positives"])
    np.savez_compressed(
        out / f"{name}-pairs.npz",
        **{f"neg_{k}": v for k, v in negatives.items()},
        **{f"pos_{k}": v for k, v in positives.items()},
        meta=np.frombuffer(
            json.dumps(
                {
                    "signature": engine.signature,
                    "scoring": dataclasses.asdict(engine.scoring),
                    "negative_identities": identities,
                    "catalogue": {
                        "name": name,
                        "photos": len(photos),
                        "identities": len({r.identity for r in rows}),
                        "galleries": len(indexes),
                    },
                    "seconds": time.time() - t0,
                }
            ).encode(),
            np.uint8,
        ),
    )
    print(f"saved {name}: {len(photos)} photos, {engine.signature}, in {time.time() - t0:.0f} s", flush=True)


PHOTOS = {  # how the shipped priors' pairs were made, recorded in their source
    "gpu": "turtles re-encoded as WebP at 1600 px (quality 68), nyala as shipped; pairs matched on one H200 in four "
    "turns, only matches within 0.75 of both frames' centres counted (FRAME=0.75 docs/evaluation/runners/prior_h200.py "
    "collect; pairs in docs/evaluation/pairs/*-gpu-frame-pairs.npz; then prior_h200.py fit)",
    "cpu": "turtles re-encoded as WebP at 1600 px (quality 68) and read at 1024 px, nyala as shipped; pairs matched "
    "on a 2-core CPU one at a time with LightGlue's early stopping, as the laptop matches "
    "(docs/evaluation/runners/cpu_rounds_h200.py SET collect with RUNNER_DEVICE=cpu; pairs in "
    "docs/evaluation/pairs/*-cpu-prior-pairs.npz; then prior_h200.py fit)",
}


def fit(target: Path, saved: list[Path]) -> None:
    from core.engine.index import GalleryIndex, fit_prior
    from core.engine.scoring import ScoringConf
    from core.evaluation.protocol import METHODS

    photos = ScoringConf().individual_photos
    indexes, catalogues, signatures = [], [], set()
    for path in saved:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            negatives, positives = _unpack(data, "neg"), _unpack(data, "pos")
        # core.engine.prior.signature names the rule after "+best-"; pairs collected before it had none
        sig = meta["signature"]
        signatures.add(re.sub(r"\+best-\d+", f"+best-{photos}", sig) if "+best-" in sig else f"{sig}+best-{photos}")
        catalogue = meta["catalogue"]  # named as collected ("turtles-gpu"): the prior records the set's name
        catalogues.append(dict(catalogue, name=catalogue["name"].split("-")[0]))
        scoring = ScoringConf(**{**meta["scoring"], "individual_photos": photos})
        indexes.append(GalleryIndex([], [], negatives, positives, scoring, meta["negative_identities"]))
    (sig,) = signatures
    source = {
        "catalogues": catalogues,
        "split": "all",
        "negatives_per_photo": NEGATIVES,
        "positives_per_photo": POSITIVES,
        "galleries": "one per side where a catalogue has sides (nyala left and right flanks), as the app searches",
        "photos": PHOTOS["cpu" if sig.split("+")[2] == "turns-0" else "gpu"],
        "individual_score": f"mean z-score of an individual's best {photos} photos",
    }
    if "+frame-" in sig:
        inner = sig.split("+frame-")[1]
        source["matches"] = f"only those within box distance {inner} of both frames' centres (core.engine.framing)"
    prior = fit_prior(indexes, METHODS, sig, source)
    prior.save(target)
    for method, p in prior.methods.items():
        print(f"{method:<12} null {p.null_mean:.3f} ± {p.null_std:.3f}; slope {p.slope:.3f} offset {p.offset:.3f}")
    print("prior for", sig, "written to", target)


def frame_rule(tag: str):
    """FRAME: "preset" (the engine's own rule), "none" (every match counts), or a rule's tag ("0.75-query")."""
    from core.engine.framing import FrameConf

    return {"preset": "preset", "none": None}[tag] if tag in ("preset", "none") else FrameConf.from_tag(tag)


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(Path(sys.argv[2]), sys.argv[3])
    else:
        fit(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
