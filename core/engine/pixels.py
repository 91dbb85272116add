"""Decoded pixels of any mode to the ``(H, W, 3)`` ``uint8`` RGB the engine takes, and EXIF orientation.

Kept lean in memory (what :func:`core.engine.decoding.estimated_memory` budgets): wide samples are mapped in one
float32 array in place, not through float64 copies.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["apply_orientation", "to_rgb_array", "to_uint8"]


def to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = to_uint8(np.asarray(im))
        return np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(flat)
    if mode != "RGB":
        im = im.convert("RGB")  # L, 1, P, CMYK (Adobe's inverted CMYK included), YCbCr
    return np.asarray(im)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit / 32-bit / float single-channel data to 0..255 by range, never by clipping.

    Works in one float32 array, in place, so the conversion needs about 4 bytes a pixel on top of the
    decoded image (what :func:`core.engine.decoding.estimated_memory` budgets), not several float64 copies.
    """
    if values.dtype == np.uint16:
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    data = values.astype(np.float32)
    np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(data.min()), float(data.max())
    if values.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        data *= 255.0
    elif low >= 0 and high <= 255:
        pass
    elif low >= 0 and high <= 65535:
        data *= 255.0 / 65535.0
    else:
        data -= low
        data *= 255.0 / (high - low)
    np.rint(data, out=data)
    np.clip(data, 0, 255, out=data)
    return data.astype(np.uint8)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip as EXIF orientation 1-8 says (same result as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return pixels.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels
