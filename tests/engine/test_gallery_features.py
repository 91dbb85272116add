"""core.engine.gallery_features: an index keeps gallery features in memory only up to its budget, reads the
others from the feature cache when asked, and searches exactly as with the whole gallery in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.engine.features import Features
from core.engine.gallery_features import FeatureMemory, GalleryFeatures, features_at
from core.engine.images import prepare
from core.engine.index import GalleryPhoto
from core.engine.search import Engine
from core.io import sha256_hex


def made(n: int, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    return Features(
        rng.random((n, 2), dtype=np.float32),
        rng.random((n, 128), dtype=np.float32),
        rng.random(n, dtype=np.float32),
        (64, 48),
        "test",
        "test-1",
    )


def test_memory_keeps_the_most_recently_used_within_its_budget() -> None:
    one = made(100)  # 100 × (2 + 128 + 1) × 4 bytes
    size = 100 * 131 * 4
    memory = FeatureMemory(3 * size)
    for key in "abc":
        memory.put(key, made(100))
    assert len(memory) == 3 and memory.nbytes == 3 * size
    assert memory.get("a") is not None  # "a" is now the most recently used: "b" goes first
    memory.put("d", one)
    assert memory.get("b") is None and memory.get("a") is not None and memory.get("d") is one
    assert memory.nbytes <= memory.budget
    memory.put("d", made(100, seed=1))  # the same key again replaces, never counts twice
    assert len(memory) == 3 and memory.nbytes == 3 * size
    tiny = FeatureMemory(size // 2)  # not even one photo fits: none is kept, nothing grows
    tiny.put("a", one)
    assert len(tiny) == 0 and tiny.nbytes == 0 and tiny.get("a") is None


def test_views_read_through_the_shared_memory() -> None:
    photos = [GalleryPhoto(f"{i:064x}", "t1", Path(f"{i}.jpg")) for i in range(4)]
    reads: list[str] = []

    def load(photo: GalleryPhoto) -> Features:
        reads.append(photo.sha256)
        return made(10, seed=int(photo.sha256, 16))

    store = GalleryFeatures(photos, load, FeatureMemory(10**6))
    view = features_at(store, [3, 1])
    assert isinstance(view, GalleryFeatures) and view.memory is store.memory and not reads  # nothing read yet
    assert np.array_equal(view[0].descriptors, made(10, seed=3).descriptors)
    assert view[1] is store[1] and len(reads) == 2  # photo 1 was read once, for both
    assert [f.descriptors[0, 0] for f in store] == [made(10, seed=i).descriptors[0, 0] for i in range(4)]
    assert len(reads) == 4
    assert features_at([made(1), made(2)], [1])[0].keypoints.shape == (2, 2)  # a plain list stays a list


@pytest.fixture(scope="module")
def gallery(turtle_manifest) -> tuple[list[GalleryPhoto], Path]:
    by_id: dict[str, list[Path]] = {}
    for row in turtle_manifest:
        by_id.setdefault(str(row["identity"]), []).append(Path(row["path"]))
    chosen = sorted(i for i, ps in by_id.items() if len(ps) >= 5)[:3]
    photos = [GalleryPhoto(sha256_hex(p.read_bytes()), i, p) for i in chosen for p in sorted(by_id[i])[:3]]
    query = sorted(by_id[chosen[1]])[4]
    return photos, query


def sift(cache: Path, memory_mib: int) -> Engine:
    return Engine(
        "sift", {"max_side": 384, "max_keypoints": 384}, device="cpu", cache_dir=cache, feature_memory_mib=memory_mib
    )


def test_a_gallery_over_its_budget_searches_exactly_as_one_held_whole(gallery, tmp_path) -> None:
    photos, query_path = gallery
    whole, tight = sift(tmp_path, 64), sift(tmp_path, 1)  # one cache; 1 MiB holds about five of these photos
    reads = 0
    load = tight.photo_features

    def counted(photo: GalleryPhoto) -> Features:
        nonlocal reads
        reads += 1
        return load(photo)

    tight.photo_features = counted  # type: ignore[method-assign]
    index_whole, index_tight = whole.build_index(photos), tight.build_index(photos)
    assert isinstance(index_tight.features, GalleryFeatures)
    memory = index_tight.features.memory
    assert 0 < len(memory) < len(photos) and memory.nbytes <= 2**20  # some photos only, within the budget
    query = whole.extractor.extract(prepare(query_path, max_side=384))
    reads_before = reads
    a = whole.rank(whole.match_gallery(query, index_whole), index_whole)
    b = tight.rank(tight.match_gallery(query, index_tight), index_tight)
    assert reads > reads_before  # the photos out of memory were read again from the cache
    assert a.ranking == b.ranking
    assert [c.probability for c in a.candidates] == [c.probability for c in b.candidates]
    assert [c.matches for c in a.candidates] == [c.matches for c in b.candidates]


def test_the_next_version_reads_no_unchanged_photo(gallery, tmp_path) -> None:
    photos, _ = gallery
    engine = sift(tmp_path, 64)
    first = engine.build_index(photos[:-1])
    loads: list[str] = []
    load = engine.photo_features

    def counted(photo: GalleryPhoto) -> Features:
        loads.append(photo.key)
        return load(photo)

    engine.photo_features = counted  # type: ignore[method-assign]
    grown = engine.build_index(photos, previous=first)
    # Only the new photo's features were fetched; its null pairs read the others from the shared memory.
    assert loads == [photos[-1].key]
    assert isinstance(grown.features, GalleryFeatures) and isinstance(first.features, GalleryFeatures)
    assert grown.features.memory is first.features.memory
