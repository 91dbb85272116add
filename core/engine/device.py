"""Which torch device runs the models: the same code runs in CI on a CPU and on a GPU."""

from __future__ import annotations

import logging

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
