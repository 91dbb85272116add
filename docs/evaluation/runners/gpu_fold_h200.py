"""Device runner (not part of the app): one identity fold of one shared set at the GPU defaults (ALIKED 1600 px /
2,048 keypoints, four turns, LightGlue at full depth, zoom to the animal, exhaustive below 200 photos as the app
searches: the protocol's separate exhaustive pass is skipped, the search already is one), with a
fold prior fitted on that fold's gallery. A few folds per call, each in its own process side by side on the one
GPU, because the four-turn matching of a whole set under four folds does not fit one device call.

    python gpu_fold_h200.py MANIFEST ENCOUNTERS FOLDS NAME    # FOLDS "0" or "1,2,3"; writes $OUT/NAME-gpu-fold-K.json

Environment: FRAME (prior_h200.frame_rule), ZOOMED_FRAME=none (the rule in the first pass only), QUERY_PART=K/N.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prior_h200 import frame_rule


def main(manifest: Path, encounters: str, fold: int, name: str) -> None:
    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.localise import ZoomConf
    from core.engine.search import Engine
    from core.evaluation.folds import evaluate_folds

    part = os.environ.get("QUERY_PART")  # "K/N": only every N-th query from the K-th, for folds too long for one call
    if part:
        import core.evaluation.folds as folds_module

        k, n = (int(v) for v in part.split("/"))
        split_all = folds_module.protocol_split

        def split_part(*args, **kwargs):
            split = split_all(*args, **kwargs)
            return dataclasses.replace(split, queries=split.queries[k::n])

        folds_module.protocol_split = split_part
        name = f"{name}-part{k}of{n}"
    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    engine_class = _first_pass_frame(Engine) if os.environ.get("ZOOMED_FRAME") == "none" else Engine
    engine = engine_class(
        "aliked",
        {"max_side": 1600, "max_keypoints": 2048},
        device="cuda",
        cache_dir=Path("/tmp/cache"),
        zoom=ZoomConf(),
        frame=frame_rule(os.environ.get("FRAME", "preset")),
    )
    report = evaluate_folds(
        read_manifest(manifest),
        manifest.parent,
        engine,
        ("confident",),
        encounters=encounters,
        fold_prior=True,
        only=[fold],
        exhaustive=False,
    )
    print(report.table(), flush=True)
    out = Path(os.environ.get("OUT", "/tmp/out"))
    (out / f"{name}-gpu-fold-{fold}.json").write_text(json.dumps(report.to_dict(), indent=1, default=str))


def _first_pass_frame(engine_class):
    """ZOOMED_FRAME=none: the frame rule holds in a search's first pass only; the zoomed pass, whose frame the zoom
    cut around the first pass's matches, counts every match (an experiment, not the app's behaviour)."""

    class FirstPassFrame(engine_class):
        def search_photo(self, *args, **kwargs):
            self.passes = 0
            return super().search_photo(*args, **kwargs)

        def search(self, *args, **kwargs):
            rule, self.passes = self.frame, getattr(self, "passes", 0) + 1
            if self.passes > 1:
                self.frame = None
            try:
                return super().search(*args, **kwargs)
            finally:
                self.frame = rule

    return FirstPassFrame


if __name__ == "__main__":
    folds = sys.argv[3].split(",")
    if len(folds) == 1:
        main(Path(sys.argv[1]), sys.argv[2], int(folds[0]), sys.argv[4])
    else:
        runs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:3], k, sys.argv[4]]) for k in folds]
        sys.exit(max(r.wait() for r in runs))
