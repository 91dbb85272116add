"""Which torch device runs the models: the same code runs in CI on a CPU and on a GPU."""

from __future__ import annotations

import functools
import logging
import time

import torch

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None) -> torch.device:
    """``auto`` (or None) means CUDA when present, else CPU, so the same code runs in CI and on a GPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available; using the CPU")
        return torch.device("cpu")
    return device


@functools.cache
def cpu_similarity_dtype() -> torch.dtype:
    """bfloat16 where this CPU multiplies it much faster than float32 (AMX or AVX-512 BF16), else float32.

    Why: the shortlist's similarities are one large matrix product per query (1,024 query descriptors against
    512 per gallery photo); on the 2-core Xeon that serves Scute's laptop figures bfloat16 runs it about ten
    times faster than float32 (0.4 against 4.9 s for 1,000 photos), while a CPU without bfloat16 units emulates
    it and is slower. So it is measured once per process on a product of the shortlist's shape, not assumed.
    """
    query, bank = torch.randn(256, 128), torch.randn(128, 16384)
    seconds: dict[torch.dtype, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = query.to(dtype), bank.to(dtype)
        a @ b  # warm-up: kernel selection, first-touch allocation
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        seconds[dtype] = time.perf_counter() - start
    chosen = torch.bfloat16 if seconds[torch.bfloat16] * 2 < seconds[torch.float32] else torch.float32
    log.info("shortlist similarities in %s on this CPU (float32 %.3f s, bfloat16 %.3f s)", chosen, *seconds.values())
    return chosen
