"""The shipped null/calibration prior: a gallery needs no pairs of its own, and a bad prior file is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.engine.index import GalleryPhoto, fit_prior
from core.engine.prior import PRIOR_DIR, MethodPrior, Prior, shipped, signature
from core.engine.scoring import Calibrator, ScoringConf
from core.engine.search import Engine
from core.errors import ScuteError
from core.io import sha256_hex

METHODS = ("confident", "count")


@pytest.fixture(scope="module")
def sift_photos(turtle_manifest) -> list[GalleryPhoto]:
    by_id: dict[str, list[Path]] = {}
    for row in turtle_manifest:
        by_id.setdefault(str(row["identity"]), []).append(Path(row["path"]))
    chosen = sorted(i for i, ps in by_id.items() if len(ps) >= 4)[:3]
    return [GalleryPhoto(sha256_hex(p.read_bytes()), ident, p) for ident in chosen for p in sorted(by_id[ident])[:3]]


def sift_engine(cache: Path, prior: Prior | Path | bool, scoring: ScoringConf | None = None) -> Engine:
    return Engine(
        "sift", {"max_side": 384, "max_keypoints": 384}, scoring=scoring, device="cpu", cache_dir=cache, prior=prior
    )


class CountingMatcher:
    """Wraps the engine's matcher and counts the pairs it is asked to match."""

    def __init__(self, inner) -> None:
        self.inner, self.pairs = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def match_many(self, query, gallery):
        self.pairs += len(gallery)
        return self.inner.match_many(query, gallery)


def test_with_a_prior_the_index_matches_no_pairs_and_uses_the_prior(sift_photos, tmp_path) -> None:
    probe = sift_engine(tmp_path, False)
    prior = Prior(probe.signature, {"confident": MethodPrior(1.5, 3.0, 1.4, 0.6)}, (0.1, 0.2, 0.5))
    engine = sift_engine(tmp_path, prior)
    assert (engine.scoring.null_negatives, engine.scoring.null_positives) == (0, 0)
    counting = CountingMatcher(engine.matcher)
    engine.matcher = counting
    index = engine.build_index(sift_photos)
    assert counting.pairs == 0
    null, calibrator = index.model("confident")
    assert (null.pooled.mean, null.pooled.std) == (1.5, 3.0)
    assert (calibrator.slope, calibrator.offset) == (1.4, 0.6)
    # z against the prior's pooled null; the plots get the prior's picture of non-matching confidences.
    assert null.z(sift_photos[0].key, 7.5) == pytest.approx((7.5 - 1.5) / 3.0)
    assert list(null.null_confidences) == pytest.approx([0.1, 0.2, 0.5])


def test_without_a_prior_each_photo_gets_a_few_sampled_pairs(sift_photos, tmp_path) -> None:
    engine = sift_engine(tmp_path, False)
    assert (engine.scoring.null_negatives, engine.scoring.null_positives) == (8, 2)
    counting = CountingMatcher(engine.matcher)
    engine.matcher = counting
    engine.build_index(sift_photos)
    # O(1) pairs per photo: 9 photos with at most 8 + 2 partners each, shared pairs matched once.
    assert 0 < counting.pairs <= len(sift_photos) * 10


def test_a_fitted_prior_round_trips_and_serves_a_gallery_built_without_pairs(sift_photos, tmp_path) -> None:
    fitter = sift_engine(tmp_path, False, ScoringConf(null_negatives=6, null_positives=2))
    index = fitter.build_index(sift_photos)
    prior = fit_prior([index], METHODS, fitter.signature, {"catalogues": ["test"]})
    assert set(prior.methods) == set(METHODS)
    for method in METHODS:
        p = prior.methods[method]
        assert np.isfinite([p.null_mean, p.null_std, p.slope, p.offset]).all() and p.null_std >= 0
    assert prior.null_confidences == tuple(sorted(prior.null_confidences)) and len(prior.null_confidences) == 201
    path = tmp_path / "prior.json"
    prior.save(path)
    assert Prior.load(path) == prior
    engine = sift_engine(tmp_path, path)
    assert engine.prior == prior and engine.scoring.null_negatives == 0
    null, calibrator = engine.build_index(sift_photos).model("count")
    assert null.pooled.mean == pytest.approx(prior.methods["count"].null_mean)
    assert calibrator == Calibrator.from_prior(prior.methods["count"])


def test_a_prior_for_other_settings_or_a_broken_file_is_refused(tmp_path) -> None:
    other = Prior("aliked-0000000000+lightglue-0000000000+turns-0", {"confident": MethodPrior(1, 2, 1, 1)})
    with pytest.raises(ScuteError, match="other engine settings"):
        sift_engine(tmp_path, other)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"signature": "x", "methods": {"confident": {"null_mean": "lots"}}}))
    with pytest.raises(ScuteError, match="not valid"):
        Prior.load(broken)
    broken.write_text("{not json")
    with pytest.raises(ScuteError, match="Cannot read"):
        Prior.load(broken)


def test_a_prior_serves_only_the_individual_score_it_was_fitted_with(tmp_path) -> None:
    """The calibrator is fitted on an individual's score, so an engine that scores individuals by their best photo
    alone finds no shipped prior (fitted on the mean of the two best) and samples pairs of its own instead."""
    default = Engine(device="cpu", cache_dir=tmp_path)
    assert default.scoring.individual_photos == 2 and default.signature.endswith("+turns-0+best-2+frame-0.75")
    best_photo = Engine(device="cpu", cache_dir=tmp_path, scoring=ScoringConf(individual_photos=1))
    assert best_photo.signature == default.signature.replace("+best-2", "+best-1")
    assert best_photo.prior is None and best_photo.scoring.null_negatives > 0
    assert default.prior is not None
    with pytest.raises(ScuteError, match="other engine settings"):
        Engine(device="cpu", cache_dir=tmp_path, scoring=ScoringConf(individual_photos=1), prior=default.prior)
    every_match = Engine(device="cpu", cache_dir=tmp_path, frame=None)  # a prior serves one rule of which matches count
    assert every_match.signature == default.signature.removesuffix("+frame-0.75") and every_match.prior is None


def test_the_shipped_prior_serves_the_cpu_defaults(tmp_path) -> None:
    """The laptop's engine (1,024 px, 1,024 keypoints, upright) starts with a prior fitted on turtles and nyala."""
    engine = Engine(device="cpu", cache_dir=tmp_path)
    assert engine.prior is not None and engine.prior.signature == engine.signature
    assert {c["name"] for c in engine.prior.source["catalogues"]} == {"turtles", "nyala"}
    assert set(engine.prior.methods) == {"confident", "wasserstein", "auc", "count"}
    assert engine.prior.methods["wasserstein"].null_profile is not None
    assert shipped(signature("sift-x", "nearest-y", (0,), 2)) is None
    assert len(list(PRIOR_DIR.glob("*.json"))) >= 1
    # A chance match is no evidence, two central ones hardly any; a pair with many strong matches is.
    calibrator = Calibrator.from_prior(engine.prior.methods["confident"])
    conf = engine.prior.methods["confident"]
    assert (
        calibrator.predict((1 - conf.null_mean) / conf.null_std)
        < 0.5
        < calibrator.predict((40 - conf.null_mean) / conf.null_std)
    )
    assert calibrator.predict((2 - conf.null_mean) / conf.null_std) < 0.6
    assert engine.scoring.null_negatives == 0


def test_a_prior_ships_for_the_gpu_defaults_too(tmp_path) -> None:
    """A GPU deployment (1,600 px, 2,048 keypoints, four turns) needs no pairs of its own either: its prior was
    fitted on both catalogues in four turns, edge matches set aside as the engine sets them aside
    (docs/evaluation/runners/prior_h200.py). The GPU's settings on this
    CPU, LightGlue at full depth as on a GPU, find the same file; with the CPU's early stopping they do not (their
    matches differ), and the engine samples pairs of its own instead."""
    gpu_like = {
        "extractor_conf": {"max_side": 1600, "max_keypoints": 2048},
        "device": "cpu",
        "turns": "all",
    }
    engine = Engine(**gpu_like, matcher_conf={"depth_confidence": -1.0}, cache_dir=tmp_path)
    assert engine.turns == (0, 90, 180, 270)
    assert engine.prior is not None and engine.prior.signature == engine.signature
    assert engine.prior.signature.endswith("+turns-0-90-180-270+best-2+frame-0.75")
    assert "0.75" in engine.prior.source["matches"]
    assert {c["name"]: c["photos"] for c in engine.prior.source["catalogues"]} == {"turtles": 366, "nyala": 255}
    assert engine.scoring.null_negatives == 0 and engine.scoring.null_positives == 0
    early = Engine(**gpu_like, cache_dir=tmp_path)
    assert early.prior is None and early.scoring.null_negatives > 0
    # Four tries lift chance matches: the null is wider than the upright one's, and still a pair with many
    # strong matches is evidence while a handful is not.
    upright = Engine(device="cpu", cache_dir=tmp_path / "upright").prior
    assert upright is not None
    conf = engine.prior.methods["confident"]
    assert conf.null_std > upright.methods["confident"].null_std
    calibrator = Calibrator.from_prior(conf)
    assert (
        calibrator.predict((2 - conf.null_mean) / conf.null_std)
        < 0.5
        < calibrator.predict((40 - conf.null_mean) / conf.null_std)
    )
