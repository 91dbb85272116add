"""Safe photo loading for volunteers' uploads.

Uploads come from phones, cameras and old catalogues, so anything can arrive: HEIC from iPhones,
rotated JPEGs, 16-bit scans, truncated transfers, files that are not photos at all, and now and then
a hostile "pixel bomb". This module is the single gate between those bytes and the engine:

* every user-caused problem becomes an :class:`~core.errors.ImageError` whose message a volunteer
  can act on; anything else raised here is a programming error (``ValueError``/``TypeError``);
* sizes are checked *before* decoding: file size against ``max_bytes``, declared dimensions (read
  lazily from the header) against ``max_pixels``; Pillow's global ``MAX_IMAGE_PIXELS`` is not relied
  upon;
* only the formats in :data:`SUPPORTED_FORMATS` are ever handed to a decoder (no PSD, EPS, …);
* pixels always come back as a C-contiguous, writable ``(H, W, 3)`` ``uint8`` RGB array with the EXIF
  orientation applied, so crops and keypoints refer to what the user saw on screen;
* what a decode *costs* is bounded too (:mod:`core.engine.decoding`): frames, JPEG scans and the memory that
  the mode's bit depth and sample format need are checked from the header, and :func:`load_image` decodes in a
  worker process with a memory limit and a deadline, so no upload can exhaust the server.

Known limits, by design:

* Pillow's bomb *warning* (its global soft limit, 89 MP by default, below our 120 MP) is superseded by
  the ``max_pixels`` check; its hard *error* (twice the global) still applies and becomes an
  ``ImageError``, so the effective cap is ``min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)`` when set.
* ``warnings.catch_warnings`` is process-wide before Python 3.14; concurrent loads may interleave
  filter changes, but no outcome depends on them (the size check is ours, and a warning raised as an
  exception is converted like any decoder error).
* libjpeg conceals corrupt entropy-coded data (garbled pixels, no error), so only truncated or
  structurally broken JPEGs are refused. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone: if some
  other code sets it, truncated files load padded.
* HEIC orientation comes from the container (libheif applies it; pillow-heif resets EXIF to 1).

Every check between an upload's bytes and the decoder lives here, in the order they run; what the photo says
about itself (EXIF) is in :mod:`core.engine.exif`, what a decode may cost and the worker that runs it in
:mod:`core.engine.decoding`, the conversion of decoded pixels in :mod:`core.engine.pixels`, and what an
unreadable file looks like in :mod:`core.engine.sniff`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import operator
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.engine.decoding import DecodeBudget, DecodeCost, check_cost, default_pool
from core.engine.exif import PhotoInfo, orientation, photo_info, safe_exif
from core.engine.pixels import apply_orientation, to_rgb_array
from core.engine.sniff import sniff
from core.errors import ImageError

__all__ = [
    "HEIF_AVAILABLE",
    "MAX_BYTES",
    "MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "DecodeBudget",
    "LoadedImage",
    "PhotoInfo",
    "crop_and_rotate",
    "decode_here",
    "load_image",
    "prepare",
    "read_info",
    "resize_long_side",
]

logger = logging.getLogger(__name__)

MAX_PIXELS: int = 120_000_000
"""Largest accepted photo in pixels (120 MP admits 108 MP phone sensors); guards against pixel bombs."""

MAX_BYTES: int = 60 * 1024 * 1024
"""Largest accepted file, checked before anything is read or decoded."""

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")
"""Pillow format names that Scute accepts; :attr:`PhotoInfo.format` is always one of them."""

try:  # HEIC is what iPhones upload; without pillow-heif we still run and say so clearly.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_AVAILABLE: bool = True
except Exception:  # pragma: no cover - depends on the installation (ImportError, broken libheif)
    HEIF_AVAILABLE = False
    logger.info("pillow-heif is not available: HEIC photos will be refused with an explanation")

# Pillow's JPEG decoder also opens "MPO" files (JPEGs carrying depth maps or previews, common on phones).
_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF") + (("HEIF",) if HEIF_AVAILABLE else ())
_PLEASE_UPLOAD = "Please upload a JPEG, PNG, WebP, TIFF or HEIC photo."
_PLEASE_REUPLOAD = "Please upload the original photo again."

_Source = bytes | bytearray | memoryview | str | os.PathLike
_Crop = tuple[float, float, float, float]


@dataclass
class LoadedImage:
    """Decoded pixels plus their metadata, so callers never reopen the file for EXIF."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation already applied, C-contiguous, writable
    info: PhotoInfo
    cost: DecodeCost | None = None  # what decoding took in its worker (None: decoded in this process)


# --------------------------------------------------------------------------------------------------
# Public API


def load_image(
    source: _Source,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    budget: DecodeBudget | None = None,
) -> LoadedImage:
    """Decode a photo fully, so that truncated or corrupt files fail here and not in the engine.

    ``source`` is the file's bytes or a path. The file is read here and decoded in a worker process
    (:mod:`core.engine.decoding`) within ``budget`` (default: the documented limits): a decode that would need
    more memory is refused from the header or stopped by the worker's memory limit, one that runs past the
    deadline is killed. Raises :class:`ImageError` for anything the user can fix.
    """
    _positive_int(max_pixels, "max_pixels")
    _positive_int(max_bytes, "max_bytes")
    budget = budget or DecodeBudget()
    with _stream(source, max_bytes) as (stream, label):
        data = stream.read(max_bytes + 1)
    _check_size(len(data), max_bytes, label)  # a file that grew since it was measured
    request = {"data": data, "name": label.name, "max_pixels": max_pixels, "budget": budget}

    def too_slow() -> ImageError:
        logger.info("Refused %s: decoding took longer than %g s", label, budget.seconds)
        return ImageError(
            f"{label.photo} took longer than {budget.seconds:g} seconds to decode, the limit for one photo "
            "(some files are built to be slow to decode). Please open it in a photo editor, save it again as an "
            "ordinary JPEG or PNG and upload that."
        )

    def crashed() -> ImageError:
        logger.warning("The decoder stopped while decoding %s", label)
        return ImageError(
            f"{label.photo} could not be decoded: the decoder stopped (the file may be damaged, or too large for "
            f"this server's memory). {_PLEASE_REUPLOAD}"
        )

    answer, pixels = default_pool().run(request, budget.seconds, too_slow, crashed)
    _status, _shape, info, cost = answer
    assert pixels is not None  # an "ok" answer always carries them
    logger.debug("Loaded %s: %s %dx%d in %.3f s", label, info.format, info.width, info.height, cost.seconds)
    return LoadedImage(pixels=pixels, info=info, cost=cost)


def decode_here(
    data: bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS, budget: DecodeBudget | None = None
) -> LoadedImage:
    """Decode in this process, within the header checks of ``budget`` but without a deadline or memory limit.

    What the decoding worker runs; elsewhere use :func:`load_image`. ``name`` labels messages.
    """
    _positive_int(max_pixels, "max_pixels")
    budget = budget or DecodeBudget()
    label = _Label(name)
    with _opened_stream(io.BytesIO(data), label, max_pixels) as im:
        check_cost(im, io.BytesIO(data), label.photo, budget)
        try:
            with warnings.catch_warnings():
                # Anything Pillow warns about while decoding means the pixels cannot be trusted.
                # Its bomb warning only restates its own global soft limit, which _opened has
                # replaced by the exact max_pixels check (and which sits below MAX_PIXELS by default).
                warnings.simplefilter("error")
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except Exception as exc:
            raise _decode_error(exc, label, im.format) from exc
        rgb = _to_rgb(im, label)
        exif = safe_exif(im)
        info = photo_info(im, exif)
    pixels = apply_orientation(rgb, orientation(exif))
    pixels = np.require(pixels, dtype=np.uint8, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return LoadedImage(pixels=pixels, info=info)


def read_info(source: _Source, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> PhotoInfo:
    """Validate a photo's header and read its metadata without decoding the pixels.

    Deliberately cheap (listing a catalogue of thousands of photos must not decode them all): it checks
    size, format, declared dimensions and EXIF, but a file whose *body* is truncated or corrupt passes
    here and is only refused by :func:`load_image`. For PNG, EXIF stored after the pixel data is not
    read (that would need a full decode); cameras put it first.
    """
    with _opened(source, max_bytes, max_pixels) as (im, _label):
        return photo_info(im, safe_exif(im, allow_decode=False))


def crop_and_rotate(pixels: np.ndarray, crop: _Crop | None = None, rotation: int = 0) -> np.ndarray:
    """Apply the user's head crop, then their clockwise rotation; always returns a new contiguous array.

    ``crop`` is ``(x0, y0, x1, y1)`` in fractions of the width and height, so it stays valid whatever
    resolution the photo is later decoded at. Bad arguments are programming errors (``ValueError``).
    """
    pixels = _check_pixels(pixels, "pixels")
    turns = _quarter_turns(rotation)
    out = pixels
    if crop is not None:
        x0, y0, x1, y1 = _check_crop(crop)
        height, width = pixels.shape[:2]
        c0, c1 = _fraction_span(x0, x1, width)
        r0, r1 = _fraction_span(y0, y1, height)
        out = out[r0:r1, c0:c1]
    if turns:
        out = np.rot90(out, k=-turns, axes=(0, 1))  # numpy turns counter-clockwise for positive k
    return np.array(out, copy=True, order="C")


def resize_long_side(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale (never upscale) so that ``max(H, W) <= max_side``; returns ``(pixels, new/old)``.

    Uses ``cv2.INTER_AREA``, which averages instead of skipping pixels and so keeps fine scute edges
    free of aliasing. When nothing needs doing the input array itself is returned with scale 1.0.
    """
    pixels = _check_pixels(pixels, "pixels")
    max_side = _positive_int(max_side, "max_side")
    height, width = pixels.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return pixels, 1.0
    scale = max_side / long_side
    new_w = max(1, min(max_side, round(width * scale)))
    new_h = max(1, min(max_side, round(height * scale)))
    resized = cv2.resize(np.ascontiguousarray(pixels), (new_w, new_h), interpolation=cv2.INTER_AREA)
    if pixels.ndim == 3 and resized.ndim == 2:  # OpenCV drops a single channel axis
        resized = resized[:, :, np.newaxis]
    return resized, max(new_h, new_w) / long_side


def prepare(
    source: _Source | np.ndarray,
    *,
    crop: _Crop | None = None,
    rotation: int = 0,
    max_side: int | None = None,
) -> np.ndarray:
    """One call for the engine: load (unless given pixels), crop, rotate, downscale; RGB ``uint8``.

    Given an array, it must already be ``(H, W, 3)`` ``uint8`` RGB; the result never shares memory
    with it.
    """
    if max_side is not None:
        max_side = _positive_int(max_side, "max_side")
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ValueError(f"prepare() needs (H, W, 3) uint8 RGB pixels, got {source.shape} {source.dtype}")
        pixels = crop_and_rotate(source, crop, rotation)
    else:
        turns = _quarter_turns(rotation)  # refuse bad arguments before spending time on decoding
        if crop is not None:
            _check_crop(crop)
        pixels = load_image(source).pixels
        if crop is not None or turns:
            pixels = crop_and_rotate(pixels, crop, rotation)
    if max_side is not None:
        pixels, _ = resize_long_side(pixels, max_side)
    return pixels


# --------------------------------------------------------------------------------------------------
# Reading and opening


@dataclass(frozen=True)
class _Label:
    """How messages name the file: by its name when we have one, else as "this file"."""

    name: str | None

    @property
    def file(self) -> str:
        return f"The file '{self.name}'" if self.name else "This file"

    @property
    def photo(self) -> str:
        return f"The photo '{self.name}'" if self.name else "This photo"

    def __str__(self) -> str:
        return repr(self.name) if self.name else "an upload"


@contextlib.contextmanager
def _stream(source: _Source, max_bytes: int) -> Iterator[tuple[BinaryIO, _Label]]:
    """A readable stream and a label for messages; empty and oversized files are refused unread.

    Paths are streamed rather than read whole, so :func:`read_info` touches only the header.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, label = bytes(source), _Label(None)
        _check_size(len(data), max_bytes, label)
        yield io.BytesIO(data), label
        return
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"expected bytes or a path, got {type(source).__name__}")
    path = Path(source)
    label = _Label(path.name or str(path))
    try:
        if path.is_dir():
            raise ImageError(f"{label.file} is a folder, not a photo. {_PLEASE_UPLOAD}")
        if not path.exists():
            raise ImageError(f"Scute cannot find the photo '{path}'. Please check the file name and retry.")
        if not path.is_file():
            raise ImageError(f"{label.file} is not an ordinary file. {_PLEASE_UPLOAD}")
        _check_size(path.stat().st_size, max_bytes, label)
        handle = path.open("rb")
    except OSError as exc:
        logger.info("Cannot read %s: %s", path, exc)
        raise ImageError(
            f"{label.file} could not be read ({exc.strerror or 'read error'}). "
            "Please check that it is a photo you are allowed to open and try again."
        ) from exc
    with handle:
        yield handle, label


def _check_size(size: int, max_bytes: int, label: _Label) -> None:
    if size == 0:
        raise ImageError(f"{label.file} is empty (0 bytes). {_PLEASE_REUPLOAD}")
    if size > max_bytes:
        raise ImageError(
            f"{label.file} is too large ({_human_bytes(size)}; the limit is {_human_bytes(max_bytes)}). "
            "Please upload a smaller version of the photo, for example exported at a lower resolution."
        )


@contextlib.contextmanager
def _opened(source: _Source, max_bytes: int, max_pixels: int) -> Iterator[tuple[Image.Image, _Label]]:
    """Open lazily with the allowed decoders only and check the declared size; close on exit."""
    _positive_int(max_pixels, "max_pixels")
    _positive_int(max_bytes, "max_bytes")
    with _stream(source, max_bytes) as (stream, label), _opened_stream(stream, label, max_pixels) as im:
        yield im, label


@contextlib.contextmanager
def _opened_stream(stream: BinaryIO, label: _Label, max_pixels: int) -> Iterator[Image.Image]:
    try:
        with warnings.catch_warnings():
            # Pillow warns when the header exceeds *its* global soft limit; the check below is the
            # authority (Pillow's hard limit, twice the soft one, still raises and is converted).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Header oddities (unknown TIFF tags, a malformed MPO index) are no reason to refuse.
            warnings.simplefilter("ignore", UserWarning)
            im = Image.open(stream, formats=_OPEN_FORMATS)
    except UnidentifiedImageError as exc:
        stream.seek(0)
        raise _unidentified_error(stream.read(4096), label) from exc
    except Exception as exc:
        raise _decode_error(exc, label, None) from exc
    try:
        _check_dimensions(im.size, max_pixels, label)
        yield im
    finally:
        im.close()


def _check_dimensions(size: tuple[int, int], max_pixels: int, label: _Label) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label.photo} has no pixels ({width} × {height}). {_PLEASE_REUPLOAD}")
    if width * height > max_pixels:
        logger.info("Refused %s: %dx%d exceeds %d pixels", label, width, height, max_pixels)
        raise ImageError(
            f"{label.photo} is too large to process ({width} × {height} = "
            f"{width * height / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:g} megapixels). "
            "Please upload a smaller version of the photo."
        )


def _unidentified_error(data: bytes, label: _Label) -> ImageError:
    description, damaged = sniff(data)
    logger.info("Refused %s: unidentified (%s)", label, description or damaged or "unknown")
    if damaged == "HEIC" and not HEIF_AVAILABLE:
        return ImageError(
            f"{label.file} is a HEIC photo, but HEIC support (pillow-heif) is not installed on this "
            "server. Please convert the photo to JPEG, or ask the administrator to install pillow-heif."
        )
    if damaged is not None:
        return ImageError(
            f"{label.photo} is damaged or incomplete: its {damaged} header cannot be read. {_PLEASE_REUPLOAD}"
        )
    what = f"it looks like {description}" if description else "its format is not recognised"
    return ImageError(f"{label.file} is not a photo Scute can read ({what}). {_PLEASE_UPLOAD}")


def _decode_error(exc: BaseException, label: _Label, fmt: str | None) -> ImageError:
    """Turn whatever a decoder raised into a message that says what happened, not how."""
    logger.info("Refused %s (%s): %s: %s", label, fmt or "unknown format", type(exc).__name__, exc)
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return ImageError(
            f"{label.photo} declares a size too large to process safely. Please upload a smaller version of the photo."
        )
    if isinstance(exc, MemoryError):
        return ImageError(
            f"{label.photo} is too large for this server's memory. Please upload a smaller version of the photo."
        )
    text = str(exc).lower()
    if isinstance(exc, EOFError) or any(w in text for w in ("truncated", "end of file", "premature")):
        why = "the file ends too early, probably an interrupted upload or copy"
    else:
        why = "its picture data is corrupt"
    return ImageError(f"{label.photo} is damaged or incomplete ({why}). {_PLEASE_REUPLOAD}")


# --------------------------------------------------------------------------------------------------
# Pixels


def _to_rgb(im: Image.Image, label: _Label) -> np.ndarray:
    """Any Pillow mode to ``(H, W, 3)`` uint8 RGB; transparency is flattened onto white."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # conversion notes (palette transparency) are not problems
            return to_rgb_array(im)
    except MemoryError as exc:
        raise _decode_error(exc, label, im.format) from exc
    except Exception as exc:
        logger.info("Refused %s: cannot convert mode %s: %s", label, im.mode, exc)
        raise ImageError(
            f"{label.photo} uses a colour format Scute cannot convert ({im.mode}). "
            "Please export it as an ordinary colour JPEG or PNG and upload that."
        ) from exc


# --------------------------------------------------------------------------------------------------
# Argument checks (programming errors, hence ValueError rather than ImageError)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def _check_pixels(pixels: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.ndim not in (2, 3) or 0 in pixels.shape[:2]:
        shape = getattr(pixels, "shape", type(pixels).__name__)
        raise ValueError(f"{name} must be a non-empty (H, W) or (H, W, C) array, got {shape}")
    return pixels


def _quarter_turns(rotation: int) -> int:
    """Clockwise quarter turns in 0..3 for a rotation in degrees that is a multiple of 90."""
    if isinstance(rotation, bool):
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation!r}")
    try:
        degrees = operator.index(rotation)
    except TypeError:
        raise ValueError(f"rotation must be an integer multiple of 90 degrees, got {rotation!r}") from None
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation!r}")
    return (degrees // 90) % 4


def _check_crop(crop: object) -> _Crop:
    try:
        x0, y0, x1, y1 = (float(v) for v in crop)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"crop must be four numbers (x0, y0, x1, y1), got {crop!r}") from None
    values = (x0, y0, x1, y1)
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"crop fractions must lie in [0, 1], got {crop!r}")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop must have x0 < x1 and y0 < y1, got {crop!r}")
    return values


def _fraction_span(start: float, stop: float, length: int) -> tuple[int, int]:
    """Pixel span for a fractional span; rounded, but never empty."""
    first = min(round(start * length), length - 1)
    last = max(round(stop * length), first + 1)
    return first, min(last, length)


def _human_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"
