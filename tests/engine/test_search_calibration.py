"""The new-individual probability is calibrated on what ranking uses: an individual's score from its best photos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.matching import MatchResult
from core.engine.scoring import ScoringConf
from core.engine.search import Engine

SC = ScoringConf(method="confident", threshold=0.8, null_shrinkage=4.0)
PHOTOS_PER_INDIVIDUAL = 6
INDIVIDUALS = [f"T{i}" for i in range(8)]


def _confidences(rng: np.random.Generator, strong: int, weak: int = 40) -> np.ndarray:
    return np.concatenate([rng.uniform(0.85, 1.0, strong), rng.uniform(0.1, 0.6, weak)]).astype(np.float32)


def _result(conf: np.ndarray) -> MatchResult:
    n = len(conf)
    idx = np.arange(n)
    points = np.zeros((n, 2), np.float32)
    return MatchResult(idx, idx, conf, points, points, 2048, 2048)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, GalleryIndex]:
    """Turtle-like pairs: strangers share 0-2 strong matches by chance; half of an individual's other
    photos show the other side of the head and share no more than strangers do."""
    rng = np.random.default_rng(7)
    photos = [
        GalleryPhoto(f"{ident}{j:02d}".ljust(64, "0"), ident, Path(f"{ident}-{j}.jpg"))
        for ident in INDIVIDUALS
        for j in range(PHOTOS_PER_INDIVIDUAL)
    ]
    negatives, positives, owners = {}, {}, {}
    for p in photos:
        others = [q for q in photos if q.identity != p.identity]
        partners = [others[i] for i in rng.choice(len(others), 24, replace=False)]
        negatives[p.key] = [_confidences(rng, int(rng.integers(0, 3))) for _ in partners]
        owners[p.key] = [q.identity for q in partners]
        positives[p.key] = [_confidences(rng, int(rng.integers(25, 60)))]
        positives[p.key] += [_confidences(rng, int(rng.integers(0, 3))) for _ in range(3)]  # other side
    index = GalleryIndex(photos, [None] * len(photos), negatives, positives, SC, owners)
    engine = Engine("sift", device="cpu", scoring=SC, cache_dir=tmp_path_factory.mktemp("engine"))
    return engine, index


def _query(index: GalleryIndex, rng: np.random.Generator, match: str | None) -> list[MatchResult]:
    """A query that is ``match``'s other photo from the same side, or a stranger when None."""
    results = []
    for p in index.photos:
        same_side = p.identity == match and p.path.name.endswith("-0.jpg")
        strong = int(rng.integers(30, 50)) if same_side else int(rng.integers(0, 3))
        results.append(_result(_confidences(rng, strong)))
    return results


def test_a_stranger_is_more_likely_new_than_known(gallery: tuple[Engine, GalleryIndex]) -> None:
    engine, index = gallery
    rng = np.random.default_rng(11)
    strangers = [engine.rank(_query(index, rng, None), index).new_individual_probability for _ in range(20)]
    known = [engine.rank(_query(index, rng, "T3"), index) for _ in range(20)]
    assert np.median(strangers) > 0.5
    assert all(k.ranking[0] == "T3" for k in known)
    assert max(k.new_individual_probability for k in known) < 0.1


def _with_rule(index: GalleryIndex, photos: int) -> GalleryIndex:
    return dataclasses.replace(index, scoring=dataclasses.replace(SC, individual_photos=photos), _models={})


@pytest.mark.parametrize("photos", [1, 2])
def test_calibration_samples_score_each_individual_by_its_best_photos(
    gallery: tuple[Engine, GalleryIndex], photos: int
) -> None:
    index = _with_rule(gallery[1], photos)
    null, _ = index.model("confident")
    same, different = index.calibration_samples(null)
    assert len(same) == len(index.photos)  # one same-individual score per photo
    per_photo_owners = [len(set(owners)) for owners in index.negative_identities.values()]
    assert len(different) == sum(per_photo_owners)  # one score per (photo, other individual)
    key = index.photos[0].key
    z = sorted((null.z(key, null.score(c)) for c in index.positives[key]), reverse=True)
    assert same[0] == pytest.approx(np.mean(z[:photos]))
    owners = index.negative_identities[key]
    first = owners[0]
    z_first = sorted(
        (null.z(key, null.score(c)) for o, c in zip(owners, index.negatives[key], strict=True) if o == first),
        reverse=True,
    )
    assert different[0] == pytest.approx(np.mean(z_first[:photos]))


def test_two_good_photos_outrank_one_lucky_photo(gallery: tuple[Engine, GalleryIndex], tmp_path: Path) -> None:
    """One stranger's photo that happens to match well loses to an individual whose two photos both match."""
    engine, index = gallery
    strong = {("T1", 0): 14, ("T2", 0): 10, ("T2", 1): 10}
    results = [
        _result(_confidences(np.random.default_rng(3), strong.get((p.identity, int(p.path.stem[-1])), 1)))
        for p in index.photos
    ]
    by_two = engine.rank(results, _with_rule(index, 2))
    best_photo_engine = Engine(
        "sift", device="cpu", scoring=dataclasses.replace(SC, individual_photos=1), cache_dir=tmp_path
    )
    by_one = best_photo_engine.rank(results, _with_rule(index, 1))
    assert by_one.ranking[0] == "T1"
    assert by_two.ranking[0] == "T2"
    first = by_two.candidates[0]
    null, _ = _with_rule(index, 2).model("confident")
    z = sorted(
        (
            null.z(p.key, null.score(r.confidence))
            for p, r in zip(index.photos, results, strict=True)
            if p.identity == "T2"
        ),
        reverse=True,
    )
    assert first.score == pytest.approx((z[0] + z[1]) / 2)
    assert first.photo_z == pytest.approx(z[0]) and first.photo.identity == "T2"
    assert by_two.scores["T2"] == pytest.approx(first.score)
