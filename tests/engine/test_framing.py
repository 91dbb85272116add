"""Matches near a frame's edge (the herd, the rocks around the animal) are set aside before a pair is scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.catalogue.manifest import ManifestRow
from core.engine.framing import CENTRED, FrameConf, box_distance, inside, keep_inside, preset_frame
from core.engine.localise import locate, to_frame
from core.engine.matching import MatchResult
from core.engine.search import Engine
from core.evaluation.protocol import manifest_photo


def test_box_distance_is_zero_at_the_centre_and_one_on_every_edge() -> None:
    points = np.array([[400, 300], [0, 0], [800, 150], [400, 600], [200, 300], [700, 300], [400, 75]])
    assert box_distance(points, (800, 600)).tolist() == [0.0, 1.0, 1.0, 1.0, 0.5, 0.75, 0.75]
    assert box_distance(np.zeros((0, 2)), (800, 600)).shape == (0,)


def test_a_match_counts_only_when_it_lies_inside_both_frames() -> None:
    k0 = np.array([[400, 300], [790, 300], [400, 300], [500, 350]], dtype=np.float32)
    k1 = np.array([[100, 100], [100, 100], [5, 100], [150, 60]], dtype=np.float32)
    assert inside(k0, (800, 600), k1, (200, 200), CENTRED).tolist() == [True, False, False, True]
    assert inside(k0, (800, 600), k1, (200, 200), FrameConf(1.0)).tolist() == [True, True, True, True]
    with pytest.raises(ValueError, match="inner"):
        FrameConf(0.0)


def test_the_query_only_rule_ignores_where_matches_lie_in_the_gallery_photo() -> None:
    """An uncropped gallery photo may show its animal at an edge: under ``gallery=False`` only the query's frame,
    which a volunteer or the zoom chose, sets matches aside."""
    k0 = np.array([[400, 300], [790, 300], [400, 300], [500, 350]], dtype=np.float32)
    k1 = np.array([[100, 100], [100, 100], [5, 100], [150, 60]], dtype=np.float32)
    query_only = FrameConf(0.75, gallery=False)
    assert inside(k0, (800, 600), k1, (200, 200), query_only).tolist() == [True, False, True, True]


def test_a_rule_is_named_by_its_tag_and_read_back_from_it() -> None:
    assert CENTRED.tag == "frame-0.75" and FrameConf(0.75, gallery=False).tag == "frame-0.75-query"
    for conf in (CENTRED, FrameConf(0.5), FrameConf(0.875, gallery=False)):
        assert FrameConf.from_tag(conf.tag) == conf
    assert FrameConf.from_tag("0.75-query") == FrameConf(0.75, gallery=False)
    with pytest.raises(ValueError, match="not a frame rule"):
        FrameConf.from_tag("frame-0.75-gallery")


def test_keep_inside_drops_edge_matches_keeps_the_rest_in_order_and_counts_them() -> None:
    k0 = np.array([[400, 300], [790, 300], [410, 290], [10, 10]], dtype=np.float32)
    k1 = np.array([[100, 100], [100, 100], [90, 110], [100, 100]], dtype=np.float32)
    conf = np.array([0.99, 0.95, 0.9, 0.5], dtype=np.float32)
    result = MatchResult(np.arange(4), np.arange(4) + 10, conf, k0, k1, 500, 400, shared_exposure=3)
    kept = keep_inside(result, (800, 600), (200, 200), CENTRED)
    assert kept.idx0.tolist() == [0, 2] and kept.idx1.tolist() == [10, 12]
    assert kept.confidence.tolist() == pytest.approx([0.99, 0.9])
    assert kept.outside_frame == 2 and kept.shared_exposure == 3 and (kept.n0, kept.n1) == (500, 400)
    assert kept.unframed is result  # every match stays at hand for finding the animal
    central = MatchResult(np.arange(1), np.arange(1), conf[:1], k0[:1], k1[:1], 500, 400)
    assert keep_inside(central, (800, 600), (200, 200), CENTRED) is central


def test_the_animal_is_located_from_every_match_though_only_central_ones_count() -> None:
    """A close-up in the gallery puts the head's matches at its edges: the score sets them aside, but where the
    animal lies in a distant query is found from all of them."""
    rng = np.random.default_rng(3)
    head = rng.uniform([400, 300], [500, 400], size=(40, 2)).astype(np.float32)  # in a 1000 x 750 query
    in_closeup = np.concatenate(
        [rng.uniform([5, 5], [30, 395], size=(20, 2)), rng.uniform([150, 150], [250, 250], size=(20, 2))]
    ).astype(np.float32)
    result = MatchResult(np.arange(40), np.arange(40), np.full(40, 0.9, np.float32), head, in_closeup, 900, 800)
    kept = keep_inside(result, (1000, 750), (400, 400), CENTRED)
    assert kept.outside_frame == 20
    assert locate([kept], (1000, 750)) == locate([result], (1000, 750))
    region = (0.2, 0.2, 0.8, 0.8)
    moved = to_frame(kept, region, (1200, 900), (1000, 750))
    assert moved.outside_frame == 20 and moved.unframed is not None
    assert locate([moved], (1000, 750)) == locate([to_frame(result, region, (1200, 900), (1000, 750))], (1000, 750))


def test_the_rule_serves_where_it_was_chosen_only() -> None:
    assert preset_frame("aliked") == CENTRED  # on a CPU and a GPU: both priors are fitted under it
    assert preset_frame("sift") is None and preset_frame("disk") is None  # never measured with it


def _photo(data_dir: Path, path: str):
    return manifest_photo(data_dir / "nyala", ManifestRow(f"images/{path}", path.split("/")[0]))


def test_a_cpu_engine_counts_central_matches_only_and_says_so_in_its_prior_signature(data_dir, tmp_path) -> None:
    """Real nyala: two photos of one animal, matched as a search matches them; every kept match lies inside both
    frames, the others are counted as set aside; counting every match is another prior."""
    engine = Engine("aliked", {"max_side": 1024, "max_keypoints": 1024}, device="cpu", cache_dir=tmp_path)
    assert engine.frame == CENTRED and engine.signature.endswith("+frame-0.75")
    every = Engine("aliked", {"max_side": 1024, "max_keypoints": 1024}, device="cpu", cache_dir=tmp_path, frame=None)
    assert every.frame is None and "frame" not in every.signature
    query = engine.photo_features(_photo(data_dir, "nyala_19/246_left.jpg"))
    gallery = engine.photo_features(_photo(data_dir, "nyala_19/74_left.jpg"))
    (kept,) = engine.match_views(query, [gallery])
    (all_matches,) = every.match_views(query, [gallery])
    assert kept.outside_frame > 0 and kept.n_matches + kept.outside_frame == all_matches.n_matches
    assert (box_distance(kept.kpts0, query.image_size) < 0.75).all()
    assert (box_distance(kept.kpts1, gallery.image_size) < 0.75).all()
    assert (kept.confidence >= engine.scoring.strong).sum() >= 10  # the animal's own matches stay
