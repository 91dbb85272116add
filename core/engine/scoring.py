"""From match confidences to calibrated probabilities.

Counting matches throws information away: on turtle photos, different individuals share many
*weak* matches (carapace texture, algae, sand ripples), while the same individual produces a tail of
*strong* matches on the facial scutes. So each query/gallery pair is summarised by where its
confidence distribution stands against the null distribution of non-matching pairs:

* ``count``       number of matches (the classical baseline, reported side by side);
* ``confident``   mass of the distribution above a confidence threshold (default);
* ``wasserstein`` upward Wasserstein-1 distance from the null's sorted-confidence profile;
* ``auc``         area under the pair's survival curve above a floor.

The pooled null (mean and spread of a pair's score between different individuals) and the calibrator
come from a prior fitted once on labelled photos (core.engine.prior). Where a gallery samples pairs of
its own (no prior for the settings, or asked for), every photo also gets its own null, because some
photos attract matches from everybody, shrunk towards the pooled null since a photo has only a few
sampled partners. A pair's score becomes a z-score against that null; a logistic calibrator turns
z-scores into likelihood ratios, and a "one of these individuals or a new one" model turns those into
probabilities that sum to one with the probability that the query is a new individual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from core.engine.prior import MethodPrior

log = logging.getLogger(__name__)

#: Sampled pairs per photo when no prior ships for the settings: enough for a rough null, O(1) per photo.
FALLBACK_NEGATIVES = 8
FALLBACK_POSITIVES = 2
#: Pseudo-pairs a prior's pooled null weighs against a gallery's own sampled pairs.
PRIOR_WEIGHT = 200

#: Profile length of the Wasserstein score: enough slots for every strong match of a true pair.
PROFILE_SLOTS = 256


@dataclass(frozen=True)
class ScoringConf:
    method: str = "confident"
    threshold: float | None = None  # ``confident``: a strong match; None: the matcher's (Engine fills it in)
    auc_floor: float = 0.5  # ``auc``: confidences below this are treated as noise
    #: Other-individual partners sampled per gallery photo for its null, and same-individual partners for the
    #: calibrator; None: none when a prior ships for the engine's settings (core.engine.prior), else a few.
    null_negatives: int | None = None
    null_positives: int | None = None
    null_shrinkage: float = 12.0  # pseudo-pairs of the pooled null mixed into each photo's own
    min_spread: float = 2.0  # floor on a null's spread, in score units: chance alone gives a couple of strong matches
    new_prior: float = 0.5  # prior probability that a submitted photo shows an animal not in the gallery
    #: An individual's score: the mean z-score of its best this-many photos (of all it has, where it has fewer).
    #: With 1, one stranger's lucky photo outranked an individual whose photos all matched well; 2 gained 4 to 7
    #: points of nyala top-1 and kept the turtles' within a point on held-out folds (README, "Unseen animals").
    individual_photos: int = 2

    @property
    def strong(self) -> float:
        """The confidence from which one match counts as strong (the matcher's, once the engine has set it)."""
        return 0.8 if self.threshold is None else self.threshold


def count_score(conf: np.ndarray, _: ScoringConf) -> float:
    return float(len(conf))


def confident_score(conf: np.ndarray, sc: ScoringConf) -> float:
    return float(np.count_nonzero(conf >= sc.strong))


def auc_score(conf: np.ndarray, sc: ScoringConf) -> float:
    """Area under the survival curve N(c >= x) for x in [floor, 1]: strong matches weigh more."""
    return float(np.clip(conf - sc.auc_floor, 0.0, None).sum())


def individual_score(z_scores: Iterable[float], photos: int) -> float:
    """An individual's score from its compared photos' z-scores: the mean of its best ``photos`` of them."""
    best = sorted(z_scores, reverse=True)[: max(photos, 1)]
    if not best:
        raise ValueError("an individual's score needs at least one compared photo")
    return float(np.mean(best))


def confidence_profile(conf: np.ndarray, slots: int = PROFILE_SLOTS) -> np.ndarray:
    """Sorted confidences padded with zeros: the quantile function of a fixed-size sample."""
    top = np.sort(np.asarray(conf, dtype=np.float64))[::-1][:slots]
    return np.pad(top, (0, slots - len(top)))


def wasserstein_score(conf: np.ndarray, _: ScoringConf, null_profile: np.ndarray | None = None) -> float:
    """Energy needed to lift the null profile onto the pair's (1-D W1 between quantile functions)."""
    profile = confidence_profile(conf)
    base = null_profile if null_profile is not None else np.zeros_like(profile)
    return float(np.clip(profile - base, 0.0, None).sum())


PAIR_SCORES: dict[str, Callable[[np.ndarray, ScoringConf], float]] = {
    "count": count_score,
    "confident": confident_score,
    "wasserstein": wasserstein_score,
    "auc": auc_score,
}


def pair_score(
    conf: np.ndarray, sc: ScoringConf, method: str | None = None, null_profile: np.ndarray | None = None
) -> float:
    method = method or sc.method
    if method not in PAIR_SCORES:
        raise ValueError(f"unknown scoring method {method!r}; choose from {sorted(PAIR_SCORES)}")
    conf = np.asarray(conf, dtype=np.float32)
    if method == "wasserstein":
        return wasserstein_score(conf, sc, null_profile)
    return PAIR_SCORES[method](conf, sc)


@dataclass
class PhotoNull:
    mean: float
    std: float
    n: int


@dataclass
class NullModel:
    """Per-photo null of one scoring method, plus the pooled null for photos with too few partners."""

    method: str
    per_photo: dict[str, PhotoNull]
    pooled: PhotoNull
    null_confidences: np.ndarray  # a sample of non-matching confidences, for plots
    conf: ScoringConf = field(default_factory=ScoringConf)
    null_profile: np.ndarray | None = None  # mean sorted-confidence profile of non-matching pairs

    def score(self, conf: np.ndarray) -> float:
        return pair_score(conf, self.conf, self.method, self.null_profile)

    def reference(self, key: str) -> tuple[float, float]:
        """Mean and spread of a photo's null, shrunk towards the pooled null (empirical Bayes).

        With a couple of dozen partners a photo's spread is often zero (no partner had a strong
        match), which would make one chance match look like overwhelming evidence.
        """
        own, pooled, k = self.per_photo.get(key), self.pooled, self.conf.null_shrinkage
        if own is None or own.n == 0:
            mean, var = pooled.mean, pooled.std**2
        else:
            n = own.n
            mean = (n * own.mean + k * pooled.mean) / (n + k)
            var = (n * own.std**2 + k * pooled.std**2) / (n + k)
        return mean, max(float(np.sqrt(var)), self.conf.min_spread)

    def z(self, key: str, score: float) -> float:
        mean, spread = self.reference(key)
        return (score - mean) / spread

    @classmethod
    def fit(
        cls,
        method: str,
        negatives: dict[str, list[np.ndarray]],
        sc: ScoringConf,
        prior: MethodPrior | None = None,
        prior_confidences: Sequence[float] = (),
    ) -> NullModel:
        """``negatives[key]``: confidence arrays of that photo against other individuals' photos.

        With a ``prior`` the pooled null starts from the prior's (weighing :data:`PRIOR_WEIGHT` pairs) and
        the Wasserstein profile is the prior's, the one its calibrator was fitted with.
        """
        per_photo: dict[str, PhotoNull] = {}
        pooled_scores: list[float] = []
        pooled_conf: list[np.ndarray] = []
        all_arrays = [c for arrays in negatives.values() for c in arrays]
        if prior is not None and prior.null_profile is not None:
            null_profile = np.asarray(prior.null_profile, dtype=np.float64)
        elif all_arrays:
            null_profile = np.mean([confidence_profile(c) for c in all_arrays], axis=0)
        else:
            null_profile = np.zeros(PROFILE_SLOTS)
        for key, arrays in negatives.items():
            scores = [pair_score(c, sc, method, null_profile) for c in arrays]
            pooled_scores += scores
            pooled_conf += arrays
            if scores:
                per_photo[key] = PhotoNull(float(np.mean(scores)), float(np.std(scores)), len(scores))
        if prior is not None:
            pooled = _blend(pooled_scores, prior)
        elif pooled_scores:
            pooled = PhotoNull(float(np.mean(pooled_scores)), float(np.std(pooled_scores)), len(pooled_scores))
        else:  # a gallery of one individual has no null yet: assume nothing beyond chance
            pooled = PhotoNull(0.0, 1.0, 0)
        sample = np.concatenate(pooled_conf) if pooled_conf else np.asarray(prior_confidences, dtype=np.float32)
        if len(sample) > 20_000:
            sample = np.random.default_rng(0).choice(sample, 20_000, replace=False)
        return cls(method, per_photo, pooled, np.sort(sample.astype(np.float32)), sc, null_profile)


def _blend(scores: Sequence[float], prior: MethodPrior) -> PhotoNull:
    """The prior's pooled null updated with a gallery's own null scores (a conjugate-style weighted mean)."""
    n, k = len(scores), PRIOR_WEIGHT
    if n == 0:
        return PhotoNull(prior.null_mean, prior.null_std, k)
    mean = (float(np.sum(scores)) + k * prior.null_mean) / (n + k)
    second = (float(np.sum(np.square(scores))) + k * (prior.null_std**2 + prior.null_mean**2)) / (n + k)
    return PhotoNull(mean, float(np.sqrt(max(second - mean**2, 0.0))), n + k)


def evidence(z: np.ndarray | float) -> np.ndarray:
    """Signed log of a z-score: true pairs reach z in the hundreds, and a logistic on raw z saturates."""
    z = np.asarray(z, dtype=np.float64)
    return np.sign(z) * np.log1p(np.abs(z))


@dataclass
class Calibrator:
    """Logistic map from a z-score to the likelihood ratio same/different individual.

    Fitted on the gallery's own pairs with the two classes weighted equally, so its logit is the log
    likelihood ratio; the prior of a new individual is applied later, in :func:`identity_probabilities`.
    """

    slope: float = 1.5
    offset: float = 1.5  # evidence (signed log z) at which both hypotheses are equally likely
    fitted: bool = False

    def log_likelihood_ratio(self, z: np.ndarray | float) -> np.ndarray:
        return self.slope * (evidence(z) - self.offset)

    def predict(self, z: np.ndarray | float) -> np.ndarray:
        """P(same individual) for one pair at even prior odds."""
        return 1.0 / (1.0 + np.exp(-self.log_likelihood_ratio(z)))

    @classmethod
    def from_prior(cls, prior: MethodPrior) -> Calibrator:
        return cls(prior.slope, prior.offset, True)

    @classmethod
    def fit(cls, positives: Sequence[float], negatives: Sequence[float], min_each: int = 5) -> Calibrator:
        """Regularised logistic regression; too few examples keeps the conservative default."""
        if len(positives) < min_each or len(negatives) < min_each:
            log.info("calibration: %d positive / %d negative pairs, keeping defaults", len(positives), len(negatives))
            return cls()
        x = evidence(np.concatenate([positives, negatives]))
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        # Balance the classes: the gallery has far more negative than positive pairs.
        w = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))

        def loss(params: np.ndarray) -> float:
            a, b = params
            logits = a * (x - b)
            nll = np.logaddexp(0.0, -logits) * y + np.logaddexp(0.0, logits) * (1 - y)
            return float((w * nll).sum() + 1e-3 * (a - 1.0) ** 2)

        result = minimize(loss, x0=np.array([1.0, 1.0]), method="Nelder-Mead")
        slope, offset = (float(v) for v in result.x)
        if not np.isfinite(slope) or slope <= 0:
            return cls()
        return cls(slope, offset, True)


def identity_probabilities(log_likelihood_ratios: Iterable[float], new_prior: float = 0.5) -> tuple[np.ndarray, float]:
    """At most one individual is the right one, or none of them.

    With N candidates sharing the prior ``1 - new_prior`` equally, P(k) ∝ (1-π)/N · LR_k and
    P(new) ∝ π. Returns the per-individual probabilities and the new-individual probability
    (summing to one).
    """
    if not 0.0 < new_prior < 1.0:
        raise ValueError(f"new_prior must lie strictly between 0 and 1, not {new_prior}")
    llr = np.asarray(list(log_likelihood_ratios), dtype=np.float64)
    if llr.size == 0:
        return llr, 1.0
    logs = np.append(np.log((1.0 - new_prior) / llr.size) + llr, np.log(new_prior))
    weights = np.exp(logs - logs.max())
    weights /= weights.sum()
    return weights[:-1], float(weights[-1])


def survival_curve(conf: np.ndarray, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of matches with confidence >= x on a grid: what the app plots against the null."""
    grid = np.linspace(0.0, 1.0, 101) if grid is None else grid
    conf = np.sort(np.asarray(conf, dtype=np.float64))
    if conf.size == 0:
        return grid, np.zeros_like(grid)
    return grid, 1.0 - np.searchsorted(conf, grid, side="left") / conf.size
