"""Combining the photos of one encounter: evidence adds up, "new individual" stays an option."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from core.engine.combine import combine, photo_log_likelihood_ratios
from core.engine.index import GalleryPhoto
from core.engine.scoring import identity_probabilities
from core.engine.search import Candidate, Identification


def ranking(llrs: dict[str, float], top_k: int = 5, new_prior: float = 0.5) -> Identification:
    """An Identification as Engine.rank makes it from known log-likelihood ratios."""
    order = sorted(llrs, key=lambda ident: (-llrs[ident], ident))
    probabilities, p_new = identity_probabilities([llrs[i] for i in order], new_prior)
    candidates = [
        Candidate(
            ident,
            f"name {ident}",
            float(p),
            llrs[ident],
            10,
            5,
            GalleryPhoto("0" * 64, ident, Path(ident)),
            np.zeros(0),
        )
        for ident, p in zip(order[:top_k], probabilities[:top_k], strict=False)
    ]
    return Identification(candidates, p_new, order, {i: llrs[i] for i in order}, np.zeros(0), "wasserstein")


def test_ratios_are_read_back_from_probabilities() -> None:
    llrs = {"A": 3.0, "B": 0.0, "C": -1.0}
    assert photo_log_likelihood_ratios(ranking(llrs)) == pytest.approx(llrs)
    assert photo_log_likelihood_ratios(ranking(llrs, new_prior=0.2), new_prior=0.2) == pytest.approx(llrs)


def test_unshown_individuals_get_the_average_of_the_left_over_probability() -> None:
    llrs = {"A": 3.0, "B": 1.0, "C": -1.0, "D": -3.0}
    ratios = photo_log_likelihood_ratios(ranking(llrs, top_k=2))
    assert ratios["A"] == pytest.approx(3.0) and ratios["B"] == pytest.approx(1.0)
    # C and D share what is left: ln of the mean likelihood ratio e^-1 and e^-3.
    assert ratios["C"] == pytest.approx(ratios["D"]) == pytest.approx(math.log((math.exp(-1) + math.exp(-3)) / 2))


def test_one_photo_gives_its_own_ranking_back() -> None:
    single = ranking({"A": 2.0, "B": 0.5, "C": -2.0})
    combined = combine([single])
    assert [c.identity for c in combined.candidates] == ["A", "B", "C"]
    assert [c.probability for c in combined.candidates] == pytest.approx([c.probability for c in single.candidates])
    assert combined.new_individual_probability == pytest.approx(single.new_individual_probability)
    assert combined.candidates[0].name == "name A"


def test_left_and_right_evidence_add_up() -> None:
    # C has no right-side photo in the gallery: the right photo says nothing about C.
    left = ranking({"A": 3.0, "B": 0.0, "C": -1.0})
    right = ranking({"A": 2.0, "B": -2.0})
    both = combine([left, right])
    by_id = {c.identity: c for c in both.candidates}
    assert [c.identity for c in both.candidates] == ["A", "C", "B"]
    assert by_id["A"].log_likelihood_ratio == pytest.approx(5.0)
    assert by_id["B"].log_likelihood_ratio == pytest.approx(-2.0)
    assert by_id["C"].log_likelihood_ratio == pytest.approx(-1.0)
    assert [e.log_likelihood_ratio for e in by_id["A"].evidence] == pytest.approx([3.0, 2.0])
    assert [e.compared for e in by_id["C"].evidence] == [True, False]
    expected, p_new = identity_probabilities([5.0, -1.0, -2.0])
    assert [c.probability for c in both.candidates] == pytest.approx(list(expected))
    assert both.new_individual_probability == pytest.approx(p_new)
    assert sum(c.probability for c in both.candidates) + both.new_individual_probability == pytest.approx(1.0)
    # Matched by both sides: more evidence and a higher probability than from either photo alone.
    assert by_id["A"].log_likelihood_ratio > max(e.log_likelihood_ratio for e in by_id["A"].evidence)
    assert by_id["A"].probability > max(left.candidates[0].probability, right.candidates[0].probability)
    assert by_id["A"].best_photo is not None and by_id["A"].best_photo.photo == 0


def test_sides_that_disagree_leave_new_individual_likely() -> None:
    # Each photo points (weakly) at a different individual: neither is confirmed and "new" stays likely.
    left = ranking({"A": 1.0, "B": -4.0})
    right = ranking({"B": 1.0, "A": -4.0})
    both = combine([left, right])
    assert both.candidates[0].log_likelihood_ratio == pytest.approx(-3.0)
    assert both.new_individual_probability > 0.9
    assert both.new_individual_probability > max(left.new_individual_probability, right.new_individual_probability)


def test_a_photo_without_ranking_adds_nothing_and_none_at_all_means_new() -> None:
    left = ranking({"A": 2.0, "B": 0.0})
    with_missing = combine([left, None])
    assert [c.probability for c in with_missing.candidates] == pytest.approx([c.probability for c in left.candidates])
    assert with_missing.photos == 2
    assert [e.compared for e in with_missing.candidates[0].evidence] == [True, False]
    nothing = combine([None, None])
    assert nothing.candidates == [] and nothing.new_individual_probability == 1.0


def test_certain_match_with_zero_new_probability_stays_finite() -> None:
    left = ranking({"A": 800.0, "B": 0.0})  # P(new) underflows to 0.0
    assert left.new_individual_probability == 0.0
    both = combine([left, ranking({"A": 2.0, "B": 0.0})])
    assert both.candidates[0].identity == "A"
    assert math.isfinite(both.candidates[0].log_likelihood_ratio)
    assert both.candidates[0].probability == pytest.approx(1.0)
    assert both.to_dict()["candidates"][0]["per_photo"][1] == pytest.approx(2.0)
