"""Scoring: pair scores, the per-photo null, calibration and the new-individual probability."""

from __future__ import annotations

import numpy as np
import pytest

from core.engine.scoring import (
    PROFILE_SLOTS,
    Calibrator,
    NullModel,
    ScoringConf,
    confidence_profile,
    evidence,
    identity_probabilities,
    individual_score,
    pair_score,
    survival_curve,
)

SC = ScoringConf()


def test_pair_scores_on_known_confidences() -> None:
    conf = np.array([0.95, 0.85, 0.8, 0.4, 0.1], np.float32)
    assert pair_score(conf, SC, "count") == 5
    assert pair_score(conf, SC, "confident") == 3  # 0.8 counts: "at or above" the threshold
    assert pair_score(conf, SC, "auc") == pytest.approx(0.45 + 0.35 + 0.3)
    assert pair_score(conf, SC, "wasserstein") == pytest.approx(conf.sum(), rel=1e-6)
    null_profile = confidence_profile(np.array([0.5, 0.5]))
    assert pair_score(conf, SC, "wasserstein", null_profile) == pytest.approx(0.45 + 0.35 + 0.8 + 0.4 + 0.1, rel=1e-6)
    with pytest.raises(ValueError, match="unknown scoring method"):
        pair_score(conf, SC, "magic")


def test_confidence_profile_is_sorted_and_padded() -> None:
    profile = confidence_profile(np.array([0.2, 0.9, 0.5]))
    assert profile.shape == (PROFILE_SLOTS,)
    assert list(profile[:4]) == [0.9, 0.5, 0.2, 0.0]


def test_strong_tail_beats_many_weak_matches() -> None:
    """The reason for the default: 60 weak matches (different turtles) vs 15 strong ones (same turtle)."""
    weak = np.full(60, 0.3, np.float32)
    strong = np.concatenate([np.full(15, 0.9), np.full(5, 0.2)]).astype(np.float32)
    assert pair_score(weak, SC, "count") > pair_score(strong, SC, "count")
    for method in ("confident", "auc"):
        assert pair_score(strong, SC, method) > pair_score(weak, SC, method)


def _negatives(rng: np.random.Generator, keys: list[str], n: int) -> dict[str, list[np.ndarray]]:
    return {k: [rng.uniform(0, 0.85, size=rng.integers(5, 40)).astype(np.float32) for _ in range(n)] for k in keys}


def test_null_is_per_photo_and_shrunk_towards_the_pool() -> None:
    rng = np.random.default_rng(0)
    negatives = _negatives(rng, ["a", "b", "c"], 20)
    # Photo "busy" attracts strong matches from everybody: its null must be higher.
    negatives["busy"] = [np.full(30, 0.9, np.float32) for _ in range(20)]
    null = NullModel.fit("confident", negatives, SC)
    busy_mean, _ = null.reference("busy")
    quiet_mean, _ = null.reference("a")
    assert busy_mean > quiet_mean
    assert null.pooled.mean < busy_mean < 30  # shrunk towards the pool, not equal to its own mean of 30
    # The same 30 strong matches are less surprising on the busy photo than on a quiet one.
    score = null.score(np.full(30, 0.9, np.float32))
    assert null.z("busy", score) < null.z("a", score)
    # A photo nobody has seen uses the pooled null.
    assert null.reference("unknown") == (null.pooled.mean, max(null.pooled.std, SC.min_spread))


def test_zero_spread_null_does_not_explode() -> None:
    """A dozen partners without a single strong match must not turn one chance match into z = 1000."""
    negatives = {"quiet": [np.full(10, 0.3, np.float32) for _ in range(12)]}
    negatives["other"] = [np.concatenate([np.full(3, 0.9), np.full(5, 0.3)]).astype(np.float32) for _ in range(12)]
    negatives["other"][0] = np.full(8, 0.95, np.float32)
    null = NullModel.fit("confident", negatives, SC)
    assert null.per_photo["quiet"].std == 0.0
    z_one = null.z("quiet", 1.0)
    assert 0 < z_one < 5


def test_one_chance_match_on_a_quiet_photo_is_not_evidence() -> None:
    """By default a photo's null is never narrower than two strong matches: on the turtles, chance gives
    a couple of strong matches, and a narrower floor called unseen turtles known (new-individual
    decision accuracy 0.67 against 0.77 with the floor, same matches)."""
    negatives = {key: [np.full(10, 0.3, np.float32) for _ in range(12)] for key in ("quiet", "calm")}
    null = NullModel.fit("confident", negatives, ScoringConf(threshold=0.8))
    assert null.pooled.std == 0.0
    assert null.reference("quiet") == (0.0, 2.0)
    assert null.z("quiet", 1.0) == 0.5
    assert null.z("quiet", 30.0) == 15.0  # a true pair still stands far out


def test_null_of_an_empty_gallery_is_neutral() -> None:
    null = NullModel.fit("confident", {}, SC)
    assert null.pooled.n == 0 and null.z("x", 0.0) == 0.0
    assert null.null_confidences.size == 0


def test_calibrator_learns_a_monotone_likelihood_ratio() -> None:
    rng = np.random.default_rng(1)
    positives = np.concatenate([rng.normal(30, 10, 200), rng.normal(0, 1, 50)])  # some true pairs show nothing
    negatives = rng.normal(0, 1, 1000)
    cal = Calibrator.fit(positives, negatives)
    assert cal.fitted and cal.slope > 0
    llr = cal.log_likelihood_ratio(np.array([-2.0, 0.0, 3.0, 30.0, 300.0]))
    assert np.all(np.diff(llr) > 0)
    assert llr[1] < 0 < llr[3]
    p = cal.predict(np.array([0.0, 30.0]))
    assert p[0] < 0.5 < p[1]


def test_calibrator_keeps_defaults_without_enough_pairs() -> None:
    cal = Calibrator.fit([10.0, 20.0], [0.0] * 100)
    assert not cal.fitted
    assert cal == Calibrator()


def test_evidence_is_odd_and_compressive() -> None:
    assert evidence(0.0) == 0.0
    assert evidence(-3.0) == -evidence(3.0)
    assert evidence(1000.0) < 10


@pytest.mark.parametrize("prior", [0.1, 0.5, 0.9])
def test_identity_probabilities_sum_to_one(prior: float) -> None:
    probs, p_new = identity_probabilities([3.0, 0.0, -2.0], prior)
    assert probs.sum() + p_new == pytest.approx(1.0)
    assert probs[0] > probs[1] > probs[2]


def test_new_individual_probability_follows_the_evidence() -> None:
    _, p_new_strong = identity_probabilities([8.0, -1.0, -1.0])
    _, p_new_none = identity_probabilities([-3.0, -3.0, -3.0])
    assert p_new_strong < 0.01
    assert p_new_none > 0.9
    # With no evidence either way, the prior decides.
    _, p_new = identity_probabilities([0.0, 0.0, 0.0, 0.0], 0.3)
    assert p_new == pytest.approx(0.3)
    # Two equally convincing candidates share the probability: neither is certain.
    probs, _ = identity_probabilities([6.0, 6.0])
    assert probs[0] == pytest.approx(probs[1]) and probs[0] < 0.5


def test_identity_probabilities_edge_cases() -> None:
    probs, p_new = identity_probabilities([])
    assert probs.size == 0 and p_new == 1.0
    with pytest.raises(ValueError, match="new_prior"):
        identity_probabilities([1.0], 1.0)


def test_an_individual_scores_by_the_mean_of_its_best_photos() -> None:
    assert individual_score([1.0, 5.0, 3.0], 2) == pytest.approx(4.0)
    assert individual_score([1.0, 5.0, 3.0], 1) == pytest.approx(5.0)
    assert individual_score([2.5], 2) == pytest.approx(2.5)  # an individual of one photo counts that photo
    assert individual_score(iter([-1.0, 0.5]), 3) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="at least one"):
        individual_score([], 2)


def test_survival_curve() -> None:
    _grid, surv = survival_curve(np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.5, 0.95]))
    assert list(surv) == pytest.approx([1.0, 2 / 3, 0.0])
    _, empty = survival_curve(np.zeros(0))
    assert not empty.any()
