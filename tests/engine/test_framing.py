"""Matches near a frame's edge (the herd, the rocks around the animal) are set aside before a pair is scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.catalogue.manifest import ManifestRow
from core.engine.framing import CENTRED, FrameConf, box_distance, inside, keep_inside
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


def test_keep_inside_drops_edge_matches_keeps_the_rest_in_order_and_counts_them() -> None:
    k0 = np.array([[400, 300], [790, 300], [410, 290], [10, 10]], dtype=np.float32)
    k1 = np.array([[100, 100], [100, 100], [90, 110], [100, 100]], dtype=np.float32)
    conf = np.array([0.99, 0.95, 0.9, 0.5], dtype=np.float32)
    result = MatchResult(np.arange(4), np.arange(4) + 10, conf, k0, k1, 500, 400, shared_exposure=3)
    kept = keep_inside(result, (800, 600), (200, 200), CENTRED)
    assert kept.idx0.tolist() == [0, 2] and kept.idx1.tolist() == [10, 12]
    assert kept.confidence.tolist() == pytest.approx([0.99, 0.9])
    assert kept.outside_frame == 2 and kept.shared_exposure == 3 and (kept.n0, kept.n1) == (500, 400)
    central = MatchResult(np.arange(1), np.arange(1), conf[:1], k0[:1], k1[:1], 500, 400)
    assert keep_inside(central, (800, 600), (200, 200), CENTRED) is central


def _photo(data_dir: Path, path: str):
    return manifest_photo(data_dir / "nyala", ManifestRow(f"images/{path}", path.split("/")[0]))


def test_a_cpu_engine_counts_central_matches_only_and_says_so_in_its_prior_signature(data_dir, tmp_path) -> None:
    """Real nyala: two photos of one animal, matched as a search matches them; every kept match lies inside both
    frames, the others are counted as set aside; a GPU's rule (every match) is another prior."""
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
