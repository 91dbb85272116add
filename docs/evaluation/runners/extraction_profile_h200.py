"""Device runner (not part of the app): the benchmark's extraction path stage by stage on a GPU.

DEV=cpu N=12 M=4 for a CPU smoke run; JSON to $OUT (figures in docs/evaluation/extraction-profile-h200.json).
"""

import glob
import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from core.engine.extractors.aliked import AlikedExtractor
from core.engine.features import FeatureCache
from core.engine.images import decode_here, prepare

warnings.filterwarnings("ignore")  # concurrent decode_here threads leave Pillow's "error" filter behind

OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(exist_ok=True)
res = {}


def sync():
    torch.cuda.is_available() and torch.cuda.synchronize()


def log(k, v):
    res[k] = v
    print(k, v, flush=True)


paths = sorted(glob.glob(".carry/data/turtles/images/*/*.webp"))[: int(os.environ.get("N", 384))]
W = os.cpu_count()


def rate(name, fn, items, workers=W):
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        out = list(ex.map(fn, items))
    log(name, round(len(items) / (time.perf_counter() - t), 1))
    return out


rate("decode pool (prepare) photos/s", lambda p: prepare(Path(p), max_side=1024), paths[:32])  # warm workers
imgs = rate("decode pool (prepare) photos/s", lambda p: prepare(Path(p), max_side=1024), paths)
rate("decode_here threads photos/s", lambda p: decode_here(Path(p).read_bytes()).pixels, paths)
rate("cv2.imdecode threads photos/s", lambda p: cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR), paths)
shapes = {}
for im in imgs:
    shapes[im.shape] = shapes.get(im.shape, 0) + 1
log("distinct shapes", len(shapes))
pad = {}
for im in imgs:
    k = (-(-im.shape[0] // 32), -(-im.shape[1] // 32))
    pad[k] = pad.get(k, 0) + 1
log("distinct padded-32 shapes", len(pad))
ex = AlikedExtractor({"max_side": 1024, "max_keypoints": 1024}, os.environ.get("DEV", "cuda"), Path(".carry/weights"))
dev = ex.device
ex.extract_many(imgs[:32])
sync()
t = time.perf_counter()
for s in range(0, len(imgs), 64):
    ex.extract_many(imgs[s : s + 64])
sync()
log("extract_many current (chunks 64) photos/s", round(len(imgs) / (time.perf_counter() - t), 1))
same = [np.ascontiguousarray(im[:560, :1000]) if im.shape[0] >= 560 and im.shape[1] >= 1000 else None for im in imgs]
same = [s for s in same if s is not None][: int(os.environ.get("M", 256))]
log("same-shape images", len(same))
for b in (1, 16, 32, 64) if os.environ.get("DEV", "cuda") == "cuda" else (1, 2):
    ex.gpu_batch = b
    ex.extract_many(same[:b])
    sync()
    t = time.perf_counter()
    for s in range(0, len(same), 64):
        ex.extract_many(same[s : s + 64])
    sync()
    log(f"extract_many same shape batch {b} photos/s", round(len(same) / (time.perf_counter() - t), 1))
# split timings
m = ex.model
x1 = torch.stack([torch.from_numpy(s).permute(2, 0, 1) for s in same[:32]]).to(dev)
for dtype in (torch.float32, torch.float16):
    for b in (1, 8, 32) if os.environ.get("DEV", "cuda") == "cuda" else (1, 2):
        xb = x1[:b].float() / 255
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=dtype == torch.float16):
            for _ in range(2):
                fm, sm = m.extract_dense_map(xb)
            sync()
            t = time.perf_counter()
            for _ in range(5):
                fm, sm = m.extract_dense_map(xb)
            sync()
            dense = (time.perf_counter() - t) / 5 / b
            t = time.perf_counter()
            for _ in range(2):
                k, sc, _ = m.dkd(sm)
                d, _ = m.desc_head(fm, k)
            sync()
            heads = (time.perf_counter() - t) / 2 / b
            t = time.perf_counter()
            for _ in range(2):
                for i in range(b):
                    a = (k[i].float().cpu().numpy(), d[i].float().cpu().numpy(), sc[i].float().cpu().numpy())
            heads_cpu = (time.perf_counter() - t) / 2 / b
        log(
            f"{dtype} b{b} ms/photo dense / dkd+sddh / to-cpu",
            [round(dense * 1e3, 2), round(heads * 1e3, 2), round(heads_cpu * 1e3, 2)],
        )
t = time.perf_counter()
for s in same[:64]:
    ex._to_tensor(s)
sync()
log("to_tensor ms/photo", round((time.perf_counter() - t) / 64 * 1e3, 2))
t = time.perf_counter()
for s in same[:64]:
    ex._working(s)
log("_working (resize+blank check) ms/photo", round((time.perf_counter() - t) / 64 * 1e3, 2))
ex.gpu_batch = 16
feats = ex.extract_many(same[:128])
cache = FeatureCache(Path("/tmp/fc"))
rate("cache.put (fsync, threads) photos/s", lambda f: cache.put(f, f"{id(f):x}{time.time_ns()}"), feats)
with torch.profiler.profile(
    activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
) as prof:
    ex.gpu_batch = 16
    ex.extract_many(same[:32])
    sync()
tab = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
print(tab)
(OUT / "prof.txt").write_text(tab + "\n" + prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))
(OUT / "prof.json").write_text(json.dumps(res, indent=1))
