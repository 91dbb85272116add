"""The gallery as the engine holds it in memory: photos, their features, and the null pairs' confidences.

Build a :class:`GalleryIndex` once per gallery version and reuse it for every query. With a shipped prior
(core.engine.prior) that is only reading features. Without one, or when a deployment asks for them, each
gallery photo gets a few sampled partners (other individuals for its null, its own individual for the
calibrator); those pairs are matched once and kept on disk in a :class:`PairCache`, so a rebuild after a
change matches only new pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.engine.features import Features, photo_key
from core.engine.framing import FrameConf, central
from core.engine.gallery_features import DEFAULT_FEATURE_MEMORY_MIB, FeatureMemory, GalleryFeatures
from core.engine.matching import Matcher, MatchResult
from core.engine.orientation import strongest
from core.engine.prior import Prior, null_quantiles
from core.engine.scoring import Calibrator, NullModel, ScoringConf, individual_score
from core.errors import EmptyGalleryError, ScuteError
from core.io import atomic_output
from core.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryPhoto:
    """One gallery photo as the engine sees it: content, framing and who it shows."""

    sha256: str
    identity: str
    path: Path
    crop: tuple[float, float, float, float] | None = None
    rotation: int = 0
    photo_id: int | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        return photo_key(self.sha256, self.crop, self.rotation)

    def turned(self, turn: int) -> GalleryPhoto:
        """The same photo turned a further ``turn`` degrees clockwise (core.engine.orientation)."""
        return dataclasses.replace(self, rotation=(self.rotation + turn) % 360)


@dataclass
class GalleryIndex:
    """Gallery features in memory plus the confidences of the sampled null pairs."""

    photos: list[GalleryPhoto]
    features: Sequence[Features]  # in photo order; read on demand within a memory budget (gallery_features)
    negatives: dict[str, list[np.ndarray]]  # key -> confidences vs other individuals
    positives: dict[str, list[np.ndarray]]  # key -> confidences vs the same individual
    scoring: ScoringConf
    negative_identities: dict[str, list[str]] = field(default_factory=dict)  # key -> who each negative shows
    prior: Prior | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # photo key -> why it was left out
    _models: dict[str, tuple[NullModel, Calibrator]] = field(default_factory=dict)
    shortlists: dict[Any, Any] = field(
        default_factory=dict, repr=False
    )  # core.engine.shortlist banks, built on first use

    @property
    def identities(self) -> list[str]:
        return sorted({p.identity for p in self.photos})

    def model(self, method: str) -> tuple[NullModel, Calibrator]:
        """Null and calibrator for one scoring method, fitted on first use."""
        if method not in self._models:
            prior = self.prior.methods.get(method) if self.prior else None
            if prior is None:
                null = NullModel.fit(method, self.negatives, self.scoring)
                calibrator = Calibrator.fit(*self.calibration_samples(null))
            else:
                assert self.prior is not None
                null = NullModel.fit(method, self.negatives, self.scoring, prior, self.prior.null_confidences)
                calibrator = Calibrator.from_prior(prior)
            self._models[method] = (null, calibrator)
        return self._models[method]

    def calibration_samples(self, null: NullModel) -> tuple[list[float], list[float]]:
        """Calibration samples of the statistic that ranking uses: an individual's score from its best photos
        (:func:`~core.engine.scoring.individual_score`).

        Per pair, same-individual photos often show the other side of the head and look like
        strangers, which flattened the calibrator and put the new-individual probability of
        animals never seen before at about 0.4. So each photo contributes its score against its
        own individual's sampled photos and its score against each other individual's.
        """
        photos = self.scoring.individual_photos
        same: list[float] = []
        different: list[float] = []
        for key, arrays in self.positives.items():
            if arrays:
                same.append(individual_score((null.z(key, null.score(c)) for c in arrays), photos))
        for key, arrays in self.negatives.items():
            owners = self.negative_identities.get(key) or [f"pair {i}" for i in range(len(arrays))]
            per_owner: dict[str, list[float]] = {}
            for owner, c in zip(owners, arrays, strict=True):
                per_owner.setdefault(owner, []).append(null.z(key, null.score(c)))
            different += [individual_score(zs, photos) for zs in per_owner.values()]
        return same, different


class PairCache:
    """Match results of gallery/gallery pairs on disk, so refitting the null only matches new pairs."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = Path(root) / version

    def _path(self, a: str, b: str) -> Path:
        return self.root / a[:2] / f"{a}__{b}.npz"

    def get(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        path = self._path(a, b)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["idx0"], data["idx1"], data["conf"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None

    def put(self, a: str, b: str, result: MatchResult) -> None:
        with atomic_output(self._path(a, b)) as fh:
            np.savez(fh, idx0=result.idx0, idx1=result.idx1, conf=result.confidence)


def _pair(a: str, b: str) -> tuple[str, str]:
    """A pair of photo keys in one order, whichever photo is named first."""
    return (a, b) if a <= b else (b, a)


def _pair_rank(a: str, b: str) -> str:
    """A deterministic pseudo-random order of partners that does not depend on listing order."""
    lo, hi = sorted((a, b))
    return hashlib.sha1(f"{lo}|{hi}".encode()).hexdigest()


def null_pairs(photos: Sequence[GalleryPhoto], sc: ScoringConf) -> tuple[set[tuple[str, str]], dict, dict]:
    """Sample each photo's partners: other individuals for its null, its own for calibration."""
    by_key = {p.key: p for p in photos}
    keys = sorted(by_key)
    negatives: dict[str, list[str]] = {}
    positives: dict[str, list[str]] = {}
    pairs: set[tuple[str, str]] = set()
    n_neg, n_pos = sc.null_negatives or 0, sc.null_positives or 0
    for a in keys:
        if not n_neg and not n_pos:
            negatives[a], positives[a] = [], []
            continue
        others = sorted((b for b in keys if b != a), key=lambda b: _pair_rank(a, b))
        neg = [b for b in others if by_key[b].identity != by_key[a].identity][:n_neg]
        pos = [b for b in others if by_key[b].identity == by_key[a].identity][:n_pos]
        negatives[a], positives[a] = neg, pos
        pairs.update(_pair(a, b) for b in neg + pos)
    return pairs, negatives, positives


class IndexBuilder:
    """Features for every photo, then each photo's sampled partners matched in every turn a query may take."""

    def __init__(
        self,
        features_of: Callable[[GalleryPhoto], Features],
        matcher: Matcher,
        turns: Sequence[int],
        scoring: ScoringConf,
        pair_cache: PairCache,
        prior: Prior | None = None,
        feature_memory: int = DEFAULT_FEATURE_MEMORY_MIB * 2**20,
        frame: FrameConf | None = None,
    ) -> None:
        """``frame``: which of a pair's matches count (core.engine.framing), as in a query's pairs."""
        self.features_of = features_of
        self.matcher = matcher
        self.turns = tuple(turns)
        self.scoring = scoring
        self.pair_cache = pair_cache
        self.prior = prior
        self.feature_memory = feature_memory  # bytes of features the index keeps in memory (gallery_features)
        self.frame = frame

    def build(
        self,
        photos: Iterable[GalleryPhoto],
        progress: Progress | None = None,
        previous: GalleryIndex | None = None,
    ) -> GalleryIndex:
        """Features for every photo (from ``previous``, else cached on disk), then the sampled null pairs (cached).

        A photo whose features cannot be had (unreadable since it was accepted, or no keypoints in its crop) is
        left out and listed in :attr:`GalleryIndex.skipped`: one bad gallery photo must not stop every search.
        """
        photos = sorted(photos, key=lambda p: p.key)
        if not photos:
            raise EmptyGalleryError(
                "The gallery is empty: import a catalogue or confirm a first sighting before identifying."
            )
        # The previous version's photos were usable and their features are cached: they are not read again,
        # and the memory of recently used features carries over.
        known = {p.key for p in previous.photos} if previous else set()
        if previous is not None and isinstance(previous.features, GalleryFeatures):
            memory = previous.features.memory
        else:
            memory = FeatureMemory(self.feature_memory)
            if previous is not None:  # an index assembled from plain lists: its features seed the memory
                for photo, f in zip(previous.photos, previous.features, strict=True):
                    memory.put(photo.key, f)
        pairs, neg_keys, pos_keys = null_pairs(photos, self.scoring)
        total = len(photos) + len(pairs) * len(self.turns)
        usable: list[GalleryPhoto] = []
        skipped: dict[str, str] = {}
        for i, photo in enumerate(photos):
            try:
                if photo.key not in known:
                    memory.put(photo.key, self.features_of(photo))
                usable.append(photo)
            except (ScuteError, OSError) as exc:
                log.warning("Gallery photo %s left out of the index: %s", photo.path, exc)
                skipped[photo.key] = f"gallery photo {photo.photo_id or photo.path.name} of {photo.identity}: {exc}"
            if progress:
                progress(i + 1, total)
        if not usable:
            # Said of the gallery, never of the searcher's photo: the messages quote the gallery photos' reasons.
            raise EmptyGalleryError(
                f"None of the gallery's {len(skipped)} photos can be searched with, so there is nothing to compare "
                "your photo with (an admin can list them with `python -m core check`). First one: "
                + sorted(skipped.values())[0]
            )
        if skipped:
            photos = usable
            pairs, neg_keys, pos_keys = null_pairs(photos, self.scoring)
            total = len(photos) + len(skipped) + len(pairs) * len(self.turns)
        features = GalleryFeatures(photos, self.features_of, memory)
        by_photo = {p.key: p for p in photos}

        first_pair_step = total - len(pairs) * len(self.turns)

        def turned_features(key: str, turn: int) -> Features:
            return features.of(by_photo[key]) if turn == 0 else self.features_of(by_photo[key].turned(turn))

        centres: dict[tuple[str, int], np.ndarray] = {}  # a photo's (turned) features are read once for this

        def centre(key: str, turn: int) -> np.ndarray:
            if (key, turn) not in centres:
                assert self.frame is not None
                centres[(key, turn)] = central(turned_features(key, turn), self.frame)
            return centres[(key, turn)]

        def counted(first: str, turn: int, second: str, idx0: np.ndarray, idx1: np.ndarray, conf: np.ndarray):
            """The confidences of the matches that count (core.engine.framing), as a query's pair keeps them."""
            if self.frame is None:
                return conf
            keep = centre(first, turn)[idx0]
            return conf[keep & centre(second, 0)[idx1] if self.frame.gallery else keep]

        # Each pair is matched as a query would be: its second photo turned against its first (turn 0 keeps
        # the original order). The cache is keyed (first image as matched, second image).
        tries: dict[tuple[str, str], dict[int, np.ndarray]] = defaultdict(dict)
        todo: dict[tuple[str, int], list[str]] = defaultdict(list)
        for a, b in sorted(pairs):
            for turn in self.turns:
                first, second = (a, b) if turn == 0 else (b, a)
                cached = self.pair_cache.get(by_photo[first].turned(turn).key, second)
                if cached is None:
                    todo[(first, turn)].append(second)
                else:
                    tries[(a, b)][turn] = counted(first, turn, second, *cached)
        done = sum(len(t) for t in tries.values())
        for (first, turn), partners in todo.items():
            results = self.matcher.match_many(
                turned_features(first, turn), [features.of(by_photo[p]) for p in partners]
            )
            for second, result in zip(partners, results, strict=True):
                self.pair_cache.put(by_photo[first].turned(turn).key, second, result)
                tries[_pair(first, second)][turn] = counted(
                    first, turn, second, result.idx0, result.idx1, result.confidence
                )
            done += len(partners)
            if progress:
                progress(first_pair_step + done, total)
        if progress:
            progress(total, total)
        confidences: dict[tuple[str, str], np.ndarray] = {}
        for pair, by_turn in tries.items():
            arrays = [by_turn[turn] for turn in self.turns]
            confidences[pair] = arrays[strongest(arrays, self.scoring.strong)]

        def lookup(a: str, partners: list[str]) -> list[np.ndarray]:
            return [confidences[_pair(a, b)] for b in partners]

        identity = {p.key: p.identity for p in photos}
        return GalleryIndex(
            photos,
            features,
            {a: lookup(a, bs) for a, bs in neg_keys.items()},
            {a: lookup(a, bs) for a, bs in pos_keys.items()},
            self.scoring,
            {a: [identity[b] for b in bs] for a, bs in neg_keys.items()},
            self.prior,
            skipped=skipped,
        )


def fit_prior(indexes: Sequence[GalleryIndex], methods: Sequence[str], sig: str, source: dict[str, Any]) -> Prior:
    """A prior from indexes built with sampled pairs and no prior (one per data set: pairs never mix species).

    The calibrator is fitted on z-scores against the pooled null alone, as a gallery with the prior and no
    pairs of its own computes them.
    """
    from core.engine.prior import MethodPrior

    negatives = {k: v for index in indexes for k, v in index.negatives.items()}
    if not any(negatives.values()):
        raise ValueError("a prior needs indexes built with sampled null pairs")
    methods_out: dict[str, MethodPrior] = {}
    for method in methods:
        null = NullModel.fit(method, negatives, indexes[0].scoring)
        null.per_photo = {}  # z against the pooled null only
        same: list[float] = []
        different: list[float] = []
        for index in indexes:
            s, d = index.calibration_samples(null)
            same += s
            different += d
        calibrator = Calibrator.fit(same, different)
        profile = None
        if method == "wasserstein" and null.null_profile is not None:
            profile = tuple(round(float(v), 5) for v in null.null_profile)
        methods_out[method] = MethodPrior(
            null.pooled.mean, null.pooled.std, calibrator.slope, calibrator.offset, profile
        )
    arrays = [c for cs in negatives.values() for c in cs]
    return Prior(sig, methods_out, null_quantiles(arrays), source)
