"""Rank the gallery's individuals for a query photo.

The same :class:`Engine` serves the command line, the app and the evaluation, so a photo gets
the same ranking wherever it is asked about. A :class:`GalleryIndex` holds the gallery's features
in memory together with the null model fitted from the gallery's own pairs; build it once per
gallery version and reuse it for every query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import scute_home
from core.engine.features import FeatureCache, Features, make_extractor, photo_key
from core.engine.matching import MatchResult, matcher_for
from core.engine.orientation import as_views, best_turn, default_turns, parse_turns, strongest
from core.engine.scoring import Calibrator, NullModel, ScoringConf, identity_probabilities
from core.engine.shortlist import ShortlistConf
from core.engine.shortlist import identify as shortlist_identify
from core.engine.shortlist import resolve as resolve_shortlist
from core.errors import EmptyGalleryError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


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
        """The same photo turned a further ``turn`` degrees clockwise (core.orientation)."""
        return dataclasses.replace(self, rotation=(self.rotation + turn) % 360)


@dataclass
class Candidate:
    identity: str
    name: str | None
    probability: float
    score: float  # z-score of the best photo against its null
    matches: int  # all matches with the best photo
    strong_matches: int  # matches at or above the scoring threshold
    photo: GalleryPhoto
    confidences: np.ndarray  # per-match confidences with the best photo, for the CDF plot
    match: MatchResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "name": self.name,
            "probability": round(self.probability, 6),
            "score": round(self.score, 6),
            "matches": self.matches,
            "strong_matches": self.strong_matches,
            "photo": str(self.photo.path),
        }


@dataclass
class Identification:
    candidates: list[Candidate]  # best first, at most top_k
    new_individual_probability: float
    ranking: list[str]  # every gallery identity, best first
    scores: dict[str, float]  # identity -> best z-score
    null_confidences: np.ndarray  # sample of non-matching confidences, for the CDF plot
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "new_individual_probability": round(self.new_individual_probability, 6),
            "method": self.method,
        }


@dataclass
class GalleryIndex:
    """Gallery features in memory plus the confidences of the sampled null pairs."""

    photos: list[GalleryPhoto]
    features: list[Features]
    negatives: dict[str, list[np.ndarray]]  # key -> confidences vs other individuals
    positives: dict[str, list[np.ndarray]]  # key -> confidences vs the same individual
    scoring: ScoringConf
    negative_identities: dict[str, list[str]] = field(default_factory=dict)  # key -> who each negative shows
    _models: dict[str, tuple[NullModel, Calibrator]] = field(default_factory=dict)
    shortlists: dict[Any, Any] = field(default_factory=dict, repr=False)  # core.shortlist banks, built on first use

    @property
    def identities(self) -> list[str]:
        return sorted({p.identity for p in self.photos})

    def model(self, method: str) -> tuple[NullModel, Calibrator]:
        """Null and calibrator for one scoring method, fitted on first use."""
        if method not in self._models:
            null = NullModel.fit(method, self.negatives, self.scoring)
            self._models[method] = (null, Calibrator.fit(*self._best_of_individual(null)))
        return self._models[method]

    def _best_of_individual(self, null: NullModel) -> tuple[list[float], list[float]]:
        """Calibration samples of the statistic that ranking uses: an individual's best photo.

        Per pair, same-individual photos often show the other side of the head and look like
        strangers, which flattened the calibrator and put the new-individual probability of
        animals never seen before at about 0.4. So each photo contributes its best z-score against
        its own individual and its best against each other individual.
        """
        same: list[float] = []
        different: list[float] = []
        for key, arrays in self.positives.items():
            if arrays:
                same.append(max(null.z(key, null.score(c)) for c in arrays))
        for key, arrays in self.negatives.items():
            owners = self.negative_identities.get(key) or [f"pair {i}" for i in range(len(arrays))]
            best: dict[str, float] = {}
            for owner, c in zip(owners, arrays, strict=True):
                best[owner] = max(best.get(owner, -np.inf), null.z(key, null.score(c)))
            different += best.values()
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
        path = self._path(a, b)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, idx0=result.idx0, idx1=result.idx1, conf=result.confidence)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


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
    for a in keys:
        others = sorted((b for b in keys if b != a), key=lambda b: _pair_rank(a, b))
        neg = [b for b in others if by_key[b].identity != by_key[a].identity][: sc.null_negatives]
        pos = [b for b in others if by_key[b].identity == by_key[a].identity][: sc.null_positives]
        negatives[a], positives[a] = neg, pos
        pairs.update(tuple(sorted((a, b))) for b in neg + pos)
    return pairs, negatives, positives


class Engine:
    """Extractor + matcher + scoring with their caches; one per process."""

    def __init__(
        self,
        extractor: str = "aliked",
        extractor_conf: dict[str, Any] | None = None,
        matcher_conf: dict[str, Any] | None = None,
        scoring: ScoringConf | None = None,
        device: str | None = None,
        cache_dir: Path | None = None,
        turns: Sequence[int] | str | None = None,
    ) -> None:
        self.extractor = make_extractor(extractor, extractor_conf, device)
        self.matcher = matcher_for(extractor, matcher_conf, self.extractor.device)
        #: Clockwise quarter-turns each query is tried in (core.orientation); None: the device's default.
        self.turns = parse_turns(turns) or default_turns(self.extractor.device)
        self.scoring = scoring or ScoringConf()
        if self.scoring.threshold is None:  # what counts as a strong match depends on the matcher
            self.scoring = dataclasses.replace(self.scoring, threshold=self.matcher.strong_confidence)
        root = Path(cache_dir) if cache_dir else scute_home()
        self.feature_cache = FeatureCache(root / "features")
        matcher_tag = hashlib.sha1(repr(sorted(self.matcher.conf.items())).encode()).hexdigest()[:8]
        self.pair_cache = PairCache(root / "matches", f"{self.extractor.version}-{self.matcher.name}-{matcher_tag}")

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    def features(
        self,
        source: Path | bytes | np.ndarray,
        sha256: str,
        crop: tuple[float, float, float, float] | None = None,
        rotation: int = 0,
    ) -> Features:
        return self.feature_cache.get_or_extract(self.extractor, source, sha256, crop, rotation)

    def photo_features(self, photo: GalleryPhoto) -> Features:
        return self.features(photo.path, photo.sha256, photo.crop, photo.rotation)

    def query_views(
        self,
        source: Path | bytes | np.ndarray,
        sha256: str,
        crop: tuple[float, float, float, float] | None = None,
        rotation: int = 0,
    ) -> list[Features]:
        """The query's features in each of :attr:`turns`; the first is the photo as given."""
        return [self.features(source, sha256, crop, (rotation + turn) % 360) for turn in self.turns]

    def photo_views(self, photo: GalleryPhoto) -> list[Features]:
        return [self.photo_features(photo.turned(turn)) for turn in self.turns]

    def match_views(self, query: Features | Sequence[Features], gallery: Sequence[Features]) -> list[MatchResult]:
        """Match every view of a query with each gallery photo and keep, per photo, the best turn."""
        views = as_views(query)
        tries = [self.matcher.match_many(view, gallery) for view in views]
        return tries[0] if len(tries) == 1 else self.best_of_turns(views, tries)

    def best_of_turns(self, views: Sequence[Features], tries: Sequence[Sequence[MatchResult]]) -> list[MatchResult]:
        """``tries[v][i]``: view ``v`` (turn ``turns[v]``) against gallery photo ``i``; the best view per photo."""
        turns, sizes = self.turns[: len(views)], [view.image_size for view in views]
        return [best_turn([t[i] for t in tries], turns, sizes, self.scoring.threshold) for i in range(len(tries[0]))]

    def build_index(self, photos: Iterable[GalleryPhoto], progress: Progress | None = None) -> GalleryIndex:
        """Features for every photo (cached), then the sampled null pairs (cached); no query needed."""
        photos = sorted(photos, key=lambda p: p.key)
        if not photos:
            raise EmptyGalleryError(
                "The gallery is empty: import a catalogue or confirm a first sighting before identifying."
            )
        pairs, neg_keys, pos_keys = null_pairs(photos, self.scoring)
        total = len(photos) + len(pairs) * len(self.turns)
        features: list[Features] = []
        for i, photo in enumerate(photos):
            features.append(self.photo_features(photo))
            if progress:
                progress(i + 1, total)
        by_key = {p.key: f for p, f in zip(photos, features, strict=True)}
        by_photo = {p.key: p for p in photos}

        def turned_features(key: str, turn: int) -> Features:
            return by_key[key] if turn == 0 else self.photo_features(by_photo[key].turned(turn))

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
                    tries[(a, b)][turn] = cached[2]
        done = sum(len(t) for t in tries.values())
        for (first, turn), partners in todo.items():
            results = self.matcher.match_many(turned_features(first, turn), [by_key[p] for p in partners])
            for second, result in zip(partners, results, strict=True):
                self.pair_cache.put(by_photo[first].turned(turn).key, second, result)
                tries[tuple(sorted((first, second)))][turn] = result.confidence  # type: ignore[index]
            done += len(partners)
            if progress:
                progress(len(photos) + done, total)
        if progress:
            progress(total, total)
        confidences: dict[tuple[str, str], np.ndarray] = {}
        for pair, by_turn in tries.items():
            arrays = [by_turn[turn] for turn in self.turns]
            confidences[pair] = arrays[strongest(arrays, self.scoring.threshold)]

        def lookup(a: str, partners: list[str]) -> list[np.ndarray]:
            return [confidences[tuple(sorted((a, b)))] for b in partners]

        identity = {p.key: p.identity for p in photos}
        return GalleryIndex(
            photos,
            features,
            {a: lookup(a, bs) for a, bs in neg_keys.items()},
            {a: lookup(a, bs) for a, bs in pos_keys.items()},
            self.scoring,
            {a: [identity[b] for b in bs] for a, bs in neg_keys.items()},
        )

    def match_gallery(self, query: Features | Sequence[Features], index: GalleryIndex) -> list[MatchResult]:
        """``query``: one Features (as given) or the views from :meth:`query_views` (every turn tried)."""
        return self.match_views(query, index.features)

    def rank(
        self,
        results: Sequence[MatchResult],
        index: GalleryIndex,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
    ) -> Identification:
        """Score matches already computed against ``index.photos`` (in order) and rank individuals."""
        method = method or self.scoring.method
        null, calibrator = index.model(method)
        excluded = set(exclude)
        best: dict[str, tuple[float, int]] = {}
        for i, (photo, result) in enumerate(zip(index.photos, results, strict=True)):
            if photo.key in excluded or photo.sha256 in excluded:
                continue
            z = null.z(photo.key, null.score(result.confidence))
            if photo.identity not in best or z > best[photo.identity][0]:
                best[photo.identity] = (z, i)
        if not best:
            raise EmptyGalleryError("The gallery has no other photo to compare this one with.")
        ranking = sorted(best, key=lambda ident: (-best[ident][0], ident))
        z_values = np.array([best[ident][0] for ident in ranking])
        probabilities, p_new = identity_probabilities(calibrator.log_likelihood_ratio(z_values), self.scoring.new_prior)
        candidates = []
        for ident, prob in zip(ranking[:top_k], probabilities[:top_k], strict=False):
            z, i = best[ident]
            result = results[i]
            candidates.append(
                Candidate(
                    identity=ident,
                    name=index.photos[i].name,
                    probability=float(prob),
                    score=float(z),
                    matches=result.n_matches,
                    strong_matches=int(np.count_nonzero(result.confidence >= self.scoring.threshold)),
                    photo=index.photos[i],
                    confidences=result.confidence,
                    match=result,
                )
            )
        return Identification(
            candidates,
            p_new,
            ranking,
            {ident: float(best[ident][0]) for ident in ranking},
            null.null_confidences,
            method,
        )

    def identify(
        self,
        query: Features | Sequence[Features],
        index: GalleryIndex,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
        shortlist: ShortlistConf | bool | None = None,
    ) -> Identification:
        """``shortlist``: None shortlists large galleries only (core.shortlist), False matches every photo."""
        conf = resolve_shortlist(shortlist, len(index.photos), self.device)
        if conf is not None:
            return shortlist_identify(self, query, index, conf, top_k, method, exclude)[0]
        return self.rank(self.match_gallery(query, index), index, top_k, method, exclude)
