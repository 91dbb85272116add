"""Crops of one exposure share pixels, not an animal: their exact matches are set aside before a pair is scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.catalogue.manifest import ManifestRow
from core.engine.exposure import ExposureConf, set_aside_shared_exposure, shared_exposure, similarity_inliers
from core.engine.matching import MatchResult
from core.engine.search import Engine
from core.evaluation.protocol import manifest_photo


def _similar(points: np.ndarray, scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    z = points[:, 0] + 1j * points[:, 1]
    w = scale * np.exp(1j * np.radians(degrees)) * z + complex(*shift)
    return np.c_[w.real, w.imag]


def test_the_matches_one_similarity_explains_are_found_among_others() -> None:
    rng = np.random.default_rng(3)
    p0 = rng.uniform(0, 900, (160, 2))
    p1 = _similar(p0, 0.63, 7.0, (41.0, -12.5)) + rng.normal(0, 0.3, (160, 2))
    p1[110:] = rng.uniform(0, 900, (50, 2))  # 50 matches elsewhere
    found = similarity_inliers(p0, p1, tolerance=2.0, trials=256)
    assert found[:110].all() and not found[110:].any()


def test_a_pair_is_a_shared_exposure_only_when_most_strong_matches_agree_exactly() -> None:
    rng = np.random.default_rng(4)
    conf = ExposureConf(tolerance=2.0, min_matches=12, min_fraction=0.5)
    p0 = rng.uniform(0, 900, (100, 2))
    p1 = rng.uniform(0, 900, (100, 2))
    p1[:60] = _similar(p0[:60], 1.0, 0.0, (-350.0, 4.0))
    strong = np.ones(100, dtype=bool)
    assert shared_exposure(p0, p1, strong, conf)[:60].all()
    p1[20:60] = rng.uniform(0, 900, (40, 2))  # 20 of 100 agree: another animal's few rigid matches, not one frame
    assert not shared_exposure(p0, p1, strong, conf).any()
    weak = np.zeros(100, dtype=bool)
    weak[:10] = True  # fewer strong matches than min_matches: never a shared exposure
    assert not shared_exposure(p0, _similar(p0, 1.0, 0.0, (3.0, 3.0)), weak, conf).any()


def test_set_aside_keeps_the_other_matches_and_counts_the_removed() -> None:
    rng = np.random.default_rng(5)
    p0 = rng.uniform(0, 900, (80, 2)).astype(np.float32)
    p1 = rng.uniform(0, 900, (80, 2)).astype(np.float32)
    p1[:50] = _similar(p0[:50], 1.2, 0.0, (10.0, 20.0))
    conf = np.r_[np.full(70, 0.95), np.full(10, 0.3)].astype(np.float32)
    result = MatchResult(np.arange(80), np.arange(80), conf, p0, p1, 900, 900)
    kept = set_aside_shared_exposure(result, 0.8, ExposureConf())
    assert kept.shared_exposure == 50 and kept.n_matches == 30
    assert set(kept.idx0.tolist()) == set(range(50, 80))
    untouched = MatchResult(np.arange(80), np.arange(80), conf, p0, rng.uniform(0, 900, (80, 2)), 900, 900)
    assert set_aside_shared_exposure(untouched, 0.8, ExposureConf()) is untouched
    # 50 exact matches out of 90 keypoints: the same photo twice (a copy, resized), which shows the same animal.
    copy = MatchResult(np.arange(80), np.arange(80), conf, p0, p1, 90, 120)
    assert set_aside_shared_exposure(copy, 0.8, ExposureConf()) is copy


@pytest.fixture(scope="module")
def nyala_engine(tmp_path_factory) -> Engine:
    """Every match counts (``frame=None``), so that these tests see the exposure rule alone."""
    return Engine(
        "aliked",
        {"max_side": 1024, "max_keypoints": 1024},
        device="cpu",
        cache_dir=tmp_path_factory.mktemp("c"),
        frame=None,
    )


def _photo(data_dir: Path, path: str):
    return manifest_photo(data_dir / "nyala", ManifestRow(f"images/{path}", path.split("/")[0]))


def test_two_nyala_cut_from_one_frame_no_longer_match_but_one_nyala_seen_twice_does(data_dir, nyala_engine) -> None:
    """Real crops: nyala_10 and nyala_18 drinking side by side, cut from one frame (their rocks match pixel for
    pixel), against two encounters of nyala_19."""
    engine = nyala_engine
    strong = engine.scoring.strong

    def pair(a: str, b: str) -> tuple[MatchResult, int]:
        query = engine.photo_features(_photo(data_dir, a))
        gallery = engine.photo_features(_photo(data_dir, b))
        raw = engine.matcher.match(query, gallery)
        (scored,) = engine.match_views(query, [gallery])
        return scored, int(np.count_nonzero(raw.confidence >= strong))

    strangers, before = pair("nyala_10/1022_right.jpg", "nyala_18/1020_left.jpg")
    assert before >= 60 and strangers.shared_exposure >= 0.8 * before
    assert np.count_nonzero(strangers.confidence >= strong) <= 0.2 * before
    same, before = pair("nyala_19/246_left.jpg", "nyala_19/74_left.jpg")
    assert before >= 30 and same.shared_exposure == 0
    assert np.count_nonzero(same.confidence >= strong) == before
    copy, before = pair("nyala_19/246_left.jpg", "nyala_19/246_left.jpg")  # one photo twice: a copy, kept
    assert before >= 300 and copy.shared_exposure == 0


def test_a_set_turned_against_the_other_photo_is_an_animal_not_a_shared_frame() -> None:
    """Crops of one frame are not turned against each other except by quarter turns (a photo saved or shown turned);
    a turtle's rigid head seen twice usually is turned a little, and keeps its matches."""
    rng = np.random.default_rng(6)
    p0 = rng.uniform(0, 900, (60, 2))
    strong = np.ones(60, dtype=bool)
    for degrees, shared in ((15.0, False), (-5.0, False), (90.0, True), (181.5, True)):
        p1 = _similar(p0, 0.9, degrees, (30.0, 60.0))
        assert shared_exposure(p0, p1, strong, ExposureConf()).all() == shared, degrees
        assert shared_exposure(p0, p1, strong, ExposureConf(max_rotation=None)).all()
