"""One ranking for an encounter from the rankings of its photos.

At one encounter a volunteer photographs the left and the right side of the head (often the top too); each
photo is searched only against gallery photos of its own side (:meth:`Engine.search_photo` on a side's
index), which gives one :class:`~core.engine.search.Identification` per photo. The encounter is one animal,
so the evidence of its photos must add up.

Why a sum of log-likelihood ratios (and not Stouffer's sum of z-scores): each photo's ranking already turns
its z-scores into calibrated likelihood ratios, LR_k = P(photo | individual k) / P(photo | new individual)
(core.engine.scoring), so the photos of one animal, conditionally independent given who it is (different
sides share no keypoints), multiply: LR_k(encounter) = Π_photos LR_k(photo). That is Bayes' rule, keeps the
calibration (Stouffer's sum would need a new calibration of its own and cannot say how probable "new" is),
and treats "new individual" the same way as every single-photo search does: P(k) ∝ (1-π)/N · LR_k and
P(new) ∝ π, normalised together (:func:`~core.engine.scoring.identity_probabilities`). An individual with
positive evidence from both photos therefore ends with a larger ratio than from either alone, and one with
no gallery photo of a side gets LR = 1 (no evidence either way) from a photo of that side.

A photo's ratios are read back from its probabilities, LR_k = P(k) / P(new) · π N / (1-π) with N the
individuals it ranked. Its ranking only keeps its best candidates; every other individual it ranked gets the
average of the probability left over (1 - shown - new), which is never more than the last shown one's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.engine.scoring import identity_probabilities
from core.engine.search import Candidate, Identification

#: Smallest probability taken at face value: a photo's "new" probability can underflow to 0.0.
_FLOOR = 1e-300


@dataclass(frozen=True)
class PhotoEvidence:
    """What one photo of the encounter says about one individual."""

    photo: int  # position of the photo in the encounter
    log_likelihood_ratio: float  # ln LR (individual vs new individual); 0.0 where not compared
    compared: bool  # False: the gallery has no photo of this side of the individual (or the search failed)
    probability: float | None = None  # the photo's own probability for the individual, where it showed it
    candidate: Candidate | None = None  # the photo's best match with the individual, where it was shown


@dataclass
class CombinedCandidate:
    identity: str
    name: str | None
    probability: float
    log_likelihood_ratio: float  # sum over the photos: the encounter's evidence for this individual
    evidence: list[PhotoEvidence] = field(default_factory=list)  # one entry per photo, in photo order

    @property
    def best_photo(self) -> PhotoEvidence | None:
        """The photo with the strongest evidence that was shown as a candidate (to draw its matches)."""
        shown = [e for e in self.evidence if e.candidate is not None]
        return max(shown, key=lambda e: e.log_likelihood_ratio) if shown else None


@dataclass
class EncounterRanking:
    candidates: list[CombinedCandidate]  # best first, at most top_k
    new_individual_probability: float
    ranking: list[str]  # every individual any photo ranked, best first
    log_likelihood_ratios: dict[str, float]  # identity -> combined ln LR, for every ranked individual
    photos: int  # how many photos were combined (including ones with no ranking)

    def to_dict(self) -> dict[str, object]:
        return {
            "candidates": [
                {
                    "identity": c.identity,
                    "name": c.name,
                    "probability": round(c.probability, 6),
                    "log_likelihood_ratio": round(c.log_likelihood_ratio, 4),
                    "per_photo": [round(e.log_likelihood_ratio, 4) if e.compared else None for e in c.evidence],
                }
                for c in self.candidates
            ],
            "new_individual_probability": round(self.new_individual_probability, 6),
            "photos": self.photos,
        }


def photo_log_likelihood_ratios(identification: Identification, new_prior: float = 0.5) -> dict[str, float]:
    """ln LR (individual vs new) for every individual one photo ranked, read back from its probabilities.

    ``new_prior`` must be the one the engine ranked with (ScoringConf.new_prior)."""
    ranked = identification.scores or {ident: 0.0 for ident in identification.ranking}
    n = max(len(ranked), 1)
    offset = math.log(new_prior * n / (1.0 - new_prior))
    log_new = math.log(max(identification.new_individual_probability, _FLOOR))
    ratios = {c.identity: math.log(max(c.probability, _FLOOR)) - log_new + offset for c in identification.candidates}
    rest = [ident for ident in identification.ranking if ident not in ratios]
    if rest:
        left_over = 1.0 - sum(c.probability for c in identification.candidates)
        left_over -= identification.new_individual_probability
        unshown = max(n - len(identification.candidates), 1)
        rest_ratio = math.log(max(left_over / unshown, _FLOOR)) - log_new + offset
        if ratios:
            rest_ratio = min(rest_ratio, min(ratios.values()))
        ratios.update((ident, rest_ratio) for ident in rest)
    return ratios


def combine(
    identifications: Sequence[Identification | None], new_prior: float = 0.5, top_k: int = 5
) -> EncounterRanking:
    """The encounter's ranking: per individual, the sum of its photos' ln LR, then probabilities with "new".

    ``identifications[i]`` is photo i's ranking against its own side, or None where it has none (no
    gallery photo of that side, or the search failed): such a photo adds no evidence for anyone."""
    per_photo = [photo_log_likelihood_ratios(i, new_prior) if i is not None else {} for i in identifications]
    identities: list[str] = []
    seen: set[str] = set()
    for ident_result in identifications:
        for identity in ident_result.ranking if ident_result is not None else ():
            if identity not in seen:
                seen.add(identity)
                identities.append(identity)
    totals = {identity: sum(ratios.get(identity, 0.0) for ratios in per_photo) for identity in identities}
    ranking = sorted(identities, key=lambda identity: (-totals[identity], identity))
    probabilities, p_new = identity_probabilities([totals[i] for i in ranking], new_prior)
    candidates = [
        _candidate(identity, float(prob), totals[identity], identifications, per_photo)
        for identity, prob in zip(ranking[:top_k], probabilities[:top_k], strict=False)
    ]
    return EncounterRanking(candidates, p_new, ranking, totals, len(identifications))


def _candidate(
    identity: str,
    probability: float,
    total: float,
    identifications: Sequence[Identification | None],
    per_photo: Sequence[dict[str, float]],
) -> CombinedCandidate:
    evidence = []
    name = None
    for i, (result, ratios) in enumerate(zip(identifications, per_photo, strict=True)):
        shown = next((c for c in result.candidates if c.identity == identity), None) if result else None
        name = name or (shown.name if shown else None)
        evidence.append(
            PhotoEvidence(
                photo=i,
                log_likelihood_ratio=ratios.get(identity, 0.0),
                compared=identity in ratios,
                probability=shown.probability if shown else None,
                candidate=shown,
            )
        )
    return CombinedCandidate(identity, name, probability, total, evidence)
