"""What a photo says about itself (EXIF orientation, date and GPS position), read so that it never fails a
load: anything odd or implausible becomes None."""

from __future__ import annotations

import logging
import math
import numbers
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image

logger = logging.getLogger(__name__)

#: Formats reported under another name: an MPO (multi-picture JPEG from some cameras) is a JPEG.
FORMAT_ALIASES = {"MPO": "JPEG"}


@dataclass(frozen=True)
class PhotoInfo:
    """What the header says about a photo: shown to users and stored with the Photo row."""

    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow's format name, one of SUPPORTED_FORMATS ("MPO" is reported as "JPEG")
    taken_at: datetime | None  # EXIF DateTimeOriginal (fallbacks: DateTimeDigitized, DateTime), naive local
    latitude: float | None  # decimal degrees from EXIF GPS; None when absent or implausible
    longitude: float | None


_ORIENTATION_TAG = ExifTags.Base.Orientation
_DATETIME_TAGS = (ExifTags.Base.DateTimeOriginal, ExifTags.Base.DateTimeDigitized)
_DATETIME_RE = re.compile(r"^\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?")
_EARLIEST_YEAR = 1900


def safe_exif(im: Image.Image, *, allow_decode: bool = True) -> Image.Exif:
    """The photo's EXIF, or an empty one when it is missing or unreadable."""
    if not allow_decode and im.format == "PNG" and "exif" not in im.info:
        return Image.Exif()  # PngImageFile.getexif() would decode the whole image to look further
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exif = im.getexif()
        for warning in caught:
            logger.debug("EXIF warning: %s", warning.message)
        return exif
    except Exception as exc:
        logger.debug("Unreadable EXIF ignored: %s: %s", type(exc).__name__, exc)
        return Image.Exif()


def _safe_ifd(exif: Image.Exif, ifd: int) -> dict[int, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(exif.get_ifd(ifd))
    except Exception as exc:
        logger.debug("Unreadable EXIF sub-directory %#x ignored: %s", ifd, exc)
        return {}


def orientation(exif: Image.Exif) -> int:
    try:
        value = exif.get(_ORIENTATION_TAG, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:
        return 1


def photo_info(im: Image.Image, exif: Image.Exif) -> PhotoInfo:
    width, height = im.size
    if orientation(exif) in (5, 6, 7, 8):
        width, height = height, width
    fmt = im.format or "unknown"
    latitude, longitude = _gps(_safe_ifd(exif, ExifTags.IFD.GPSInfo))
    return PhotoInfo(
        width=width,
        height=height,
        format=FORMAT_ALIASES.get(fmt, fmt),
        taken_at=_taken_at(exif),
        latitude=latitude,
        longitude=longitude,
    )


def _taken_at(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal, else DateTimeDigitized, else DateTime (last modification, still a hint)."""
    sub = _safe_ifd(exif, ExifTags.IFD.Exif)
    candidates = [sub.get(tag) for tag in _DATETIME_TAGS]
    candidates += [exif.get(tag) for tag in _DATETIME_TAGS]  # some writers put them in IFD0
    candidates.append(exif.get(ExifTags.Base.DateTime))
    for value in candidates:
        parsed = _parse_exif_datetime(value)
        if parsed is not None:
            return parsed
    return None


def _parse_exif_datetime(value: object) -> datetime | None:
    """``"YYYY:MM:DD HH:MM:SS"`` (and common variants) to a naive datetime; absurd values to None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    match = _DATETIME_RE.match(value.replace("\x00", ""))
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    if not _EARLIEST_YEAR <= year <= datetime.now().year + 1:
        return None
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _gps(gps: dict[int, Any]) -> tuple[float | None, float | None]:
    latitude = _coordinate(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "NS", 90)
    longitude = _coordinate(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "EW", 180)
    if latitude is None or longitude is None:  # half a position is no position
        return None, None
    return latitude, longitude


def _coordinate(value: object, ref: object, refs: str, limit: float) -> float | None:
    """EXIF (degrees, minutes, seconds) rationals plus N/S/E/W reference to signed decimal degrees."""
    if value is None:
        return None
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers_ = [_real(part) for part in parts]
    if any(n is None or n < 0 for n in numbers_):
        return None
    degrees, minutes, seconds = ([*numbers_, 0.0, 0.0])[:3]
    if minutes >= 60 or seconds >= 60:  # type: ignore[operator]
        return None
    decimal = degrees + minutes / 60.0 + seconds / 3600.0  # type: ignore[operator]
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", errors="replace")
    if ref is not None:
        if not isinstance(ref, str):
            return None
        ref = ref.strip("\x00 ").upper()
        if ref not in refs:
            return None
        if ref == refs[1]:
            decimal = -decimal
    if not -limit <= decimal <= limit:
        return None
    return decimal


def _real(value: object) -> float | None:
    """A finite float from a number or rational; strings, zero denominators, NaN are None."""
    if isinstance(value, bool):  # bool is an int, but True degrees is no coordinate
        return None
    if isinstance(value, tuple) and len(value) == 2:  # (numerator, denominator) from old writers
        num, den = (_real(v) for v in value)
        return None if num is None or not den else _finite(num / den)
    if not isinstance(value, numbers.Real):
        return None
    try:
        return _finite(float(value))
    except (ArithmeticError, TypeError, ValueError):
        return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
