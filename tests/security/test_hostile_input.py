"""Hostile input: crafted photo headers, absurd EXIF, hostile uploads and hostile catalogue manifests.

Extends the fuzzing in test_images.py (random bytes, mutated photos) with what it does not cover:
declared sizes per format (pixel bombs), EXIF values drawn at random, extreme shapes in every format,
and the paths where bytes get *stored* (a sighting upload, a catalogue import): each bad input gets a
clear ScuteError or a skip with a reason, nothing else escapes, and nothing already stored changes.
Hypothesis example counts are modest so the module stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import shutil
import stat
import struct
import time
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from fixtures.photos import image_bytes
from fixtures.world import World, files_under, make_world, snapshot
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from sqlmodel import select

from core.catalogue.importer import import_rows
from core.catalogue.manifest import ManifestRow, read_manifest
from core.engine.decoding import DecodeBudget
from core.engine.features import Extractor, FeatureCache
from core.engine.images import load_image
from core.errors import ImageError, ManifestError, ScuteError
from core.io import sha256_hex
from core.review.sightings import CandidateInput, submit_sighting
from core.store.db import init_db, session_scope
from core.store.models import Individual, Photo, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SMALL_LIMIT = 2_000_000  # pixels; keeps "allowed" crafted images cheap to decode


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


# --- pixel bombs: declared sizes in every format -------------------------------------------------------


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(noise(16, 16), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _tiff_with_size(width: int, height: int) -> bytes:
    """A little-endian TIFF whose ImageWidth/ImageLength entries are rewritten as LONGs."""
    data = bytearray(encode(noise(16, 16), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", data, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def _webp_with_size(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP whose canvas size says ``width`` x ``height`` (24-bit fields, minus one)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    data = bytearray(encode(noise(16, 16), "WEBP", quality=80, exif=exif))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


CRAFTERS = {
    "PNG": (_png_with_size, 2**31 - 1),
    "JPEG": (_jpeg_with_size, 65535),
    "TIFF": (_tiff_with_size, 2**32 - 1),
    "WEBP": (_webp_with_size, 2**24),
}


@st.composite
def declared_sizes(draw: st.DrawFn) -> tuple[str, int, int]:
    fmt = draw(st.sampled_from(sorted(CRAFTERS)))
    limit = CRAFTERS[fmt][1]
    big = st.integers(1, limit)
    small = st.integers(1, 2048)
    width = draw(st.one_of(big, small))
    height = draw(st.one_of(big, small))
    return fmt, width, height


@FUZZ
@given(declared_sizes())
def test_declared_sizes_are_checked_before_decoding(case: tuple[str, int, int]) -> None:
    fmt, width, height = case
    data = CRAFTERS[fmt][0](width, height)
    started = time.perf_counter()
    try:
        loaded = load_image(data, max_pixels=SMALL_LIMIT)
    except ImageError as exc:
        message = str(exc)
        assert "Please" in message
        if width * height > SMALL_LIMIT:
            # Refused for its size (not by decoding it first), or its header did not even parse.
            assert "too large" in message or "damaged" in message or "not a photo" in message, message
    else:
        assert loaded.pixels.shape[0] * loaded.pixels.shape[1] <= SMALL_LIMIT
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape[2] == 3
    assert time.perf_counter() - started < 5.0  # never a full decode of a bomb


@pytest.mark.parametrize("fmt", sorted(CRAFTERS))
def test_each_format_bomb_is_refused_as_too_large(fmt: str) -> None:
    side = 60_000 if fmt == "JPEG" else 100_000
    with pytest.raises(ImageError, match="too large"):
        load_image(CRAFTERS[fmt][0](side, side))  # default limit: 120 MP


# --- what a decode costs: bit depth, sample format, frames, scans, memory and time (issue 15) -----------

#: Budgets small enough that generated headers reach them within a test's seconds.
COST_BUDGET = DecodeBudget(memory=200_000_000, seconds=3.0, frames=8, scans=40)


def _tiff(width: int, height: int, bits: int, sample_format: int, samples: int, pages: int) -> bytes:
    """A TIFF whose every strip (one row each) points at one row of bytes, so ``width`` x ``height`` pixels of
    any bit depth and sample format fit in a few kilobytes; ``pages`` chained copies of its directory."""
    row = bytes(range(256)) * (width * samples * bits // 8 // 256 + 1)
    row = row[: max(1, width * samples * bits // 8)]
    photometric = 2 if samples == 3 else 1
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, photometric)]
    tags += [(273, 4, height, 0), (277, 3, 1, samples), (278, 4, 1, 1), (279, 4, height, 0), (339, 3, 1, sample_format)]
    ifd_size = 2 + 12 * len(tags) + 4
    arrays_at = 8 + ifd_size * pages
    row_at = arrays_at + 8 * height
    out = b"II*\x00" + struct.pack("<I", 8)
    for page in range(pages):
        out += struct.pack("<H", len(tags))
        for tag, kind, count, value in tags:
            value = {273: arrays_at, 279: arrays_at + 4 * height}.get(tag, value)
            pack = (
                ("<HHIHH", (tag, kind, count, value, 0))
                if kind == 3 and count == 1
                else ("<HHII", (tag, kind, count, value))
            )
            out += struct.pack(pack[0], *pack[1])
        out += struct.pack("<I", 8 + ifd_size * (page + 1) if page + 1 < pages else 0)
    return out + struct.pack(f"<{height}I", *[row_at] * height) + struct.pack(f"<{height}I", *[len(row)] * height) + row


def _png(width: int, height: int, bits: int, colour: int) -> bytes:
    """A PNG of any declared bit depth and colour type, its rows all zero (compressed to almost nothing)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row_bytes = (width * channels * bits + 7) // 8
    raw = zlib.compress((b"\x00" * (row_bytes + 1)) * height, 9)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    palette = chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + palette + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _scans(width: int, height: int, extra: int, progressive: bool) -> bytes:
    """A JPEG with ``extra`` more copies of its smallest scan (each one walks the whole image again)."""
    blocks = np.random.default_rng(width * height).integers(0, 256, (max(1, height // 8), max(1, width // 8), 3))
    image = Image.fromarray(blocks.astype(np.uint8).repeat(8, 0).repeat(8, 1))
    data = encode(image, "JPEG", progressive=progressive, quality=85)
    end = data.rfind(b"\xff\xd9")
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    smallest = min((data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)), key=len)
    return data[:end] + smallest * extra + data[end:]


@st.composite
def costly_headers(draw: st.DrawFn) -> bytes:
    """Headers that change what a decode costs, not only how many bytes or pixels a file declares."""
    kind = draw(st.sampled_from(["tiff", "png", "jpeg", "bomb"]))
    side = st.one_of(st.integers(1, 64), st.integers(64, 2500))
    if kind == "tiff":
        bits = draw(st.sampled_from([1, 8, 16, 32, 64]))
        return _tiff(
            draw(side),
            draw(side),
            bits,
            draw(st.sampled_from([1, 2, 3])),
            draw(st.sampled_from([1, 3])),
            draw(st.integers(1, 12)),
        )
    if kind == "png":
        colour = draw(st.sampled_from([0, 2, 3, 4, 6]))
        return _png(draw(side), draw(side), draw(st.sampled_from([1, 2, 4, 8, 16])), colour)
    if kind == "jpeg":
        small = st.integers(8, 1024)
        return _scans(draw(small), draw(small), draw(st.integers(0, 120)), draw(st.booleans()))
    fmt = draw(st.sampled_from(sorted(CRAFTERS)))
    return CRAFTERS[fmt][0](draw(st.integers(1, 20_000)), draw(st.integers(1, 20_000)))


def check_decode_cost(data: bytes) -> None:
    """Refused with a message, or decoded within the budget's memory and time (measured in the worker)."""
    started = time.perf_counter()
    try:
        loaded = load_image(data, budget=COST_BUDGET)
    except ImageError as exc:
        assert "Please" in str(exc), exc
    else:
        assert loaded.cost is not None
        assert loaded.cost.peak_bytes <= COST_BUDGET.memory, loaded.cost
        assert loaded.cost.seconds <= COST_BUDGET.seconds, loaded.cost
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape[2] == 3
    # The deadline holds for the caller too: a stopped worker is not waited for (2 s: a fresh worker's start).
    assert time.perf_counter() - started < COST_BUDGET.seconds + 2.0


@settings(FUZZ, max_examples=12)
@given(costly_headers())
def test_decode_cost_stays_within_the_budget(data: bytes) -> None:
    """CI's short form (a few seconds); the long form below runs many more examples."""
    check_decode_cost(data)


@pytest.mark.slow
@settings(FUZZ, max_examples=400)
@given(costly_headers())
def test_decode_cost_stays_within_the_budget_long(data: bytes) -> None:
    check_decode_cost(data)


# --- extreme shapes in every format --------------------------------------------------------------------

SHAPES = [
    ("JPEG", (1, 1)),
    ("PNG", (1, 1)),
    ("WEBP", (1, 1)),
    ("TIFF", (1, 1)),
    ("JPEG", (30000, 10)),
    ("JPEG", (10, 30000)),
    ("PNG", (10, 30000)),
    ("TIFF", (30000, 10)),
    ("WEBP", (16383, 10)),  # WebP's largest side
]


@pytest.mark.parametrize(("fmt", "size"), SHAPES, ids=[f"{f}-{w}x{h}" for f, (w, h) in SHAPES])
def test_extreme_shapes_load_in_every_format(fmt: str, size: tuple[int, int]) -> None:
    width, height = size
    colour = np.zeros((height, width, 3), np.uint8)
    colour[..., 0] = 200
    loaded = load_image(encode(Image.fromarray(colour), fmt, **({"quality": 95} if fmt != "PNG" else {})))
    assert loaded.pixels.shape == (height, width, 3)
    assert (loaded.info.width, loaded.info.height) == (width, height)
    assert abs(int(loaded.pixels[height // 2, width // 2, 0]) - 200) <= 8


# --- EXIF with absurd values ---------------------------------------------------------------------------

_RATIONAL_PARTS = st.integers(0, 2**32 - 1)


@st.composite
def absurd_exif(draw: st.DrawFn) -> Image.Exif:
    exif = Image.Exif()
    if draw(st.booleans()):
        exif[ExifTags.Base.Orientation] = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        exif[ExifTags.Base.DateTime] = draw(st.text(st.characters(codec="ascii"), max_size=40))
    if draw(st.booleans()):
        year = draw(st.integers(0, 9999))
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = (
            f"{year:04d}:{draw(st.integers(0, 99)):02d}:{draw(st.integers(0, 99)):02d} "
            f"{draw(st.integers(0, 99)):02d}:{draw(st.integers(0, 99)):02d}:{draw(st.integers(0, 99)):02d}"
        )
    if draw(st.booleans()):
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        for tag, ref_tag in (
            (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef),
            (ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef),
        ):
            parts = draw(st.lists(st.tuples(_RATIONAL_PARTS, _RATIONAL_PARTS), min_size=1, max_size=3))
            gps[tag] = tuple(IFDRational(n, d) for n, d in parts)
            gps[ref_tag] = draw(st.sampled_from(["N", "S", "E", "W", "X", "", "north"]))
    return exif


@FUZZ
@given(absurd_exif(), st.sampled_from(["JPEG", "WEBP", "PNG", "TIFF"]))
def test_absurd_exif_never_fails_a_load_and_never_leaks_absurd_values(exif: Image.Exif, fmt: str) -> None:
    try:
        data = encode(noise(12, 8), fmt, exif=exif)
    except (ValueError, TypeError, struct.error, OverflowError):  # Pillow cannot even write it
        assume(False)
        return
    loaded = load_image(data)
    info = loaded.info
    assert sorted(loaded.pixels.shape[:2]) == [8, 12]  # any orientation, never a crash
    if info.taken_at is not None:
        assert 1900 <= info.taken_at.year <= datetime.now().year + 1
    assert (info.latitude is None) == (info.longitude is None)
    if info.latitude is not None:
        assert math.isfinite(info.latitude) and -90 <= info.latitude <= 90
        assert math.isfinite(info.longitude) and -180 <= info.longitude <= 180


# --- uploads: a hostile photo never gets stored ---------------------------------------------------------


def _candidates(w: World) -> list[CandidateInput]:
    return [CandidateInput(individual_id=w.t1, rank=1, score=0.5, probability=0.5, n_matches=10)]


def _submit(engine, store: PhotoStore, w: World, data: bytes, **kwargs: Any):
    with session_scope(engine) as session:
        user = session.get(User, w.alice)
        return submit_sighting(
            session, store, user, data, candidates=_candidates(w), new_individual_probability=0.2, **kwargs
        )


def test_photo_with_a_valid_header_and_a_truncated_body_is_not_stored(engine, store: PhotoStore, world: World) -> None:
    """Regression: submit_sighting only read the header, so a truncated upload became a sighting whose photo
    could join the gallery and then break every search that loaded it."""
    data = encode(noise(256, 192, seed=7), "JPEG", quality=90)
    truncated = data[: len(data) * 2 // 3]
    before, files_before = snapshot(engine), files_under(store.root)
    with pytest.raises(ImageError, match=r"ends too early|damaged"):
        _submit(engine, store, world, truncated, proposal="same", proposed_individual_id=world.t1)
    assert snapshot(engine) == before
    assert files_under(store.root) == files_before


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    if cut is not None:
        del out[cut % len(out) :]
    return bytes(out)


_SEEDS = {
    "JPEG": encode(noise(48, 32, 1), "JPEG", quality=85),
    "PNG": encode(noise(48, 32, 2), "PNG"),
    "WEBP": encode(noise(48, 32, 3), "WEBP", quality=85),
    "TIFF": encode(noise(48, 32, 4), "TIFF"),
}


@FUZZ
@given(
    st.sampled_from(sorted(_SEEDS)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(1, 10**6)),
)
def test_hostile_uploads_are_refused_without_storing_anything(
    tmp_path: Path, fmt: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    """Any upload either becomes a sighting whose photo decodes fully, or is refused and changes nothing."""
    database = tmp_path / "fuzz.db"
    first = not database.exists()
    engine = init_db(f"sqlite:///{database}")
    store = PhotoStore(tmp_path / "photos")
    try:
        w = make_world(engine, store) if first else _world_from(engine)
        data = _mutate(_SEEDS[fmt], flips, cut)
        before, files_before = snapshot(engine), files_under(store.root)
        try:
            submission = _submit(engine, store, w, data)
        except ScuteError as exc:
            assert str(exc)
            assert snapshot(engine) == before
            assert files_under(store.root) == files_before
        else:
            stored = store.path(submission.photo.path).read_bytes()
            assert stored == data
            load_image(stored)  # what was accepted decodes completely
            for table in ("individual", "user_account"):
                assert snapshot(engine)[table] == before[table]  # an upload never changes these
    finally:
        engine.dispose()


def _world_from(engine) -> World:
    with session_scope(engine) as session:
        ids = {u.username: u.id for u in session.exec(select(User)).all()}
        codes = {i.code: i.id for i in session.exec(select(Individual)).all()}
        photos = list(session.exec(select(Photo.id).where(Photo.in_gallery)).all())
    return World(
        ids["admin"], ids["alice"], ids["bob"], ids["carol"], ids["dave"], codes["T-0001"], codes["T-0002"], photos
    )


# --- catalogue manifests --------------------------------------------------------------------------------


def test_manifest_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    for header in ("", "file,name\n", "path\n", "identity,side\n"):
        manifest = tmp_path / "m.csv"
        manifest.write_text(header + "a.jpg,T-1\n" if header else "")
        with pytest.raises(ManifestError, match="needs the columns path and identity"):
            read_manifest(manifest)


def test_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,identity\nfoto.jpg,Tortuga Ñandú\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(manifest)


def test_manifest_rows_with_extra_fields_or_huge_fields_are_read_not_crashed(tmp_path: Path) -> None:
    """Regression: an extra field (csv gives a list under key None) crashed with AttributeError, and a field
    over csv's size limit escaped as csv.Error."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,identity\na.jpg,T-1,extra,more\nb.jpg,T-2\n")
    rows = read_manifest(manifest)
    assert rows == [ManifestRow("a.jpg", "T-1", "unknown"), ManifestRow("b.jpg", "T-2", "unknown")]
    manifest.write_text("path,identity\n" + "x" * 200_000 + ",T-1\n")
    with pytest.raises(ManifestError, match="cannot be read as CSV"):
        read_manifest(manifest)


@FUZZ
@given(st.binary(max_size=600))
def test_manifest_reader_never_crashes_on_random_bytes(tmp_path: Path, data: bytes) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path,identity,side\n" + data)
    try:
        rows = read_manifest(manifest)
    except ManifestError as exc:
        assert str(exc)
        return
    for row in rows:
        assert isinstance(row.path, str) and isinstance(row.identity, str) and isinstance(row.side, str)


class _StubExtractor(Extractor):
    """An extractor without a model: every decoded photo, however small or plain, gets the same eight keypoints."""

    name = "stub"
    default_conf: ClassVar[dict[str, Any]] = {"max_side": 64}

    def working(self, rgb: np.ndarray) -> np.ndarray:
        assert rgb.ndim == 3
        return rgb

    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        points = np.arange(16, dtype=np.float32).reshape(8, 2)
        return points, np.ones((8, 4), np.float32), np.ones(8, np.float32), {}


class _StubEngine:
    """The importer's view of core.search.Engine, without the model: the tests are about the input."""

    def __init__(self, root: Path) -> None:
        self.feature_cache = FeatureCache(root / "features")
        self.extractor = _StubExtractor(device="cpu")


def _catalogue(root: Path) -> dict[str, bytes]:
    """Photos, a folder, a non-photo, a truncated photo and a link leading out of the catalogue."""
    root.mkdir(parents=True, exist_ok=True)
    files = {f"good{i}.png": image_bytes(100 + i) for i in range(4)}
    files["notes.txt"] = b"not a photo"
    files["cut.jpg"] = encode(noise(64, 48, 9), "JPEG")[:300]
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "folder.jpg").mkdir(exist_ok=True)
    outside = root.parent / "secret.png"
    outside.write_bytes(image_bytes(999))
    link = root / "link.png"
    if not link.exists():
        link.symlink_to(outside)
    return files


PATHS = [
    "good0.png",
    "good1.png",
    "good2.png",
    "good3.png",
    "notes.txt",
    "cut.jpg",
    "folder.jpg",
    "missing.jpg",
    "../secret.png",
    "link.png",
    "/etc/passwd",
    "",
    "good0.png\x00.jpg",
]
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
IDENTITIES = st.one_of(
    st.sampled_from(["T-0001", "T-0002", "T-0099", " T-0001 ", "t-0001", "", "   ", "x" * 65, "T\x00NUL", "T\t1"]),
    st.text(max_size=20),
)
SIDES_IN = st.sampled_from(["", "left", "LEFT", "right", "sideways", "top"])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), IDENTITIES, SIDES_IN), min_size=1, max_size=8))
def test_hostile_catalogue_rows_are_skipped_with_a_reason_and_change_nothing_stored(
    tmp_path: Path, rows: list[tuple[str, str, str]]
) -> None:
    """Missing files, escapes, links out, non-photos, unknown or absurd identities, duplicate rows: every row
    is imported, already present, or reported with a reason; what was stored before stays exactly as it was."""
    root = tmp_path / "catalogue"
    _catalogue(root)
    home = tmp_path / "home"
    database = tmp_path / "import.db"
    first = not database.exists()
    engine = init_db(f"sqlite:///{database}")
    store = PhotoStore(home / "photos")
    stub = _StubEngine(home)
    try:
        if first:
            report = import_rows(engine, store, stub, [ManifestRow("good0.png", "T-0001")], root)
            assert report.added == 1
        before, files_before = snapshot(engine), files_under(store.root)
        manifest_rows = [ManifestRow(path, identity, side) for path, identity, side in rows]
        report = import_rows(engine, store, stub, manifest_rows, root)
        after, files_after = snapshot(engine), files_under(store.root)
    finally:
        engine.dispose()
    assert report.added + report.already_present + len(report.problems) == len(rows)
    assert all(problem.reason for problem in report.problems)
    for table, old_rows in before.items():
        assert set(old_rows) <= set(after[table]), table  # nothing stored before changed or vanished
    for name, content in files_before.items():
        assert files_after[name] == content
    # The store only ever holds photos named by their content, and only those of the catalogue's good photos.
    good = {sha256_hex(image_bytes(100 + i)) for i in range(4)}
    assert {Path(name).name.split(".")[0] for name in files_after} <= good
    assert len(after["photo"]) == len({Path(n).name for n in files_after})
    # An identity that made it in is stored exactly as given (stripped), with no control characters.
    codes = {row[1] for row in after["individual"]}
    assert all(code == code.strip() and 0 < len(code) <= 64 and not _FORBIDDEN.search(code) for code in codes)


def test_hostile_catalogue_identities_on_every_backend(db_url: str, tmp_path: Path) -> None:
    """NUL and control characters are refused the same way on SQLite and PostgreSQL (which would raise a
    driver error), and a row's failure never stops the import of the others."""
    root = tmp_path / "catalogue"
    _catalogue(root)
    engine = init_db(db_url)
    store = PhotoStore(tmp_path / "home" / "photos")
    rows = [
        ManifestRow("good0.png", "T\x00NUL"),
        ManifestRow("good1.png", "T-\x1b[31mRED"),
        ManifestRow("good2.png", "Robert'); DROP TABLE individual;--"),
        ManifestRow("good3.png", "T-0003"),
        ManifestRow("good3.png", "T-0003"),  # duplicate row
        ManifestRow("good3.png", "T-0004"),  # same photo, other identity
    ]
    try:
        report = import_rows(engine, store, _StubEngine(tmp_path / "home"), rows, root)
        with session_scope(engine) as session:
            codes = sorted(session.exec(select(Individual.code)).all())
    finally:
        engine.dispose()
    assert (report.added, report.already_present) == (2, 1)
    reasons = {problem.line: problem.reason for problem in report.problems}
    assert set(reasons) == {2, 3, 7}
    assert "control characters" in reasons[2] and "control characters" in reasons[3]
    assert "another identity" in reasons[7]
    assert codes == ["Robert'); DROP TABLE individual;--", "T-0003"]


def test_csv_written_by_spreadsheets_round_trips(tmp_path: Path) -> None:
    """BOM, CRLF, quoted fields with commas and quotes: read exactly."""
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["Path", "Identity", "Side"])
        writer.writerow(["a, b.jpg", 'T-"1"', "Left"])
    assert read_manifest(manifest) == [ManifestRow("a, b.jpg", 'T-"1"', "Left")]


def test_unreadable_file_and_nul_path_skip_the_row_and_the_import_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a NUL in a manifest path (ValueError) or an unreadable file (OSError) aborted the whole
    import with a traceback instead of skipping that row."""
    root = tmp_path / "catalogue"
    _catalogue(root)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "good1.png":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    engine = init_db(f"sqlite:///{tmp_path / 'g.db'}")
    rows = [ManifestRow("good0.png\x00.jpg", "T-1"), ManifestRow("good1.png", "T-1"), ManifestRow("good2.png", "T-1")]
    try:
        report = import_rows(engine, PhotoStore(tmp_path / "photos"), _StubEngine(tmp_path), rows, root)
    finally:
        engine.dispose()
    assert report.added == 1
    assert [(p.line, p.reason) for p in report.problems] == [
        (2, "the path contains a NUL character"),
        (3, "the file cannot be read (Permission denied)"),
    ]


# --- catalogue ZIPs (core.exchange) -------------------------------------------------------------------------
# test_exchange.py checks each unsafe kind of member once; here they are combined at random, and the
# archive's bytes are damaged at random, to show that nothing escapes ScuteError and nothing leaks out.

_ZIP_NAMES = [
    "good0.png",
    "good1.png",
    "sub/good2.png",
    "../evil.png",
    "/abs/evil.png",
    "a/../../evil.png",
    "C:\\evil.png",
    "..\\evil.png",
    "link.png",
    "bomb.png",
    "notes.txt",
    "x" * 300 + ".png",
]


def _zip_member(archive: Any, name: str, seed: int) -> None:
    if name == "link.png":
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    elif name == "bomb.png":
        archive.writestr(name, b"\x00" * (3 << 19), compress_type=zipfile.ZIP_DEFLATED)  # 1.5 MiB, ratio ~1000
    elif name == "notes.txt":
        archive.writestr(name, b"not a photo")
    else:
        archive.writestr(name, image_bytes(200 + seed))


@st.composite
def hostile_zips(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]], list[tuple[int, int]], int | None]:
    members = draw(st.lists(st.sampled_from(_ZIP_NAMES), min_size=1, max_size=6))
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from([*_ZIP_NAMES, "missing.png", ""]), st.sampled_from(["T-0001", "T-0002", ""])),
            max_size=5,
        )
    )
    flips = draw(st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), max_size=3))
    cut = draw(st.one_of(st.none(), st.integers(0, 10**7)))
    return members, rows, flips, cut


@settings(FUZZ, max_examples=15)
@given(hostile_zips())
def test_hostile_catalogue_zips_change_nothing_outside_the_gallery(tmp_path: Path, case: Any) -> None:
    """``../`` and absolute names, links, duplicates, zip bombs, non-photos and damaged bytes, combined: the
    import raises a ScuteError or reports skips; nothing is written outside the photo store, nothing already
    stored changes."""
    from core.catalogue.zip_import import import_zip

    members, rows, flips, cut = case
    workdir = tmp_path / "case"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        lines = ["path,identity"] + [f"{path},{identity}" for path, identity in rows]
        archive.writestr("manifest.csv", "\n".join(lines) + "\n")
        for i, name in enumerate(members):
            with contextlib.suppress(ValueError):  # zipfile refuses some names itself
                _zip_member(archive, name, i)
    data = _mutate(buffer.getvalue(), flips, cut) if flips or cut is not None else buffer.getvalue()
    path = workdir / "catalogue.zip"
    path.write_bytes(data)
    (workdir / "work").mkdir()
    home = workdir / "home"
    engine = init_db(f"sqlite:///{workdir / 'gallery.db'}")
    store = PhotoStore(home / "photos")
    try:
        baseline = [ManifestRow("good0.png", "T-0001")]
        import_rows(engine, store, _StubEngine(home), baseline, _baseline_catalogue(workdir))
        before, files_before = snapshot(engine), files_under(store.root)
        try:
            report = import_zip(engine, store, _StubEngine(home), path, work_dir=workdir / "work")
        except ScuteError as exc:
            assert str(exc)
            assert snapshot(engine) == before
        else:
            assert all(problem.reason for problem in report.problems)
        after, files_after = snapshot(engine), files_under(store.root)
    finally:
        engine.dispose()
    for table, old_rows in before.items():
        assert set(old_rows) <= set(after[table]), table
    assert {k: files_after[k] for k in files_before} == files_before
    assert all(Path(k).name.split(".")[0] == sha256_hex(v) for k, v in files_after.items())
    assert list((workdir / "work").iterdir()) == []  # the private extraction folder is gone
    # Nothing but the gallery's own files anywhere: no evil.png, no link, no extracted member.
    top = {p.name for p in workdir.iterdir()}
    assert top <= {"catalogue.zip", "gallery.db", "gallery.db-wal", "gallery.db-shm", "home", "baseline", "work"}
    assert not [p for p in tmp_path.rglob("*") if "evil" in p.name or p.name == "link.png"]
    assert {p.name for p in home.iterdir()} <= {"photos", "features"}


def _baseline_catalogue(workdir: Path) -> Path:
    root = workdir / "baseline"
    root.mkdir(exist_ok=True)
    (root / "good0.png").write_bytes(image_bytes(100))
    return root
