"""The catalogue import through the bulk pipeline (core.engine.bulk): the same features as photo by photo, bad rows
reported by line while the rest go on, and rows of one photo or individual written in line order whatever order
they finish in."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from fixtures.models import SMALL_ALIKED_CONF
from PIL import Image
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.catalogue.importer import _WriteOrder, import_rows
from core.catalogue.manifest import ManifestRow, read_manifest
from core.engine.images import load_image
from core.engine.search import Engine as SearchEngine
from core.io import sha256_hex
from core.store.db import init_db, session_scope
from core.store.models import FeatureRecord, Individual, Photo
from core.store.photos import PhotoStore


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    yield engine
    engine.dispose()


def _photo(seed: int) -> bytes:
    """A 128x96 JPEG of smooth random blobs: plenty of SIFT keypoints."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((128, 96), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_bulk_import_gives_the_features_of_photo_by_photo_extraction(
    db: Engine, data_dir: Path, tmp_path: Path
) -> None:
    """Features, cache key and feature record of real turtle photos are those of ``Engine.features`` on each
    decoded photo (the import's former path), so caches and indexes built either way stay valid."""
    root = data_dir / "turtles"
    rows = read_manifest(root / "manifest.csv")[:4]
    bulk = SearchEngine("aliked", dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=tmp_path / "bulk")
    single = SearchEngine("aliked", dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=tmp_path / "single")

    def not_photo_by_photo(rgb: np.ndarray) -> None:
        raise AssertionError("the import extracts through the bulk pipeline")

    bulk.extractor.extract = not_photo_by_photo  # type: ignore[method-assign]
    report = import_rows(db, PhotoStore(tmp_path / "photos"), bulk, rows, root)
    assert (report.added, report.problems) == (len(rows), [])
    version = bulk.extractor.version
    assert version == single.extractor.version
    for row in rows:
        data = (root / row.path).read_bytes()
        sha = sha256_hex(data)
        one = single.features(load_image(data).pixels, sha)
        kept = bulk.feature_cache.get(version, sha)
        assert kept is not None and len(kept) == len(one) > 0
        np.testing.assert_array_equal(kept.keypoints, one.keypoints)
        np.testing.assert_array_equal(kept.descriptors, one.descriptors)
        np.testing.assert_array_equal(kept.scores, one.scores)
        assert (kept.image_size, kept.version) == (one.image_size, one.version)
        relpath = single.feature_cache.path(version, sha).relative_to(single.feature_cache.root)
        with session_scope(db) as session:
            record = session.exec(
                select(FeatureRecord).join(Photo, Photo.id == FeatureRecord.photo_id).where(Photo.sha256 == sha)
            ).one()
        assert (record.path, record.version, record.n_keypoints) == (str(relpath), version, len(one))


def test_a_bad_row_in_the_middle_is_reported_by_line_and_the_rows_after_it_are_imported(
    db: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for i in range(5):
        (folder / f"p{i}.jpg").write_bytes(_photo(900 + i))
    (folder / "corrupt.jpg").write_bytes(_photo(999)[:400])  # cut off mid-scan
    rows = [
        ManifestRow("p0.jpg", "T-1", "left"),
        ManifestRow("p1.jpg", "", "left"),  # line 3: no identity
        ManifestRow("p2.jpg", "T-1", "left"),
        ManifestRow("corrupt.jpg", "T-2", "left"),  # line 5
        ManifestRow("p3.jpg", "T-2", "right"),
        ManifestRow("missing.jpg", "T-2"),  # line 7
        ManifestRow("p4.jpg", "T-3"),
    ]
    engine = SearchEngine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path / "engine")
    progress: list[tuple[int, int]] = []
    report = import_rows(
        db, PhotoStore(tmp_path / "photos"), engine, rows, folder, lambda d, t: progress.append((d, t))
    )
    assert [(problem.line, problem.path) for problem in report.problems] == [
        (3, "p1.jpg"),
        (5, "corrupt.jpg"),
        (7, "missing.jpg"),
    ]
    assert "identity is empty" in report.problems[0].reason and "does not exist" in report.problems[2].reason
    assert (report.added, report.individuals_created) == (4, 3)
    assert progress == [(done, len(rows)) for done in range(1, len(rows) + 1)]
    with session_scope(db) as session:
        stored = {p.original_name: p.individual_id for p in session.exec(select(Photo)).all()}
        codes = {i.id: i.code for i in session.exec(select(Individual)).all()}
        assert len(session.exec(select(FeatureRecord)).all()) == 4
    assert {name: codes[owner] for name, owner in stored.items()} == {
        "p0.jpg": "T-1",
        "p2.jpg": "T-1",
        "p3.jpg": "T-2",
        "p4.jpg": "T-3",
    }


@pytest.mark.parametrize("seed", range(60))
def test_rows_of_one_photo_or_individual_are_written_in_line_order_whatever_order_they_finish_in(seed: int) -> None:
    """Rows finish in any order (batches on a GPU fill late); a row is written once no earlier unfinished row
    has its photo or individual, or might have its photo (not decoded yet); every finished row is written once."""
    rng = random.Random(seed)
    count = rng.randint(1, 14)
    shas = [rng.choice("abcd") for _ in range(count)]
    codes = [rng.choice("XYZ") for _ in range(count)]
    failed = {row for row in range(count) if rng.random() < 0.2}
    order: _WriteOrder[str] = _WriteOrder(codes)
    known: set[int] = set()
    done: set[int] = set()
    written: list[int] = []
    # Rows that fail before their photo is decoded (checks, unreadable file) never report one.
    events = [row for row in range(count) if row not in failed or rng.random() < 0.5]
    rng.shuffle(events)
    arrivals = list(range(count))
    rng.shuffle(arrivals)
    for row in arrivals:
        while row in events:  # a row's photo is known before its features come
            decoded = events.pop(0)
            order.photo(decoded, shas[decoded])
            known.add(decoded)
        if row in failed:
            done.add(row)
        for ready, value in order.arrive(row, None if row in failed else f"features of {row}"):
            assert value == f"features of {ready}" and ready not in failed
            earlier = [i for i in range(ready) if i not in done]
            assert all(i in known and shas[i] != shas[ready] and codes[i] != codes[ready] for i in earlier)
            written.append(ready)
            done.add(ready)
    assert sorted(written) == sorted(set(range(count)) - failed) and order.waiting == 0
    for key in (*set(shas), *set(codes)):
        mine = [row for row in written if key in (shas[row], codes[row])]
        assert mine == sorted(mine)
