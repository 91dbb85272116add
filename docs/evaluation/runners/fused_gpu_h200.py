"""Device runner (not part of the app): LightGlue's cross-attention on CUDA through PyTorch's fused attention
(as the CPU already runs it) against kornia's own path, which builds every pair's full similarity matrix: pairs per
second at the GPU defaults (1,600 px, 2,048 keypoints, fp16, batches of 128) and the largest confidence difference.

    python fused_gpu_h200.py MANIFEST      # prints JSON; writes $OUT/fused-gpu.json
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
import numpy as np
import torch


def main(manifest: Path) -> None:
    import core.engine.weights as w
    from core.catalogue.manifest import read_manifest
    from core.engine.matchers import lightglue as lg
    from core.engine.search import Engine
    from core.evaluation.protocol import manifest_photo

    w.weights_dir = lambda override=None: Path(override) if override is not None else Path(".carry/weights")
    rows = read_manifest(manifest)[::23][:16]
    report: dict = {"device": torch.cuda.get_device_name(0), "photos": len(rows)}
    for side, kp in ((1600, 2048), (1024, 1024)):
        engine = Engine(
            "aliked", {"max_side": side, "max_keypoints": kp}, device="cuda", cache_dir=Path("/tmp/cache"), turns=(0,)
        )
        feats = [engine.photo_features(manifest_photo(manifest.parent, r)) for r in rows]
        counts = {len(f) for f in feats}
        full = max(counts, key=lambda c: sum(len(f) == c for f in feats))
        same = [f for f in feats if len(f) == full]
        gallery = [same[i % len(same)] for i in range(128)]
        kornia = engine.matcher
        fused = lg.LightGlueMatcher(dict(kornia.conf), device="cuda", weights_dir=Path(".carry/weights"))
        lg._fuse_cross_attention(fused.model)
        figures = {}
        outputs = {}
        for label, m in (("kornia", kornia), ("fused", fused)):
            m.match_many(feats[0], gallery[:8])
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            reps = 4
            for q in feats[:reps]:
                out = m.match_many(q, gallery)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            outputs[label] = [m.match_many(q, gallery[: len(same)]) for q in feats[:4]]
            figures[label] = {
                "pairs_per_s": round(reps * len(gallery) / dt, 1),
                "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        diffs, strong_diff, match_sets = [], [], 0
        for a, b in zip(outputs["kornia"], outputs["fused"], strict=True):
            for ra, rb in zip(a, b, strict=True):
                sa = int((ra.confidence >= engine.scoring.threshold).sum())
                sb = int((rb.confidence >= engine.scoring.threshold).sum())
                strong_diff.append(abs(sa - sb))
                if len(ra.confidence) == len(rb.confidence):
                    diffs.append(float(np.abs(np.sort(ra.confidence) - np.sort(rb.confidence)).max(initial=0)))
                else:
                    match_sets += 1
        figures["max_sorted_confidence_diff"] = max(diffs, default=0.0)
        figures["pairs_with_other_match_count"] = match_sets
        figures["max_strong_count_diff"] = max(strong_diff)
        figures["keypoints"] = full
        report[f"{side}px_{kp}kp"] = figures
        print(json.dumps(figures), flush=True)
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fused-gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
