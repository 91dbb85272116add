"""Finding the animal before matching it (core.engine.localise): the box, the gate, the frames, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.models import SMALL_ALIKED_CONF

from core.engine.images import crop_and_rotate, prepare
from core.engine.index import GalleryPhoto
from core.engine.localise import (
    ZoomConf,
    area,
    gain,
    locate,
    native_size,
    points_to_frame,
    region_to_crop,
    worth_zooming,
)
from core.engine.matching import MatchResult
from core.engine.search import Engine
from core.io import sha256_hex
from core.service.identify import SearchResult


def _matches(points: np.ndarray, confidence: np.ndarray) -> MatchResult:
    idx = np.arange(len(points))
    points = np.asarray(points, np.float32)
    return MatchResult(idx, idx, np.asarray(confidence, np.float32), points, points, len(points), len(points))


def test_the_box_covers_the_confident_matches_with_a_margin_and_ignores_strays_and_weak_matches() -> None:
    rng = np.random.default_rng(1)
    animal = rng.uniform([400, 300], [600, 450], size=(60, 2))  # a 200 x 150 px animal in a 1000 x 750 frame
    stray = np.array([[950.0, 20.0]])  # one confident match on the water
    weak = rng.uniform([0, 0], [1000, 750], size=(200, 2))  # sand and water everyone shares, matched weakly
    points = np.concatenate([animal, stray, weak])
    confidence = np.concatenate([np.full(61, 0.9), np.full(200, 0.1)])
    x0, y0, x1, y1 = locate([_matches(points, confidence)], (1000, 750))
    assert 0.34 < x0 < 0.41 and 0.59 < x1 < 0.66  # 0.4 .. 0.6 widened by a quarter of the box on each side
    assert 0.33 < y0 < 0.41 and 0.59 < y1 < 0.67
    assert area((x0, y0, x1, y1)) < 0.1


def test_the_box_has_a_minimum_size_stays_inside_the_photo_and_needs_enough_points() -> None:
    corner = np.array([[990.0 + i % 5, 740.0 + i // 5] for i in range(10)])  # a tight cluster in the corner
    x0, y0, x1, y1 = locate([_matches(corner, np.full(10, 0.9))], (1000, 750))
    assert (x1, y1) == (1.0, 1.0)
    assert x1 - x0 == pytest.approx(0.2) and y1 - y0 == pytest.approx(0.2)  # shifted inside, not shrunk
    assert locate([_matches(corner[:5], np.full(5, 0.9))], (1000, 750)) is None
    assert locate([_matches(corner, np.full(10, 0.1))], (1000, 750)) is None  # weak matches locate nothing
    assert locate([], (1000, 750)) is None


def test_the_gate_zooms_only_into_part_of_the_photo_with_pixels_to_gain_when_the_first_pass_doubts() -> None:
    conf = ZoomConf(max_area=0.5, min_gain=1.3, confident=0.8)
    small = (0.4, 0.4, 0.6, 0.6)
    assert gain(small, (1024, 683), (2000, 1333), 1024) == pytest.approx(2000 / 1024, rel=1e-3)
    assert gain(small, (1024, 683), (1024, 683), 1024) == pytest.approx(1.0)
    assert worth_zooming(small, (1024, 683), (2000, 1333), 1024, 0.3, conf)
    assert not worth_zooming(small, (1024, 683), (2000, 1333), 1024, 0.9, conf)  # already sure
    assert not worth_zooming(small, (1024, 683), (1024, 683), 1024, 0.3, conf)  # no more pixels to be had
    assert not worth_zooming((0.0, 0.0, 0.9, 0.9), (1024, 683), (2000, 1333), 1024, 0.3, conf)  # most of it
    assert not worth_zooming(None, (1024, 683), (2000, 1333), 1024, 0.3, conf)
    assert not worth_zooming((0.0, 0.0, 1.0, 1.0), (1024, 683), (2000, 1333), 1024, 0.3)  # all of it: nothing new


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("crop", [None, (0.1, 0.2, 0.9, 0.7)])
def test_a_region_of_the_photo_as_given_is_the_same_pixels_cut_from_the_original(
    data_dir: Path, crop: tuple[float, float, float, float] | None, rotation: int
) -> None:
    pixels = prepare(data_dir / "nyala" / "images" / "nyala_30" / "727_right.jpg", max_side=400)
    given = crop_and_rotate(pixels, crop, rotation)
    region = (0.2, 0.3, 0.65, 0.9)
    h, w = given.shape[:2]
    expected = given[round(0.3 * h) : round(0.9 * h), round(0.2 * w) : round(0.65 * w)].astype(float)
    zoomed = crop_and_rotate(pixels, region_to_crop(region, crop, rotation), rotation).astype(float)
    assert abs(zoomed.shape[0] - expected.shape[0]) <= 1 and abs(zoomed.shape[1] - expected.shape[1]) <= 1
    rows, cols = min(zoomed.shape[0], expected.shape[0]), min(zoomed.shape[1], expected.shape[1])
    assert np.abs(zoomed[:rows, :cols] - expected[:rows, :cols]).mean() < 8  # same pixels (1 px rounding at most)
    native_w, native_h = native_size(pixels.shape[1], pixels.shape[0], crop, rotation)
    assert abs(native_w - w) <= 1 and abs(native_h - h) <= 1


def test_zoomed_keypoints_move_back_into_the_frame_of_the_photo_as_given() -> None:
    region = (0.25, 0.5, 0.75, 1.0)
    corners = np.array([[0.0, 0.0], [800.0, 600.0], [400.0, 300.0]])  # zoomed working image is 800 x 600
    back = points_to_frame(corners, region, (800, 600), (1000, 750))
    np.testing.assert_allclose(back, [[250.0, 375.0], [750.0, 750.0], [500.0, 562.5]])


# --- on real photos: the region found from the first pass's matches, checked against boxes drawn by eye ---------

#: Query photo, the gallery photo of the same animal it is matched with first, and the box (normalised x0, y0, x1,
#: y1) the animal's head (turtles) or striped flank (nyala) fills in the query, read by eye on a 10 x 10 grid.
ANIMALS = {
    "far-turtle-head-on": (
        "turtles/images/t015/FpwCCsfDdP.JPG",
        "turtles/images/t015/AKUdpVWgKw.JPG",
        (0.41, 0.47, 0.60, 0.70),
    ),
    "turtle-on-sand": (
        "turtles/images/t014/ihMILpMXhS.JPG",
        "turtles/images/t014/EXWoBUQqIz.JPG",
        (0.44, 0.50, 0.54, 0.61),
    ),
    "nyala-flank": (
        "nyala/images/nyala_30/727_right.jpg",
        "nyala/images/nyala_30/1016_right.jpg",
        (0.15, 0.24, 0.80, 0.52),
    ),
}


def _covers(region: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> float:
    """Share of ``box`` inside ``region``."""
    w = max(0.0, min(region[2], box[2]) - max(region[0], box[0]))
    h = max(0.0, min(region[3], box[3]) - max(region[1], box[1]))
    return w * h / area(box)


@pytest.mark.parametrize("name", list(ANIMALS))
def test_the_first_pass_matches_find_the_animal_in_real_photos(name: str, data_dir: Path, aliked_extractor) -> None:
    """At full depth, as on a GPU, where zoom is on by default (a CPU's early stopping keeps fewer weak matches)."""
    from core.engine.matchers.lightglue import LightGlueMatcher

    lightglue_matcher = LightGlueMatcher({"depth_confidence": -1.0}, device="cpu")
    query, gallery, box = ANIMALS[name]
    side = aliked_extractor.max_side
    features = aliked_extractor.extract(prepare(data_dir / query, max_side=side))
    match = lightglue_matcher.match(features, aliked_extractor.extract(prepare(data_dir / gallery, max_side=side)))
    region = locate([match], features.image_size)
    assert region is not None
    assert _covers(region, box) > 0.85, (region, box)
    assert area(region) < (0.8 if name.startswith("nyala") else 0.35), region  # not the whole scene


# --- the engine: search, zoom, search again; the volunteer's crop wins; what the service shows and stores ---------


@pytest.fixture(scope="module")
def zooming(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A photo each of two turtles, and an engine that zooms whenever it finds a region (at 512 px)."""
    query = data_dir / ANIMALS["far-turtle-head-on"][0]
    paths = [data_dir / ANIMALS["far-turtle-head-on"][1], data_dir / ANIMALS["turtle-on-sand"][1]]
    photos = [GalleryPhoto(sha256_hex(p.read_bytes()), p.parent.name, p) for p in paths]
    engine = Engine(
        extractor_conf=dict(SMALL_ALIKED_CONF),
        device="cpu",
        cache_dir=tmp_path_factory.mktemp("zoom"),
        turns="none",
        zoom=ZoomConf(confident=2.0, only_if_surer=False),  # whatever the first pass says, and keeps what it finds
    )
    return engine, engine.build_index(photos), query, sha256_hex(query.read_bytes())


def test_a_distant_turtle_is_searched_again_on_its_head_at_the_photos_own_resolution(zooming) -> None:
    engine, index, query, sha = zooming
    outcome = engine.search_photo(query, sha, index, shortlist=False)
    zoom = outcome.zoom
    assert zoom is not None
    assert _covers(zoom.region, ANIMALS["far-turtle-head-on"][2]) > 0.85
    assert outcome.identification.ranking[0] == "t015"
    # The zoomed crop was cut from the 2000-px original: its head has more pixels than in the 512-px frame.
    assert outcome.views[0].image_size == zoom.zoomed_size
    assert gain(zoom.region, zoom.frame_size, (2000, 1333), 512) > 1.5
    region_px = max((zoom.region[2] - zoom.region[0]) * zoom.frame_size[0], 1)
    assert zoom.zoomed_size[0] > 1.5 * region_px
    # Matches are reported in the frame of the photo as given, inside the region the engine zoomed to.
    x0, y0, x1, y1 = zoom.region
    w, h = zoom.frame_size
    for result in outcome.results.values():
        assert np.all((result.kpts0[:, 0] >= x0 * w - 1) & (result.kpts0[:, 0] <= x1 * w + 1))
        assert np.all((result.kpts0[:, 1] >= y0 * h - 1) & (result.kpts0[:, 1] <= y1 * h + 1))
    # The service exposes the region, and the evidence it stores describes the features actually matched.
    result = SearchResult(
        outcome.identification, outcome.results, index, outcome.views, None, 0, "unknown", sha, engine, zoom=zoom
    )
    assert result.used_region == zoom.region
    evidence = result.evidence()
    assert evidence.query_size == zoom.frame_size != outcome.views[0].image_size
    best = evidence.candidates[0]
    assert best.match.n0 == len(outcome.views[0])  # the zoomed query's keypoints, not the first pass's
    np.testing.assert_allclose(
        best.match.kpts0,
        points_to_frame(outcome.views[0].keypoints[best.match.idx0], zoom.region, zoom.zoomed_size, zoom.frame_size),
        atol=1e-3,
    )


def test_the_zoomed_answer_replaces_the_first_only_when_it_is_surer(zooming, data_dir: Path) -> None:
    engine, index, far_query, _ = zooming
    surer = ZoomConf(confident=2.0)  # the app's rule: the zoomed pass must be at least as sure as the first
    for query, expect_kept in ((far_query, False), (data_dir / ANIMALS["turtle-on-sand"][0], True)):
        sha = sha256_hex(query.read_bytes())
        always = engine.search_photo(query, sha, index, shortlist=False)  # zooms and keeps the zoomed answer
        assert always.zoom is not None
        first, zoomed = always.zoom.first, always.identification
        assert (zoomed.best_probability >= first.best_probability) is expect_kept
        outcome = engine.search_photo(query, sha, index, shortlist=False, zoom=surer)
        assert outcome.identification.best_probability == pytest.approx(
            max(first.best_probability, zoomed.best_probability)
        )
        passes = outcome.zoom_passes()
        assert [p.ranking for p in passes] == [first.ranking, zoomed.ranking]  # both passes stay on record
        if expect_kept:  # the distant turtle on sand: wrong at first, right and surer zoomed
            assert outcome.zoom is not None and outcome.declined_zoom is None
            assert first.ranking[0] == "t015" and outcome.identification.ranking[0] == "t014"
        else:  # the head-on turtle: the zoomed pass doubts more, so the whole photo's answer and matches stand
            assert outcome.zoom is None and outcome.declined_zoom is not None
            assert outcome.identification.ranking == first.ranking
            whole = engine.query_views(query, sha)[0]
            assert outcome.views[0].image_size == whole.image_size
            np.testing.assert_array_equal(outcome.views[0].keypoints, whole.keypoints)


def test_a_volunteers_crop_is_never_zoomed(zooming) -> None:
    engine, index, query, sha = zooming
    crop = (0.3, 0.35, 0.7, 0.8)  # the volunteer drew their own box around the head
    outcome = engine.search_photo(query, sha, index, crop=crop, shortlist=False)
    assert outcome.zoom is None
    expected = engine.query_views(query, sha, crop)[0]
    np.testing.assert_array_equal(outcome.views[0].keypoints, expected.keypoints)
