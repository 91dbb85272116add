"""Tests for core.images: every photo is generated here, in memory or under tmp_path."""

from __future__ import annotations

import functools
import io
import struct
import time
import warnings
import zlib
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageOps, PngImagePlugin
from PIL.TiffImagePlugin import IFDRational

from core.engine import images
from core.engine.images import (
    MAX_BYTES,
    MAX_PIXELS,
    SUPPORTED_FORMATS,
    LoadedImage,
    PhotoInfo,
    crop_and_rotate,
    decode_here,
    load_image,
    prepare,
    read_info,
    resize_long_side,
)
from core.errors import ImageError, ScuteError

RED, BLUE, GRAY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


# --------------------------------------------------------------------------------------------------
# Helpers


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    """A smooth RGB image (JPEG keeps it close) whose every pixel differs from its neighbours."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=2).astype(
        np.uint8
    )


def marked(width: int = 64, height: int = 40) -> Image.Image:
    """Gray image with a red 8x8 block at the top-left and a blue one at the top-right (JPEG-aligned)."""
    arr = np.full((height, width, 3), GRAY, np.uint8)
    arr[:8, :8] = RED
    arr[:8, -8:] = BLUE
    return Image.fromarray(arr)


def corner_colour(pixels: np.ndarray, corner: str) -> tuple[int, int, int]:
    """Mean colour of the middle of the 8x8 block in that corner (away from JPEG's blurred edges)."""
    rows = slice(2, 6) if corner[0] == "T" else slice(-6, -2)
    cols = slice(2, 6) if corner[1] == "L" else slice(-6, -2)
    return tuple(int(v) for v in pixels[rows, cols].reshape(-1, 3).mean(axis=0).round())


def close_to(colour: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(colour, expected, strict=True))


def exif_with(orientation: int | None = None, original: str | None = None, when: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if when is not None:
        exif[ExifTags.Base.DateTime] = when
    if original is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = original
    return exif


def set_gps(exif: Image.Exif, lat: object, lat_ref: object, lon: object, lon_ref: object) -> Image.Exif:
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = lat_ref
    gps[ExifTags.GPS.GPSLatitude] = lat
    gps[ExifTags.GPS.GPSLongitudeRef] = lon_ref
    gps[ExifTags.GPS.GPSLongitude] = lon
    return exif


def raw_exif(ifd0: list[tuple[int, int, int, bytes]], gps: list[tuple[int, int, int, bytes]]) -> bytes:
    """Hand-built little-endian EXIF, for tag types that Pillow refuses to write (strings in rationals)."""

    def ifd(entries: list[tuple[int, int, int, bytes]], base: int) -> bytes:
        head, data = struct.pack("<H", len(entries)), b""
        data_start = base + 2 + 12 * len(entries) + 4
        for tag, kind, count, payload in sorted(entries):
            if len(payload) <= 4:
                value = payload.ljust(4, b"\x00")
            else:
                value = struct.pack("<I", data_start + len(data))
                data += payload + b"\x00" * (len(payload) % 2)
            head += struct.pack("<HHI", tag, kind, count) + value
        return head + struct.pack("<I", 0) + data

    first = ifd([*ifd0, (0x8825, 4, 1, struct.pack("<I", 0))], 8)
    first = ifd([*ifd0, (0x8825, 4, 1, struct.pack("<I", 8 + len(first)))], 8)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + first + ifd(gps, 8 + len(first))


def ascii_entry(tag: int, text: str) -> tuple[int, int, int, bytes]:
    payload = text.encode() + b"\x00"
    return (tag, 2, len(payload), payload)


def rational_entry(tag: int, *pairs: tuple[int, int]) -> tuple[int, int, int, bytes]:
    return (tag, 5, len(pairs), b"".join(struct.pack("<II", n, d) for n, d in pairs))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A few dozen bytes whose header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def heic_bytes(im: Image.Image) -> bytes:
    if not images.HEIF_AVAILABLE:
        pytest.skip("pillow-heif is not installed, so HEIC photos cannot be tested")
    try:
        return encode(im, "HEIF", quality=95)
    except Exception as exc:  # libheif without an HEVC encoder
        pytest.skip(f"pillow-heif cannot write HEIC here ({exc})")


def assert_rgb(pixels: np.ndarray, height: int, width: int) -> None:
    assert pixels.shape == (height, width, 3)
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous and pixels.flags.writeable


# --------------------------------------------------------------------------------------------------
# Formats and colour modes


def test_public_constants() -> None:
    assert MAX_PIXELS == 120_000_000
    assert MAX_BYTES == 60 * 1024 * 1024
    assert SUPPORTED_FORMATS == ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")
    assert issubclass(ImageError, ScuteError)


@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"),
    [
        ("JPEG", {"quality": 95}, 6.0),
        ("PNG", {}, 0.0),
        ("WEBP", {"lossless": True}, 0.0),
        ("TIFF", {"compression": "tiff_deflate"}, 0.0),
    ],
)
def test_loads_supported_formats_from_path_and_bytes(
    tmp_path: Path, fmt: str, params: dict[str, object], tolerance: float
) -> None:
    original = gradient(64, 48)
    data = encode(Image.fromarray(original), fmt, **params)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        loaded = load_image(source)
        assert isinstance(loaded, LoadedImage)
        assert_rgb(loaded.pixels, 48, 64)
        assert loaded.info == PhotoInfo(64, 48, fmt, None, None, None)
        assert np.abs(loaded.pixels.astype(int) - original).mean() <= tolerance


def test_loads_heic() -> None:
    original = gradient(64, 48)
    data = heic_bytes(Image.fromarray(original))
    loaded = load_image(data)
    assert_rgb(loaded.pixels, 48, 64)
    assert loaded.info.format == "HEIF"
    assert np.abs(loaded.pixels.astype(int) - original).mean() < 8


def test_heic_without_pillow_heif_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    data = heic_bytes(Image.fromarray(gradient(16, 16)))
    monkeypatch.setattr(images, "HEIF_AVAILABLE", False)
    monkeypatch.setattr(images, "_OPEN_FORMATS", ("JPEG", "PNG", "WEBP", "TIFF"))
    with pytest.raises(ImageError, match=r"HEIC.*pillow-heif"):
        decode_here(data)  # in this process: the monkeypatch does not reach the decoding worker


def test_phone_jpeg_with_extra_pictures_counts_as_jpeg() -> None:
    base, depth = Image.fromarray(gradient(32, 24)), Image.new("RGB", (16, 12), GRAY)
    data = encode(base, "MPO", save_all=True, append_images=[depth])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    loaded = load_image(data)
    assert_rgb(loaded.pixels, 24, 32)
    assert loaded.info.format == "JPEG"
    assert read_info(data).format == "JPEG"


def _palette_with_transparency() -> bytes:
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putdata([0, 0, 1, 1] * 2)  # left half index 0 (red, transparent), right half index 1 (green)
    return encode(im, "PNG", transparency=0)


def _rgba() -> bytes:
    arr = np.zeros((2, 4, 4), np.uint8)
    arr[:, :2] = (0, 0, 0, 0)  # fully transparent black -> white background
    arr[:, 2:] = (0, 0, 255, 255)  # opaque blue
    arr[0, 3] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    return encode(Image.fromarray(arr, "RGBA"), "PNG")


def _cv2_png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("grayscale", lambda: encode(Image.new("L", (4, 2), 77), "PNG"), [[(77, 77, 77)] * 4] * 2),
        ("bilevel", lambda: encode(Image.new("1", (4, 2), 1), "PNG"), [[(255, 255, 255)] * 4] * 2),
        (
            "palette",
            lambda: encode(Image.new("RGB", (4, 2), RED).convert("P"), "PNG"),
            [[RED] * 4] * 2,
        ),
        ("palette+transparency", _palette_with_transparency, [[(255, 255, 255)] * 2 + [(0, 255, 0)] * 2] * 2),
        (
            "rgba",
            _rgba,
            [
                [(255, 255, 255), (255, 255, 255), (0, 0, 255), (127, 127, 127)],
                [(255, 255, 255), (255, 255, 255), (0, 0, 255), (0, 0, 255)],
            ],
        ),
        (
            "gray+alpha",
            lambda: encode(Image.new("LA", (4, 2), (0, 0)), "PNG"),
            [[(255, 255, 255)] * 4] * 2,
        ),
        (
            # 16-bit grayscale must be scaled, not clipped: clipping would turn 32896 into 255.
            "16-bit gray",
            lambda: _cv2_png(np.array([[0, 32896, 65535, 257]] * 2, np.uint16)),
            [[(0, 0, 0), (128, 128, 128), (255, 255, 255), (1, 1, 1)]] * 2,
        ),
        (
            "16-bit colour",  # cv2 writes BGR
            lambda: _cv2_png(np.full((2, 4, 3), (0, 40000, 65535), np.uint16)),
            [[(255, 156, 0)] * 4] * 2,
        ),
        (
            "float TIFF",
            lambda: encode(Image.fromarray(np.array([[0.0, 0.5, 1.0, 1.0]] * 2, np.float32), "F"), "TIFF"),
            [[(0, 0, 0), (128, 128, 128), (255, 255, 255), (255, 255, 255)]] * 2,
        ),
    ],
)
def test_modes_come_back_as_rgb_uint8(name: str, data: object, expected: list) -> None:
    loaded = load_image(data())  # type: ignore[operator]
    assert_rgb(loaded.pixels, 2, 4)
    np.testing.assert_allclose(loaded.pixels.astype(int), np.array(expected), atol=1, err_msg=name)


def test_cmyk_jpeg_comes_back_as_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    magenta = Image.new("CMYK", (16, 16), (0, 255, 0, 0))
    for im, rgb in ((cyan, (0, 255, 255)), (magenta, (255, 0, 255))):
        data = encode(im, "JPEG", quality=95)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        loaded = load_image(data)
        assert_rgb(loaded.pixels, 16, 16)
        assert close_to(corner_colour(loaded.pixels, "TL"), rgb), corner_colour(loaded.pixels, "TL")


def test_tiny_and_elongated_photos_load() -> None:
    one = load_image(encode(Image.new("RGB", (1, 1), BLUE), "PNG"))
    assert_rgb(one.pixels, 1, 1)
    assert tuple(one.pixels[0, 0]) == BLUE
    strip = np.zeros((10, 30000, 3), np.uint8)
    strip[:, -1] = RED
    long = load_image(encode(Image.fromarray(strip), "PNG"))
    assert_rgb(long.pixels, 10, 30000)
    assert (long.info.width, long.info.height) == (30000, 10)
    assert tuple(long.pixels[5, -1]) == RED and tuple(long.pixels[5, -2]) == (0, 0, 0)


# --------------------------------------------------------------------------------------------------
# EXIF orientation

# Raw image: red block top-left, blue block top-right; where they are after applying the tag.
ORIENTATIONS = {
    1: ("TL", "TR", False),
    2: ("TR", "TL", False),
    3: ("BR", "BL", False),
    4: ("BL", "BR", False),
    5: ("TL", "BL", True),
    6: ("TR", "BR", True),
    7: ("BR", "TR", True),
    8: ("BL", "TL", True),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied_to_jpeg(orientation: int) -> None:
    red_at, blue_at, swapped = ORIENTATIONS[orientation]
    data = encode(marked(64, 40), "JPEG", quality=95, subsampling=0, exif=exif_with(orientation))
    loaded = load_image(data)
    height, width = (64, 40) if swapped else (40, 64)
    assert_rgb(loaded.pixels, height, width)
    assert (loaded.info.width, loaded.info.height) == (width, height)
    assert read_info(data) == loaded.info
    assert close_to(corner_colour(loaded.pixels, red_at), RED)
    assert close_to(corner_colour(loaded.pixels, blue_at), BLUE)
    others = {"TL", "TR", "BL", "BR"} - {red_at, blue_at}
    assert all(close_to(corner_colour(loaded.pixels, c), GRAY) for c in others)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exactly(orientation: int) -> None:
    im = Image.fromarray(gradient(7, 5))
    data = encode(im, "PNG", exif=exif_with(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert expected.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))
    np.testing.assert_array_equal(load_image(data).pixels, expected)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_orientation_is_ignored(orientation: int) -> None:
    original = gradient(8, 6)
    loaded = load_image(encode(Image.fromarray(original), "PNG", exif=exif_with(orientation)))
    np.testing.assert_array_equal(loaded.pixels, original)


# --------------------------------------------------------------------------------------------------
# EXIF date and GPS


def test_exif_date_and_gps_are_parsed() -> None:
    exif = exif_with(original="2024:05:17 08:30:05", when="2023:01:01 00:00:00")
    set_gps(exif, (12.0, 30.0, 36.0), "S", (IFDRational(45), IFDRational(15), IFDRational(0)), "W")
    for fmt in ("JPEG", "PNG", "WEBP"):
        data = encode(Image.fromarray(gradient(16, 8)), fmt, exif=exif)
        info = read_info(data)
        assert info.taken_at == datetime(2024, 5, 17, 8, 30, 5), fmt
        assert info.latitude == pytest.approx(-12.51)
        assert info.longitude == pytest.approx(-45.25)
        assert load_image(data).info == info


def test_decimal_degrees_in_one_rational_are_accepted() -> None:
    exif = set_gps(Image.Exif(), (IFDRational(4325, 100),), "N", (IFDRational(-0.0),), "E")
    info = read_info(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif))
    assert info.latitude == pytest.approx(43.25)
    assert info.longitude == pytest.approx(0.0)


def test_date_falls_back_to_datetime() -> None:
    data = encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif_with(when="2021:12:31 23:59:59"))
    assert read_info(data).taken_at == datetime(2021, 12, 31, 23, 59, 59)


def test_date_falls_back_when_original_is_garbage() -> None:
    exif = exif_with(original="not a date", when="2021:06:01 12:00:00")
    assert read_info(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif)).taken_at == datetime(2021, 6, 1, 12)


@pytest.mark.parametrize(
    "value",
    [
        "0000:00:00 00:00:00",
        "2023:13:01 10:00:00",
        "2023:02:30 10:00:00",
        "2023:01:01 25:00:00",
        "    :  :     :  :  ",
        "1066:10:14 09:00:00",
        "9999:12:31 23:59:59",
        "yesterday",
        "",
    ],
)
def test_absurd_dates_become_none(value: str) -> None:
    exif = set_gps(exif_with(original=value), (10.0, 0.0, 0.0), "N", (20.0, 0.0, 0.0), "E")
    loaded = load_image(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif))
    assert loaded.info.taken_at is None
    assert (loaded.info.latitude, loaded.info.longitude) == (10.0, 20.0)  # the rest still parsed


@pytest.mark.parametrize(
    ("lat", "lat_ref", "lon", "lon_ref"),
    [
        ((200.0, 0.0, 0.0), "N", (10.0, 0.0, 0.0), "E"),  # latitude out of range
        ((10.0, 0.0, 0.0), "N", (181.0, 0.0, 0.0), "W"),  # longitude out of range
        ((10.0, 0.0, IFDRational(1, 0)), "N", (10.0, 0.0, 0.0), "E"),  # zero denominator
        ((IFDRational(0, 0), 0.0, 0.0), "N", (10.0, 0.0, 0.0), "E"),
        ((10.0, 75.0, 0.0), "N", (10.0, 0.0, 0.0), "E"),  # 75 minutes
        ((10.0, 0.0, 0.0), "X", (10.0, 0.0, 0.0), "E"),  # unknown reference
        ((10.0, 0.0, 0.0), "N", None, None),  # half a position
    ],
)
def test_absurd_gps_becomes_none(lat: object, lat_ref: object, lon: object, lon_ref: object) -> None:
    exif = exif_with(original="2022:03:04 05:06:07")
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    for tag, value in (
        (ExifTags.GPS.GPSLatitude, lat),
        (ExifTags.GPS.GPSLatitudeRef, lat_ref),
        (ExifTags.GPS.GPSLongitude, lon),
        (ExifTags.GPS.GPSLongitudeRef, lon_ref),
    ):
        if value is not None:
            gps[tag] = value
    loaded = load_image(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif))
    assert (loaded.info.latitude, loaded.info.longitude) == (None, None)
    assert loaded.info.taken_at == datetime(2022, 3, 4, 5, 6, 7)


def test_strings_where_rationals_belong_become_none() -> None:
    exif = raw_exif(
        ifd0=[(ExifTags.Base.DateTimeOriginal, 3, 1, struct.pack("<H", 2024))],  # a number, not text
        gps=[
            ascii_entry(ExifTags.GPS.GPSLatitudeRef, "N"),
            ascii_entry(ExifTags.GPS.GPSLatitude, "12"),  # text (that float() would take), not rationals
            ascii_entry(ExifTags.GPS.GPSLongitudeRef, "E"),
            rational_entry(ExifTags.GPS.GPSLongitude, (10, 1), (0, 1), (0, 1)),
        ],
    )
    data = encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif)
    parsed = Image.open(io.BytesIO(data)).getexif()
    assert isinstance(parsed.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude], str)
    assert parsed[ExifTags.Base.DateTimeOriginal] == 2024
    assert load_image(data).info == PhotoInfo(4, 4, "JPEG", None, None, None)


def test_hand_built_exif_is_read_like_pillows() -> None:
    """Guards the helper above: the same builder with proper types must parse."""
    exif = raw_exif(
        ifd0=[ascii_entry(ExifTags.Base.DateTime, "2020:02:02 02:02:02")],
        gps=[
            ascii_entry(ExifTags.GPS.GPSLatitudeRef, "S"),
            rational_entry(ExifTags.GPS.GPSLatitude, (12, 1), (30, 1), (0, 1)),
            ascii_entry(ExifTags.GPS.GPSLongitudeRef, "E"),
            rational_entry(ExifTags.GPS.GPSLongitude, (10, 1), (6, 1), (0, 0)),  # 0/0 seconds
        ],
    )
    info = read_info(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif))
    assert info.taken_at == datetime(2020, 2, 2, 2, 2, 2)
    assert (info.latitude, info.longitude) == (None, None)  # 0/0 seconds poisons the longitude

    exif = raw_exif(
        ifd0=[],
        gps=[
            ascii_entry(ExifTags.GPS.GPSLatitudeRef, "S"),
            rational_entry(ExifTags.GPS.GPSLatitude, (12, 1), (30, 1), (0, 1)),
            ascii_entry(ExifTags.GPS.GPSLongitudeRef, "E"),
            rational_entry(ExifTags.GPS.GPSLongitude, (10, 1), (6, 1), (0, 1)),
        ],
    )
    info = read_info(encode(Image.new("RGB", (4, 4)), "JPEG", exif=exif))
    assert info.latitude == pytest.approx(-12.5)
    assert info.longitude == pytest.approx(10.1)


@pytest.mark.parametrize(
    "blob",
    [b"Exif\x00\x00", b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"],
)
def test_corrupt_exif_never_fails_the_load(blob: bytes) -> None:
    data = encode(Image.fromarray(gradient(8, 8)), "JPEG", exif=blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # even where callers turn warnings into errors
        loaded = load_image(data)
    assert loaded.info == PhotoInfo(8, 8, "JPEG", None, None, None)
    assert_rgb(loaded.pixels, 8, 8)


# --------------------------------------------------------------------------------------------------
# Refusals: ImageError with a message a volunteer can act on


def _jpeg() -> bytes:
    return encode(Image.fromarray(gradient(64, 48)), "JPEG", quality=90)


def _png() -> bytes:
    return encode(Image.fromarray(gradient(64, 48)), "PNG")


def _corrupt_png() -> bytes:
    data = bytearray(_png())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    return bytes(data)


BAD_FILES = {
    "empty": (lambda: b"", "empty"),
    "random bytes": (lambda: np.random.default_rng(1).bytes(4096), "not a photo Scute can read"),
    "text": (lambda: b"turtle id,name\nT-0042,Donatello\n" * 20, "looks like a text file"),
    "gif": (lambda: encode(Image.new("RGB", (4, 4)), "GIF"), "looks like a GIF image"),
    "pdf": (lambda: b"%PDF-1.7\n" + bytes(range(256)), "looks like a PDF"),
    "truncated jpeg": (lambda: _jpeg()[: len(_jpeg()) // 2], "ends too early"),
    "truncated png": (lambda: _png()[: len(_png()) // 2], "ends too early"),
    "corrupt png body": (_corrupt_png, "damaged"),
    "broken jpeg header": (lambda: b"\xff\xd8\xff\xe0" + bytes(200), "JPEG header"),
    "truncated tiff": (
        lambda: encode(Image.fromarray(gradient(64, 48)), "TIFF")[:200],
        "damaged or incomplete",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_image_error_with_clear_message(tmp_path: Path, name: str) -> None:
    make, phrase = BAD_FILES[name]
    data = make()
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError) as caught:
            load_image(source)
        message = str(caught.value)
        assert phrase in message
        assert "Please" in message
        assert not any(word in message for word in ("Traceback", "OSError", "SyntaxError", "Errno", "BytesIO"))
    assert "'upload.jpg'" in str(caught.value)  # the path version names the file


def test_supported_formats_are_listed_when_refusing() -> None:
    with pytest.raises(ImageError, match=r"JPEG, PNG, WebP, TIFF or HEIC"):
        load_image(b"just some text")


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot find"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="cannot find"):
        read_info(str(tmp_path / "nope.jpg"))
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs a device file")
def test_device_files_are_refused() -> None:
    with pytest.raises(ImageError, match="not an ordinary file"):
        load_image("/dev/null")


def test_files_over_max_bytes_are_refused(tmp_path: Path) -> None:
    data = _png()
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError, match=r"too large \(\d+ bytes; the limit is 100 bytes\)"):
            load_image(source, max_bytes=100)
        with pytest.raises(ImageError, match="too large"):
            read_info(source, max_bytes=len(data) - 1)
        assert load_image(source, max_bytes=len(data)).pixels.shape == (48, 64, 3)


def test_crafted_header_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = png_bomb(100_000, 100_000)
    # Pillow's global guard switched off: our own check must still refuse (no 30 GB allocation).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert len(bomb) < 200 and Image.open(io.BytesIO(bomb)).size == (100_000, 100_000)
    for fn in (decode_here, read_info):  # decode_here: the monkeypatch does not reach the decoding worker
        with pytest.raises(ImageError, match=r"100000 × 100000.*the limit is 120 megapixels"):
            fn(bomb)


def test_crafted_header_bomb_with_pillows_guard_on() -> None:
    with pytest.raises(ImageError, match="too large"):
        load_image(png_bomb(100_000, 100_000))


def test_max_pixels_is_configurable_per_call() -> None:
    data = _png()  # 64 x 48 = 3072 pixels
    with pytest.raises(ImageError, match="too large to process"):
        load_image(data, max_pixels=3071)
    with pytest.raises(ImageError, match="too large to process"):
        read_info(data, max_pixels=3071)
    assert load_image(data, max_pixels=3072).pixels.shape == (48, 64, 3)


def test_pillows_decompression_bomb_error_is_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 48 is over twice that
    for data in (_png(), _jpeg()):
        with pytest.raises(ImageError, match="too large"):
            decode_here(data)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_pillows_decompression_bomb_warning_never_escapes(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1000 < 40 x 40 < 2 x 1000: Pillow only warns
    data = encode(Image.fromarray(gradient(40, 40)), fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_here(data).pixels.shape == (40, 40, 3)  # our max_pixels decides, not Pillow's
        with pytest.raises(ImageError, match="too large"):
            decode_here(data, max_pixels=1599)


def test_warnings_while_decoding_are_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a decoder warns about mid-decode, those pixels are not trusted (and nothing leaks)."""
    original_load = PngImagePlugin.PngImageFile.load

    def warning_load(self: PngImagePlugin.PngImageFile) -> object:
        warnings.warn("decoder hiccup", UserWarning, stacklevel=1)
        return original_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", warning_load)
    with pytest.raises(ImageError, match="damaged"):
        decode_here(_png())
    assert read_info(_png()).width == 64  # header-only reading does not decode


def test_programming_errors_are_not_image_errors() -> None:
    with pytest.raises(ValueError):
        load_image(_png(), max_pixels=0)
    with pytest.raises(ValueError):
        read_info(_png(), max_bytes=-1)
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# read_info: header only


def test_read_info_does_not_decode_the_body() -> None:
    """Documented choice: read_info is cheap, so a truncated body is only caught by load_image."""
    exif = set_gps(exif_with(6, original="2024:01:02 03:04:05"), (1.0, 0.0, 0.0), "N", (2.0, 0.0, 0.0), "E")
    data = encode(Image.fromarray(gradient(256, 192)), "JPEG", exif=exif)
    info = read_info(data[: len(data) // 2])
    assert info == PhotoInfo(192, 256, "JPEG", datetime(2024, 1, 2, 3, 4, 5), 1.0, 2.0)
    assert load_image(data).info == info
    with pytest.raises(ImageError, match="ends too early"):
        load_image(data[: len(data) // 2])


def test_photo_info_is_frozen() -> None:
    info = read_info(_png())
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# crop_and_rotate


def labelled(height: int, width: int) -> np.ndarray:
    """Every pixel holds (row, col, 7) so placement can be checked exactly."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("rotation", "expected_rows"),
    [
        (0, [["a", "b", "c"], ["d", "e", "f"]]),
        (90, [["d", "a"], ["e", "b"], ["f", "c"]]),
        (180, [["f", "e", "d"], ["c", "b", "a"]]),
        (270, [["c", "f"], ["b", "e"], ["a", "d"]]),
        (-90, [["c", "f"], ["b", "e"], ["a", "d"]]),
        (360, [["a", "b", "c"], ["d", "e", "f"]]),
        (450, [["d", "a"], ["e", "b"], ["f", "c"]]),
    ],
)
def test_rotation_is_clockwise(rotation: int, expected_rows: list[list[str]]) -> None:
    names = {"a": (0, 0), "b": (0, 1), "c": (0, 2), "d": (1, 0), "e": (1, 1), "f": (1, 2)}
    src = labelled(2, 3)
    expected = np.array([[[*names[n], 7] for n in row] for row in expected_rows], np.uint8)
    out = crop_and_rotate(src, rotation=rotation)
    np.testing.assert_array_equal(out, expected)


def test_rotate_90_moves_top_left_to_top_right() -> None:
    src = np.zeros((40, 60, 3), np.uint8)
    src[0, 0] = RED
    out = crop_and_rotate(src, rotation=90)
    assert out.shape == (60, 40, 3)
    assert tuple(out[0, -1]) == RED
    assert int(out.sum()) == 255


def test_crop_uses_fractions_of_the_oriented_image() -> None:
    src = labelled(100, 200)
    out = crop_and_rotate(src, crop=(0.25, 0.1, 0.75, 0.6))
    assert out.shape == (50, 100, 3)
    assert tuple(out[0, 0]) == (10, 50, 7)
    assert tuple(out[-1, -1]) == (59, 149, 7)


def test_crop_happens_before_rotation() -> None:
    src = labelled(100, 200)
    out = crop_and_rotate(src, crop=(0.0, 0.0, 0.5, 0.2), rotation=90)  # 20 x 100 region, then turned
    assert out.shape == (100, 20, 3)
    assert tuple(out[0, -1]) == (0, 0, 7)  # region's top-left now top-right
    assert tuple(out[-1, -1]) == (0, 99, 7)


def test_tiny_crop_is_never_empty_and_full_crop_is_identity() -> None:
    src = labelled(3, 3)
    tiny = crop_and_rotate(src, crop=(0.5, 0.5, 0.5000001, 0.5000001))
    assert tiny.shape == (1, 1, 3)
    edge = crop_and_rotate(src, crop=(0.99, 0.99, 1.0, 1.0))
    assert edge.shape == (1, 1, 3) and tuple(edge[0, 0]) == (2, 2, 7)
    np.testing.assert_array_equal(crop_and_rotate(src, crop=(0, 0, 1, 1)), src)


def test_crop_and_rotate_returns_a_new_contiguous_array() -> None:
    src = labelled(10, 20)
    for kwargs in ({}, {"crop": (0.0, 0.0, 1.0, 0.5)}, {"rotation": 90}):
        out = crop_and_rotate(src, **kwargs)
        assert out.flags.c_contiguous and not np.shares_memory(out, src)


@pytest.mark.parametrize(
    "crop",
    [
        (-0.1, 0, 1, 1),
        (0, 0, 1.1, 1),
        (0.5, 0, 0.5, 1),
        (0.6, 0, 0.5, 1),
        (0, 0.7, 1, 0.2),
        (0, float("nan"), 1, 1),
        (0, 0, 1),
        ("a", 0, 1, 1),
    ],
)
def test_invalid_crop_is_a_value_error(crop: tuple) -> None:
    with pytest.raises(ValueError):
        crop_and_rotate(labelled(4, 4), crop=crop)


@pytest.mark.parametrize("rotation", [45, 91, -30, 90.0, 90.5, "90", True, None])
def test_invalid_rotation_is_a_value_error(rotation: object) -> None:
    with pytest.raises(ValueError):
        crop_and_rotate(labelled(4, 4), rotation=rotation)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# resize_long_side


def test_resize_downscales_long_side() -> None:
    src = np.full((200, 400, 3), 90, np.uint8)
    out, scale = resize_long_side(src, 100)
    assert out.shape == (50, 100, 3) and out.dtype == np.uint8
    assert scale == 0.25
    assert (out == 90).all()
    tall, scale = resize_long_side(np.zeros((300, 120, 3), np.uint8), 150)
    assert tall.shape == (150, 60, 3) and scale == 0.5


def test_resize_never_upscales() -> None:
    src = labelled(50, 60)
    out, scale = resize_long_side(src, 60)
    assert out is src and scale == 1.0
    out, scale = resize_long_side(src, 1000)
    assert out is src and scale == 1.0


def test_resize_averages_with_inter_area() -> None:
    checker = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out, scale = resize_long_side(np.repeat(checker[:, :, None], 3, axis=2), 4)
    assert out.shape == (4, 4, 3) and scale == 0.5
    assert np.all(np.abs(out.astype(int) - 128) <= 1)  # nearest-neighbour would give 0 or 255


def test_resize_elongated_and_odd_shapes() -> None:
    out, scale = resize_long_side(np.zeros((10, 30000, 3), np.uint8), 1024)
    assert out.shape == (1, 1024, 3)
    assert scale == pytest.approx(1024 / 30000)
    gray, _ = resize_long_side(np.zeros((40, 20), np.uint8), 10)
    assert gray.shape == (10, 5)
    single, _ = resize_long_side(np.zeros((40, 20, 1), np.uint8), 10)
    assert single.shape == (10, 5, 1)


@pytest.mark.parametrize("max_side", [0, -5, 1.5, None, True])
def test_resize_invalid_max_side(max_side: object) -> None:
    with pytest.raises(ValueError):
        resize_long_side(np.zeros((4, 4, 3), np.uint8), max_side)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# prepare


def test_prepare_runs_the_whole_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "turtle.jpg"
    raw = marked(64, 40)  # displayed 40 wide x 64 high once orientation 6 is applied
    path.write_bytes(encode(raw, "JPEG", quality=95, subsampling=0, exif=exif_with(6)))
    out = prepare(path, crop=(0.0, 0.0, 1.0, 0.5), rotation=-90, max_side=16)
    oriented = load_image(path).pixels
    expected, _ = resize_long_side(crop_and_rotate(oriented, (0.0, 0.0, 1.0, 0.5), -90), 16)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == (16, 13, 3)  # shown 40 x 64 (w x h), crop 40 x 32, turned 32 x 40, then 13 x 16
    assert close_to(corner_colour(prepare(path, crop=(0.0, 0.0, 1.0, 0.5), rotation=-90), "TL"), RED)


def test_prepare_from_pixels_and_bytes() -> None:
    src = labelled(30, 40)
    out = prepare(src, rotation=180)
    assert out.shape == (30, 40, 3) and tuple(out[0, 0]) == (29, 39, 7)
    assert not np.shares_memory(out, src)
    same = prepare(src)
    np.testing.assert_array_equal(same, src)
    assert not np.shares_memory(same, src)
    data = encode(Image.fromarray(src), "PNG")
    np.testing.assert_array_equal(prepare(data, max_side=20), resize_long_side(src, 20)[0])


def test_prepare_checks_arguments_before_loading(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ValueError):
        prepare(missing, rotation=45)
    with pytest.raises(ValueError):
        prepare(missing, crop=(0.5, 0.5, 0.1, 0.9))
    with pytest.raises(ValueError):
        prepare(missing, max_side=0)
    with pytest.raises(ImageError):
        prepare(missing)
    with pytest.raises(ValueError):
        prepare(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        prepare(np.zeros((4, 4, 3), np.float32))


# --------------------------------------------------------------------------------------------------
# Fuzzing: anything a browser can send is either a photo or an ImageError


@functools.cache
def seeds() -> tuple[bytes, ...]:
    im = Image.fromarray(gradient(16, 12))
    exif = set_gps(exif_with(6, original="2024:05:17 08:30:00"), (12.0, 30.0, 0.0), "S", (45.0, 0.0, 0.0), "W")
    return (
        encode(im, "JPEG", quality=80, exif=exif),
        encode(im, "PNG"),
        encode(im.convert("P"), "PNG", exif=exif),
        encode(im, "WEBP", quality=80),
        encode(im, "TIFF"),
    )


@st.composite
def mutated_photos(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 8))):
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 160)  # headers matter most
        data[draw(st.integers(0, limit))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def check_only_image_errors(data: bytes) -> None:
    try:
        loaded = load_image(data, max_pixels=1_000_000)
    except ImageError as exc:
        assert str(exc)
        return
    assert loaded.pixels.ndim == 3 and loaded.pixels.shape[2] == 3
    assert loaded.pixels.dtype == np.uint8
    assert loaded.pixels.shape[:2] == (loaded.info.height, loaded.info.width)
    assert loaded.info.format in SUPPORTED_FORMATS


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_image_error(data: bytes) -> None:
    check_only_image_errors(data)


@FUZZ
@given(mutated_photos())
def test_mutated_photos_only_ever_raise_image_error(data: bytes) -> None:
    check_only_image_errors(data)


# --------------------------------------------------------------------------------------------------
# What a decode costs (issue 15, finding 2): bounded by bit depth, sample format, frames, scans and time


def float_tiff(width: int, height: int) -> bytes:
    """A 32-bit float TIFF of a few hundred kilobytes that declares ``width`` x ``height`` pixels: every strip
    (one row each) points at the same row of bytes, so it decodes in full to width x height x 4 bytes."""
    row = np.linspace(0, 1, width, dtype="<f4").tobytes()
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1)]
    tags += [(273, 4, height, 0), (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, height, 0), (339, 3, 1, 3)]  # float
    offsets_at = 8 + 2 + 12 * len(tags) + 4
    counts_at = offsets_at + 4 * height
    row_at = counts_at + 4 * height
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        value = {273: offsets_at, 279: counts_at}.get(tag, value)
        ifd += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, count, value, *([0] if kind == 3 else []))
    strips = struct.pack(f"<{height}I", *[row_at] * height) + struct.pack(f"<{height}I", *[len(row)] * height)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strips + row


def many_scans_jpeg(extra_scans: int, width: int = 1600, height: int = 1200) -> bytes:
    """A progressive JPEG with ``extra_scans`` more copies of its smallest scan: each one walks the whole
    image again, so decoding time grows with them while the file barely grows (12 bytes a scan)."""
    blocks = np.random.default_rng(0).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    data = encode(Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)), "JPEG", progressive=True, quality=85)
    end = data.rfind(b"\xff\xd9")
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    smallest = min((data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)), key=len)
    return data[:end] + smallest * extra_scans + data[end:]


def test_float_tiff_is_decoded_in_range_to_uint8() -> None:
    loaded = load_image(float_tiff(200, 100))
    assert_rgb(loaded.pixels, 100, 200)
    assert loaded.pixels[50, 0].tolist() == [0, 0, 0] and loaded.pixels[50, -1].tolist() == [255, 255, 255]
    assert loaded.cost is not None and loaded.cost.seconds < 5


def test_a_sub_megabyte_float_tiff_that_would_need_gigabytes_is_refused_quickly() -> None:
    data = float_tiff(10_000, 10_000)  # 100 megapixels (under the pixel limit) of 32-bit floats: 400 MB raw
    assert len(data) < 1_000_000
    load_image(_png())  # the decoding worker is up
    started = time.perf_counter()
    with pytest.raises(
        ImageError, match=r"would need about 1\.9 GB of memory.*32-bit floating-point.*limit is 1\.5 GB"
    ):
        load_image(data)
    assert time.perf_counter() - started < 2.0


def test_a_progressive_jpeg_with_thousands_of_scans_is_refused_quickly() -> None:
    data = many_scans_jpeg(3000)
    assert len(data) < 2_000_000
    load_image(_png())
    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"JPEG built from 30\d\d scans.*the limit is 100"):
        load_image(data)
    assert time.perf_counter() - started < 2.0
    assert load_image(many_scans_jpeg(0)).pixels.shape == (1200, 1600, 3)  # an ordinary progressive JPEG loads


def test_a_file_with_too_many_pages_is_refused() -> None:
    pages = [Image.fromarray(gradient(16, 12)) for _ in range(40)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageError, match="more than 32 pictures or pages"):
        load_image(data)
    few = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:3])
    assert load_image(few).pixels.shape == (12, 16, 3)


def test_a_decode_past_its_deadline_is_killed_and_the_next_one_gets_a_fresh_worker() -> None:
    from core.engine.decoding import DecodeBudget, default_pool

    slow = many_scans_jpeg(85)  # 95 scans: under the limit, but each one walks 2 megapixels again
    load_image(_png())
    pool = default_pool()
    started_workers = pool.started
    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"took longer than 0\.05 seconds to decode"):
        load_image(slow, budget=DecodeBudget(seconds=0.05))
    assert time.perf_counter() - started < 1.0  # the caller does not wait for the decoder
    assert load_image(_png()).pixels.shape == (48, 64, 3)
    assert pool.started == started_workers + 1  # the killed worker was replaced once


def test_decode_memory_estimates_follow_bit_depth_and_sample_format() -> None:
    from core.engine.decoding import estimated_memory

    size = (1000, 1000)
    rgb, grey16, floats = (estimated_memory(mode, size) for mode in ("RGB", "I;16", "F"))
    assert rgb == 10_000_000 and grey16 == 17_000_000 and floats == 19_000_000
    assert estimated_memory("RGB", size, progressive=True) == rgb  # the coefficients are freed before converting
    assert estimated_memory("L", size, progressive=True) == 11_000_000
