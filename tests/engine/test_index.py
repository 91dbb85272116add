"""core.engine.index: incremental rebuilds, and one unreadable gallery photo must not stop the index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.search import Engine
from core.errors import EmptyGalleryError
from core.io import sha256_hex


@pytest.fixture(scope="module")
def photos(turtle_manifest) -> list[GalleryPhoto]:
    by_id: dict[str, list[Path]] = {}
    for row in turtle_manifest:
        by_id.setdefault(str(row["identity"]), []).append(Path(row["path"]))
    chosen = sorted(i for i, ps in by_id.items() if len(ps) >= 4)[:3]
    return [GalleryPhoto(sha256_hex(p.read_bytes()), ident, p) for ident in chosen for p in sorted(by_id[ident])[:3]]


def engine(cache: Path) -> Engine:
    # No prior ships for SIFT: each photo gets a few sampled null pairs, so the null models are compared too.
    return Engine("sift", {"max_side": 384, "max_keypoints": 384}, device="cpu", cache_dir=cache)


def same_index(a: GalleryIndex, b: GalleryIndex) -> None:
    assert [p.key for p in a.photos] == [p.key for p in b.photos]
    for fa, fb in zip(a.features, b.features, strict=True):
        assert np.array_equal(fa.descriptors, fb.descriptors) and np.array_equal(fa.keypoints, fb.keypoints)
    assert a.negatives.keys() == b.negatives.keys() and a.negative_identities == b.negative_identities
    for key in a.negatives:
        assert all(np.array_equal(x, y) for x, y in zip(a.negatives[key], b.negatives[key], strict=True))
    null_a, cal_a = a.model("confident")
    null_b, cal_b = b.model("confident")
    assert null_a.per_photo == null_b.per_photo and null_a.pooled == null_b.pooled and cal_a == cal_b


def test_adding_then_removing_a_photo_gives_back_the_same_index(photos, tmp_path) -> None:
    eng = engine(tmp_path)
    before = eng.build_index(photos[:-1])
    added = eng.build_index(photos, previous=before)
    assert len(added.photos) == len(photos)
    after = eng.build_index(photos[:-1], previous=added)
    same_index(before, after)
    # The rebuild reused the features it had in memory: the very same objects, nothing re-read or re-extracted.
    assert all(x is y for x, y in zip(before.features, after.features, strict=True))


def test_an_unreadable_gallery_photo_is_left_out_not_fatal(photos, tmp_path) -> None:
    eng = engine(tmp_path / "cache")
    broken_path = tmp_path / "broken.jpg"
    shutil.copy(photos[0].path, broken_path)
    broken_path.write_bytes(broken_path.read_bytes()[:200])  # a truncated file that no decoder can read
    broken = GalleryPhoto(sha256_hex(broken_path.read_bytes()), photos[0].identity, broken_path)
    index = eng.build_index([*photos, broken])
    assert broken.key in index.skipped and "broken" not in " ".join(str(p.path) for p in index.photos)
    assert len(index.photos) == len(photos)
    with pytest.raises(
        EmptyGalleryError, match=r"None of the gallery.s 1 photos can be searched with.*gallery photo broken.jpg"
    ):
        eng.build_index([broken])
