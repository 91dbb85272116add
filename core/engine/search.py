"""Rank the gallery's individuals for a query photo.

The same :class:`Engine` serves the command line, the app and the evaluation, so a photo gets the same
ranking wherever it is asked about. It holds the extractor, the matcher and their caches; the gallery it
searches is a :class:`~core.engine.index.GalleryIndex`, built once per gallery version.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from core.engine.exposure import SHARED_EXPOSURE, ExposureConf, set_aside_shared_exposure
from core.engine.extractors import DEFAULT_EXTRACTOR, make_extractor
from core.engine.features import FeatureCache, Features
from core.engine.framing import FrameConf, keep_inside, preset_frame
from core.engine.gallery_features import DEFAULT_FEATURE_MEMORY_MIB, features_at
from core.engine.images import read_info
from core.engine.index import GalleryIndex, GalleryPhoto, IndexBuilder, PairCache
from core.engine.localise import Region, ZoomConf, locate, native_size, region_to_crop, to_frame, worth_zooming
from core.engine.matchers import matcher_for
from core.engine.matching import MatchResult
from core.engine.orientation import as_views, best_turn, default_turns, parse_turns
from core.engine.prior import Prior
from core.engine.prior import shipped as shipped_prior
from core.engine.prior import signature as prior_signature
from core.engine.scoring import (
    FALLBACK_NEGATIVES,
    FALLBACK_POSITIVES,
    ScoringConf,
    identity_probabilities,
    individual_score,
)
from core.engine.shortlist import Shortlist, ShortlistConf, shortlist_index
from core.engine.shortlist import resolve as resolve_shortlist
from core.errors import EmptyGalleryError, NoKeypointsError, ScuteError
from core.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    identity: str
    name: str | None
    probability: float
    score: float  # the individual's score: mean z-score of its best photos (ScoringConf.individual_photos)
    matches: int  # all matches with the best photo
    strong_matches: int  # matches at or above the scoring threshold
    photo: GalleryPhoto
    confidences: np.ndarray  # per-match confidences with the best photo, for the CDF plot
    match: MatchResult | None = None
    photo_score: float | None = None  # the best photo's own z-score; None: ``score`` (an individual of one photo)

    @property
    def photo_z(self) -> float:
        """The z-score of the photo shown as evidence (``score`` averages the individual's best photos)."""
        return self.score if self.photo_score is None else self.photo_score

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
    scores: dict[str, float]  # identity -> its score (Candidate.score)
    null_confidences: np.ndarray  # sample of non-matching confidences, for the CDF plot
    method: str

    @property
    def best_probability(self) -> float:
        """The first candidate's probability; 0 when there is none."""
        return self.candidates[0].probability if self.candidates else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "new_individual_probability": round(self.new_individual_probability, 6),
            "method": self.method,
        }


@dataclass
class SearchOutcome:
    """A ranking plus the matches behind it: ``results[i]`` is the match with ``index.photos[i]``."""

    identification: Identification
    results: dict[int, MatchResult]
    shortlist: Shortlist | None = None  # what the shortlist chose, when one was used
    views: list[Features] = dataclasses.field(default_factory=list)  # the query features matched (search_photo)
    zoom: Zoom | None = None  # where search_photo zoomed to, when it did
    declined_zoom: Identification | None = None  # a zoomed pass less sure than the first, which stands

    def zoom_passes(self) -> tuple[Identification | None, Identification | None]:
        """(first pass, zoomed pass) of a search that zoomed, whichever it kept; (None, None) if it did not zoom."""
        if self.zoom is not None:
            return self.zoom.first, self.identification
        if self.declined_zoom is not None:
            return self.identification, self.declined_zoom
        return None, None


@dataclass(frozen=True)
class Zoom:
    """The region a search zoomed to (core.engine.localise) and the frames its keypoints live in."""

    region: Region  # normalised (x0, y0, x1, y1) in the query as the engine received it
    frame_size: tuple[int, int]  # (W, H) of the as-given query's working image: what results' kpts0 refer to
    zoomed_size: tuple[int, int]  # (W, H) of the zoomed working image: what ``views`` keypoints refer to
    first: Identification  # the first pass's ranking, before zooming

    def to_frame(self, result: MatchResult) -> MatchResult:
        return to_frame(result, self.region, self.zoomed_size, self.frame_size)


class Engine:
    """Extractor + matcher + scoring with their caches; one per process."""

    def __init__(
        self,
        extractor: str = DEFAULT_EXTRACTOR,
        extractor_conf: dict[str, Any] | None = None,
        matcher_conf: dict[str, Any] | None = None,
        scoring: ScoringConf | None = None,
        device: str | None = None,
        *,
        cache_dir: Path,
        turns: Sequence[int] | str | None = None,
        weights_dir: Path | None = None,
        prior: Prior | Path | bool = True,
        zoom: ZoomConf | None = None,
        feature_memory_mib: int = DEFAULT_FEATURE_MEMORY_MIB,
        exposure: ExposureConf | None = SHARED_EXPOSURE,
        frame: FrameConf | Literal["preset"] | None = "preset",
    ) -> None:
        """``prior``: True uses the prior shipped for these settings if there is one (core.engine.prior),
        False none (each gallery fits its own from sampled pairs), a path or a Prior that one.
        ``zoom``: how :meth:`search_photo` zooms to the animal (core.engine.localise); None never zooms.
        ``feature_memory_mib``: gallery features an index keeps in memory (core.engine.gallery_features).
        ``exposure``: when a query's matches with a gallery photo are set aside as a shared exposure
        (core.engine.exposure); None never.
        ``frame``: which matches count, by where they lie in the two frames (core.engine.framing); None every
        match; ``"preset"``: where the rule was chosen (ALIKED) only central ones, elsewhere every match."""
        self.zoom = zoom
        self.exposure = exposure
        self.feature_memory = feature_memory_mib * 2**20
        self.extractor = make_extractor(extractor, extractor_conf, device, weights_dir)
        self.matcher = matcher_for(extractor, matcher_conf, self.extractor.device, weights_dir)
        #: Clockwise quarter-turns each query is tried in (core.engine.orientation); None: the device's default.
        self.turns = parse_turns(turns) or default_turns(self.extractor.device)
        self.frame = preset_frame(extractor) if frame == "preset" else frame
        self.scoring = scoring or ScoringConf()
        if self.scoring.threshold is None:  # what counts as a strong match depends on the matcher
            self.scoring = dataclasses.replace(self.scoring, threshold=self.matcher.strong_confidence)
        self.prior = self._prior(prior)
        if self.scoring.null_negatives is None or self.scoring.null_positives is None:
            negatives, positives = (0, 0) if self.prior else (FALLBACK_NEGATIVES, FALLBACK_POSITIVES)
            self.scoring = dataclasses.replace(
                self.scoring,
                null_negatives=negatives if self.scoring.null_negatives is None else self.scoring.null_negatives,
                null_positives=positives if self.scoring.null_positives is None else self.scoring.null_positives,
            )
        root = Path(cache_dir)
        self.feature_cache = FeatureCache(root / "features")
        self.pair_cache = PairCache(root / "matches", f"{self.extractor.version}-{self.matcher.version}")

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    @property
    def signature(self) -> str:
        """What a prior must have been fitted with to serve this engine."""
        frame = self.frame.tag if self.frame else ""
        return prior_signature(
            self.extractor.version, self.matcher.version, self.turns, self.scoring.individual_photos, frame
        )

    def _prior(self, prior: Prior | Path | bool) -> Prior | None:
        if prior is False:
            return None
        if prior is True:
            return shipped_prior(self.signature)
        loaded = prior if isinstance(prior, Prior) else Prior.load(Path(prior))
        if loaded.signature != self.signature:
            raise ScuteError(
                f"The prior was fitted for other engine settings ({loaded.signature}), not these ({self.signature})."
            )
        return loaded

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

    def match_views(
        self,
        query: Features | Sequence[Features],
        gallery: Sequence[Features],
        progress: Progress | None = None,
    ) -> list[MatchResult]:
        """Match every view of a query with each gallery photo and keep, per photo, the best turn.

        ``progress(pairs matched, pairs in all)`` after each of the matcher's batches (one pair on a CPU).
        """
        views = as_views(query)
        step, total, done = max(1, self.matcher.batch_size), len(views) * len(gallery), 0
        tries: list[list[MatchResult]] = []
        for view in views:
            results: list[MatchResult] = []
            for start in range(0, len(gallery), step):
                chunk = gallery[start : start + step]
                results += self.matcher.match_many(view, chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            tries.append(results)
        return self.best_of_turns(views, tries, [f.image_size for f in gallery])

    def best_of_turns(
        self,
        views: Sequence[Features],
        tries: Sequence[Sequence[MatchResult]],
        gallery_sizes: Sequence[tuple[int, int]],
    ) -> list[MatchResult]:
        """``tries[v][i]``: view ``v`` (turn ``turns[v]``) against gallery photo ``i`` (of ``gallery_sizes[i]``);
        the best view per photo, without the matches it only shares as one exposure with that photo
        (core.engine.exposure), then without those near either frame's edge (core.engine.framing)."""
        turns, sizes = self.turns[: len(views)], [view.image_size for view in views]
        best = [best_turn([t[i] for t in tries], turns, sizes, self.scoring.strong) for i in range(len(tries[0]))]
        if self.exposure is not None:
            best = [set_aside_shared_exposure(result, self.scoring.strong, self.exposure) for result in best]
        if self.frame is None:
            return best
        width, height = sizes[0]
        given = (height, width) if turns[0] % 180 == 90 else (width, height)  # the query's un-turned frame
        return [keep_inside(r, given, size, self.frame) for r, size in zip(best, gallery_sizes, strict=True)]

    def build_index(
        self,
        photos: Iterable[GalleryPhoto],
        progress: Progress | None = None,
        previous: GalleryIndex | None = None,
    ) -> GalleryIndex:
        """Features for every photo (reused from ``previous``, else cached), the sampled null pairs if any, and
        the shortlist's bank when searches will use one: everything a search needs, so none waits for it."""
        builder = IndexBuilder(
            self.photo_features,
            self.matcher,
            self.turns,
            self.scoring,
            self.pair_cache,
            self.prior,
            self.feature_memory,
            self.frame,
        )
        index = builder.build(photos, progress, previous)
        conf = self.shortlist_conf(None, len(index.photos))
        if conf is not None:
            shortlist_index(index, conf, self.device)
        return index

    def shortlist_conf(self, shortlist: ShortlistConf | bool | None, n_photos: int) -> ShortlistConf | None:
        """The shortlist a search of ``n_photos`` uses (core.engine.shortlist.resolve), None for exhaustive; one
        without a frame rule of its own votes with this engine's (only central keypoints where matches count so)."""
        conf = resolve_shortlist(shortlist, n_photos, self.device)
        if conf is None or conf.frame is not None or self.frame is None:
            return conf
        return dataclasses.replace(conf, frame=self.frame)

    def match_gallery(
        self, query: Features | Sequence[Features], index: GalleryIndex, progress: Progress | None = None
    ) -> list[MatchResult]:
        """``query``: one Features (as given) or the views from :meth:`query_views` (every turn tried)."""
        return self.match_views(query, index.features, progress)

    def rank(
        self,
        results: Sequence[MatchResult],
        index: GalleryIndex,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
    ) -> Identification:
        """Score matches already computed against ``index.photos`` (in order) and rank individuals.

        An individual scores by its best photos (:func:`~core.engine.scoring.individual_score`); its evidence is
        its best photo's match."""
        method = method or self.scoring.method
        null, calibrator = index.model(method)
        excluded = set(exclude)
        compared: dict[str, list[tuple[float, int]]] = {}  # identity -> (z, i) of each of its compared photos
        for i, (photo, result) in enumerate(zip(index.photos, results, strict=True)):
            if photo.key in excluded or photo.sha256 in excluded:
                continue
            compared.setdefault(photo.identity, []).append((null.z(photo.key, null.score(result.confidence)), i))
        if not compared:
            raise EmptyGalleryError("The gallery has no other photo to compare this one with.")
        photos = self.scoring.individual_photos
        score = {ident: individual_score((z for z, _ in zi), photos) for ident, zi in compared.items()}
        best = {ident: max(zi, key=lambda pair: pair[0]) for ident, zi in compared.items()}  # the first on ties
        ranking = sorted(score, key=lambda ident: (-score[ident], ident))
        z_values = np.array([score[ident] for ident in ranking])
        probabilities, p_new = identity_probabilities(calibrator.log_likelihood_ratio(z_values), self.scoring.new_prior)
        candidates = []
        for ident, prob in zip(ranking[:top_k], probabilities[:top_k], strict=False):
            i = best[ident][1]
            result = results[i]
            candidates.append(
                Candidate(
                    identity=ident,
                    name=index.photos[i].name,
                    probability=float(prob),
                    score=score[ident],
                    matches=result.n_matches,
                    strong_matches=int(np.count_nonzero(result.confidence >= self.scoring.strong)),
                    photo=index.photos[i],
                    confidences=result.confidence,
                    match=result,
                    photo_score=float(best[ident][0]),
                )
            )
        return Identification(
            candidates,
            p_new,
            ranking,
            {ident: score[ident] for ident in ranking},
            null.null_confidences,
            method,
        )

    def search(
        self,
        query: Features | Sequence[Features],
        index: GalleryIndex,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
        shortlist: ShortlistConf | bool | None = None,
        progress: Progress | None = None,
    ) -> SearchOutcome:
        """Match and rank: every photo of a small gallery, a shortlist's photos of a large one.

        ``shortlist``: None follows the device's preset (core.engine.shortlist), False matches every photo,
        True or a conf always shortlists. ``progress`` follows the matched pairs.
        """
        conf = self.shortlist_conf(shortlist, len(index.photos))
        if conf is None:
            matched = self.match_gallery(query, index, progress)
            return SearchOutcome(self.rank(matched, index, top_k, method, exclude), dict(enumerate(matched)))
        return self._shortlisted(query, index, conf, top_k, method, set(exclude), progress)

    def identify(
        self,
        query: Features | Sequence[Features],
        index: GalleryIndex,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
        shortlist: ShortlistConf | bool | None = None,
    ) -> Identification:
        """The ranking of :meth:`search` without the matches behind it."""
        return self.search(query, index, top_k, method, exclude, shortlist).identification

    def _shortlisted(
        self,
        query: Features | Sequence[Features],
        index: GalleryIndex,
        conf: ShortlistConf,
        top_k: int,
        method: str | None,
        exclude: set[str],
        progress: Progress | None = None,
    ) -> SearchOutcome:
        """Shortlist, match the shortlisted photos, score them exactly as exhaustive search does; while no
        candidate is sure enough (``conf.stop_probability``), match the next round's photos too (``conf.rounds``).

        The reranked individuals come first (by their scores); the others follow in shortlist order.
        ``progress`` counts the pairs of the rounds started so far.
        """
        bank = shortlist_index(index, conf, self.device)
        short = bank.select(query, exclude)
        if not short.photos:
            raise EmptyGalleryError("The gallery has no other photo to compare this one with.")
        matched: dict[int, MatchResult] = {}
        batch = short.photos
        while True:
            step = _offset_progress(progress, len(matched), len(matched) + len(batch))
            matched.update(zip(batch, self.match_views(query, features_at(index.features, batch), step), strict=True))
            identification = self._rank_subset(matched, index, top_k, method, exclude)
            if identification.best_probability >= conf.stop_probability:
                break
            batch = bank.widen(short)
            if not batch:
                break
        short.later = []  # rounds not needed are not part of what this search did
        reranked = set(identification.ranking)
        identification.ranking = identification.ranking + [i for i in short.ranking if i not in reranked]
        return SearchOutcome(identification, dict(sorted(matched.items())), short)

    def _rank_subset(
        self, matched: dict[int, MatchResult], index: GalleryIndex, top_k: int, method: str | None, exclude: set[str]
    ) -> Identification:
        """:meth:`rank` over the matched photos alone. The view keeps gallery order (ties between photos break as in
        exhaustive search) and shares the null models, so a photo gets exactly the score exhaustive matching gives."""
        chosen = sorted(matched)
        view = dataclasses.replace(
            index, photos=[index.photos[i] for i in chosen], features=features_at(index.features, chosen)
        )
        return self.rank([matched[i] for i in chosen], view, top_k, method, exclude)

    def search_photo(
        self,
        source: Path | bytes | np.ndarray,
        sha256: str,
        index: GalleryIndex,
        crop: tuple[float, float, float, float] | None = None,
        rotation: int = 0,
        top_k: int = 5,
        method: str | None = None,
        exclude: Iterable[str] = (),
        shortlist: ShortlistConf | bool | None = None,
        progress: Progress | None = None,
        zoom: ZoomConf | bool | None = True,
    ) -> SearchOutcome:
        """:meth:`search` for a photo: extract its views, search, and where the matches point to a small part of
        the photo, search again on that part cut at the photo's native resolution (core.engine.localise).

        ``zoom``: True follows the engine's :attr:`zoom`, False or None never zooms, a conf zooms by it. A
        volunteer's ``crop`` already says where the animal is (and a corrected region comes back as one), so
        a cropped photo is never zoomed. The zoomed outcome's match results carry their query keypoints in the
        as-given working frame, like an unzoomed one's; its ``views`` are the zoomed features actually matched.
        A zoomed pass less sure than the first (``ZoomConf.only_if_surer``) leaves the first answer standing, with
        the zoomed ranking in ``declined_zoom``.
        """
        views = self.query_views(source, sha256, crop, rotation)
        first = self.search(views, index, top_k, method, exclude, shortlist, progress)
        first.views = views
        conf = self.zoom if zoom is True else (zoom or None)
        if conf is None or crop is not None:
            return first
        frame = views[0].image_size
        region = locate([c.match for c in first.identification.candidates if c.match is not None], frame, conf)
        native = native_size(*_photo_size(source), crop, rotation)
        best = first.identification.best_probability
        if not worth_zooming(region, frame, native, self.extractor.max_side, best, conf):
            return first
        assert region is not None
        try:
            zoomed = self.query_views(source, sha256, region_to_crop(region, crop, rotation), rotation)
        except NoKeypointsError:  # a region too small or too plain to compare: the first answer stands
            return first
        outcome = self.search(zoomed, index, top_k, method, exclude, shortlist, progress)
        if conf.only_if_surer and outcome.identification.best_probability < best:
            first.declined_zoom = outcome.identification
            return first
        zoom_info = Zoom(region, frame, zoomed[0].image_size, first.identification)
        results = {i: zoom_info.to_frame(r) for i, r in outcome.results.items()}
        for candidate in outcome.identification.candidates:
            if candidate.match is not None:
                candidate.match = zoom_info.to_frame(candidate.match)
        return SearchOutcome(outcome.identification, results, outcome.shortlist, zoomed, zoom_info)


def _offset_progress(progress: Progress | None, before: int, planned: int) -> Progress | None:
    """A round's progress as pairs of the whole search: ``before`` pairs done earlier, ``planned`` so far."""
    if progress is None:
        return None
    return lambda done, _total: progress(before + done, planned)


def _photo_size(source: Path | bytes | np.ndarray) -> tuple[int, int]:
    """(W, H) of a photo at full resolution, EXIF orientation applied, read from its header."""
    if isinstance(source, np.ndarray):
        return int(source.shape[1]), int(source.shape[0])
    info = read_info(source)
    return info.width, info.height
