"""Device runner (not part of the app): what ALIKED's dense network's time is made of on a GPU (batch 16, fp32 / fp16 /
channels-last, torch profiler tables); figures in docs/evaluation/extraction-profile-h200.json."""

import copy
import glob
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.getcwd())
import numpy as np
import torch
from PIL import Image

from core.engine.extractors.aliked import AlikedExtractor

OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(exist_ok=True)
warnings.filterwarnings("ignore")
res = {}


def log(k, v):
    res[k] = v
    print(k, v, flush=True)


paths = sorted(glob.glob(".carry/data/turtles/images/*/*.webp"))[:200]
imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
same = [np.ascontiguousarray(im[:560, :1000]) for im in imgs if im.shape[0] >= 560 and im.shape[1] >= 1000][:32]
ex = AlikedExtractor({"max_side": 1024, "max_keypoints": 1024}, "cuda", Path(".carry/weights"))
dev = ex.device
x = torch.stack([torch.from_numpy(s).permute(2, 0, 1) for s in same[:16]]).to(dev).float() / 255


def timed(name, model, inp, amp=None, reps=5):
    with torch.inference_mode(), torch.autocast("cuda", dtype=amp or torch.float16, enabled=amp is not None):
        for _ in range(3):
            model.extract_dense_map(inp)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fm, sm = model.extract_dense_map(inp)
        torch.cuda.synchronize()
        log(name, round((time.perf_counter() - t) / reps / len(inp) * 1e3, 3))
    return fm, sm


m = ex.model
fm0, sm0 = timed("dense fp32 ms/photo b16", m, x)
torch.backends.cudnn.benchmark = True
timed("dense fp32 cudnn.benchmark", m, x)
timed("dense autocast fp16 benchmark", m, x, torch.float16)
timed("dense autocast bf16 benchmark", m, x, torch.bfloat16)
mc = copy.deepcopy(m).to(memory_format=torch.channels_last)
timed("dense fp32 channels_last", mc, x.contiguous(memory_format=torch.channels_last))
fm1, sm1 = timed(
    "dense fp16 channels_last autocast", mc, x.contiguous(memory_format=torch.channels_last), torch.float16
)
log("fp16 score map max abs diff", float((sm1.float() - sm0).abs().max()))
mh = copy.deepcopy(m).half()
timed("dense model.half()", mh, x.half())
for name, model, inp, amp in (
    ("fp32", m, x, None),
    ("fp16cl", mc, x.contiguous(memory_format=torch.channels_last), torch.float16),
):
    activities = [torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]
    with (
        torch.inference_mode(),
        torch.autocast("cuda", dtype=torch.float16, enabled=amp is not None),
        torch.profiler.profile(activities=activities) as prof,
    ):
        model.extract_dense_map(inp)
        torch.cuda.synchronize()
    tab = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
    print(name, tab[:6000])
    (OUT / f"dense-{name}.txt").write_text(tab)
    with torch.inference_mode():
        fm, sm = m.extract_dense_map(x)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]
        ) as prof:
            k, sc, _ = m.dkd(sm)
            d, _ = m.desc_head(fm, k)
            torch.cuda.synchronize()
    (OUT / "heads.txt").write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
(OUT / "prof2.json").write_text(json.dumps(res, indent=1))
