"""Small pictures for pages: thumbnails of stored photos, crop previews, tiles of one shape, placeholders."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from core.engine.images import crop_and_rotate, prepare  # the engine's framing, for previews and overlays

__all__ = [
    "as_rgb",
    "cover",
    "crop_and_rotate",
    "crop_preview",
    "data_uri",
    "placeholder",
    "png_bytes",
    "region_in_photo",
    "thumbnail",
    "working_frame",
]


def as_rgb(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def thumbnail(path: Path, max_side: int = 320) -> np.ndarray:
    """A small RGB copy of a stored photo, upright, decoded at reduced size where JPEG allows it.

    Only for photos already in the store (they were checked by ``core.engine.images`` when they arrived).
    """
    with Image.open(path) as im:
        im.draft("RGB", (max_side, max_side))  # JPEG decodes at 1/2, 1/4, 1/8 scale: far quicker
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(im)


def crop_preview(pixels: np.ndarray, crop: tuple[float, float, float, float] | None) -> np.ndarray:
    """The photo with everything outside the crop dimmed and the crop's border drawn."""
    image = as_rgb(pixels, "pixels").copy()
    if crop is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h))
    dimmed = (image * 0.35).astype(np.uint8)
    dimmed[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    thickness = max(2, max(h, w) // 300)
    cv2.rectangle(dimmed, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (250, 204, 21), thickness, cv2.LINE_AA)
    return dimmed


def region_in_photo(
    region: tuple[float, float, float, float],
    crop: tuple[float, float, float, float] | None,
    rotation: int,
) -> tuple[float, float, float, float]:
    """Where ``region`` of the engine's query image lies in the whole, unturned photo, as a crop.

    The query image is the photo cropped, then turned clockwise by ``rotation`` (``crop_and_rotate``);
    ``region`` is ``(x0, y0, x1, y1)`` in fractions of that image. The answer is in the coordinates of
    ``crop`` (fractions of the photo before turning), so it can become the volunteer's crop as it is.
    """
    u0, v0, u1, v1 = (min(max(float(v), 0.0), 1.0) for v in region)
    turns = (int(rotation) // 90) % 4
    corners = []
    for u, v in ((u0, v0), (u1, v1)):
        for _ in range(turns):  # undo one clockwise quarter turn: (u, v) in the turned frame is (v, 1 - u) before
            u, v = v, 1.0 - u
        corners.append((u, v))
    (a0, b0), (a1, b1) = corners
    x0, y0, x1, y1 = crop if crop is not None else (0.0, 0.0, 1.0, 1.0)
    w, h = x1 - x0, y1 - y0
    return (
        round(x0 + min(a0, a1) * w, 4),
        round(y0 + min(b0, b1) * h, 4),
        round(x0 + max(a0, a1) * w, 4),
        round(y0 + max(b0, b1) * h, 4),
    )


def cover(image: np.ndarray, aspect: float = 4 / 3) -> np.ndarray:
    """The largest centred part of ``image`` with width / height = ``aspect``, so cards line up."""
    image = as_rgb(image, "image")
    h, w = image.shape[:2]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        x0 = (w - new_w) // 2
        return np.ascontiguousarray(image[:, x0 : x0 + new_w])
    new_h = max(1, round(w / aspect))
    y0 = (h - new_h) // 2
    return np.ascontiguousarray(image[y0 : y0 + new_h])


def placeholder(width: int = 320, height: int = 240, text: str = "?") -> np.ndarray:
    """A quiet tile with a big character, standing in for a photo (the "new individual" card)."""
    tile = np.empty((height, width, 3), dtype=np.uint8)
    tile[:] = (238, 246, 245)
    scale = height / (45 * max(1, len(text)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, max(1, round(scale * 2)))
    origin = ((width - tw) // 2, (height + th) // 2 - height // 24)  # optically centred
    cv2.putText(
        tile, text, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (15, 118, 110), max(1, round(scale * 2)), cv2.LINE_AA
    )
    return tile


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an RGB array as PNG (for downloads and for tests that compare images)."""
    buffer = io.BytesIO()
    Image.fromarray(as_rgb(image, "image")).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(image: np.ndarray, quality: int = 80) -> str:
    """A small RGB image as a ``data:image/jpeg;base64,…`` address, for an image column of a table."""
    buffer = io.BytesIO()
    Image.fromarray(as_rgb(image, "image")).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def working_frame(
    source: Path | bytes, crop: tuple[float, float, float, float] | None, rotation: int, size: tuple[int, int]
) -> np.ndarray:
    """The photo in the frame its keypoints live in: cropped, turned and scaled to the working ``size`` (W, H)."""
    return prepare(source, crop=crop, rotation=rotation, max_side=max(size))
