"""Identify: an upload, a search of the gallery with the evidence kept, and the sighting a volunteer sends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from core.engine.features import Features
from core.engine.images import PhotoInfo, load_image, prepare, resize_long_side
from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.matching import MatchResult
from core.engine.search import Candidate, Engine, Identification, Zoom
from core.engine.shortlist import ShortlistConf
from core.indexing.searchable import with_gallery_features
from core.indexing.subset import restricted
from core.io import sha256_hex
from core.progress import Progress, StageProgress
from core.review.sightings import CandidateInput, Submission, submit_sighting
from core.review.votes import GalleryHook
from core.service.app import App
from core.service.browse import IndividualRow, individual_rows
from core.service.evidence import Evidence, EvidenceCandidate, EvidencePhoto, PhotoMatch, keep
from core.store.gallery import resolve_merged
from core.store.models import SIDES, Individual, Photo, Sighting, User

#: Sides a volunteer can pick; "unknown" compares with every side.
SIDE_CHOICES: tuple[str, ...] = ("left", "right", "top", "other", "unknown")
SIDE_LABELS: dict[str, str] = {
    "left": "Left side of the head",
    "right": "Right side of the head",
    "top": "Top of the head",
    "other": "Other view",
    "unknown": "Not sure",
}
assert set(SIDE_CHOICES) == set(SIDES)

#: Largest preview kept in memory per upload (the engine re-reads the original bytes).
PREVIEW_SIDE = 1024


@dataclass
class Upload:
    """One photo a volunteer uploaded, kept in the session so that a failed step never loses it."""

    name: str
    data: bytes = field(repr=False)
    sha256: str
    info: PhotoInfo
    preview: np.ndarray = field(repr=False)  # EXIF-oriented RGB, long side at most PREVIEW_SIDE

    @property
    def taken_at_text(self) -> str:
        return self.info.taken_at.strftime("%d %b %Y, %H:%M") if self.info.taken_at else "no date in the photo"

    @property
    def place_text(self) -> str:
        if self.info.latitude is None or self.info.longitude is None:
            return "no location in the photo"
        return f"{self.info.latitude:.5f}, {self.info.longitude:.5f}"


def read_upload(name: str, data: bytes) -> Upload:
    """Check and decode an upload once; raises :class:`~core.errors.ImageError` with a readable reason."""
    image = load_image(data)
    preview, _ = resize_long_side(image.pixels, PREVIEW_SIDE)
    return Upload(name=name, data=data, sha256=sha256_hex(data), info=image.info, preview=np.ascontiguousarray(preview))


@dataclass
class SearchResult:
    """A ranked identification plus the matches behind it, for the overlay and the CDF.

    ``identification`` ranks every individual of the gallery (so any of them can be explained, e.g. a
    reviewer's frozen candidate that has dropped since); :attr:`candidates` are the ``top_k`` shown.
    ``results`` holds the LightGlue match of each gallery photo (by position in ``index.photos``) that
    was compared: all of them on a small gallery, the shortlisted best photos on a large one. Photos not
    compared yet are matched on demand by :meth:`photo_matches`, a few at a time.
    """

    identification: Identification
    results: dict[int, MatchResult]
    index: GalleryIndex
    views: list[Features]  # the query features matched, in each turn tried (core.engine.orientation); first: as given
    crop: tuple[float, float, float, float] | None
    rotation: int
    side: str
    query_sha: str
    engine: Engine = field(repr=False)
    top_k: int = 5
    shortlisted: bool = False
    zoom: Zoom | None = None  # where the engine zoomed to find the animal (core.engine.localise), if it did

    @property
    def query(self) -> Features:
        """The query's features as matched (zoomed to :attr:`used_region` when the engine zoomed)."""
        return self.views[0]

    @property
    def query_size(self) -> tuple[int, int]:
        """(W, H) of the query as given, at working size: the frame its matches and overlays are drawn in."""
        return self.zoom.frame_size if self.zoom else self.query.image_size

    @property
    def used_region(self) -> tuple[float, float, float, float] | None:
        """The part of the photo that was matched, normalised (x0, y0, x1, y1) in the query as given (after the
        volunteer's crop and rotation); None when the whole of it was."""
        return self.zoom.region if self.zoom else None

    @property
    def strong_confidence(self) -> float:
        """From which confidence one match counts as strong (the matcher's)."""
        return self.index.scoring.strong

    @property
    def null_confidences(self) -> np.ndarray:
        return self.identification.null_confidences

    @property
    def engine_version(self) -> str:
        return f"{self.engine.extractor.version}-{self.engine.matcher.version}"

    @property
    def method(self) -> str:
        return self.identification.method

    @property
    def candidates(self) -> list[Candidate]:
        return self.identification.candidates[: self.top_k]

    @property
    def new_individual_probability(self) -> float:
        return self.identification.new_individual_probability

    def candidate(self, identity: str) -> Candidate | None:
        return next((c for c in self.identification.candidates if c.identity == identity), None)

    def evidence(self) -> Evidence:
        """What the volunteer is shown of this search, ready to be stored with their sighting."""
        candidates = []
        for c in self.candidates:
            if c.match is None:
                continue
            position = next((i for i, p in enumerate(self.index.photos) if p.key == c.photo.key), None)
            size = self.index.features[position].image_size if position is not None else self.query_size
            mean, spread = self.null_stats(c.photo)
            photo = EvidencePhoto(c.photo.path, c.photo.crop, c.photo.rotation, c.photo.sha256, c.photo.photo_id)
            candidates.append(
                EvidenceCandidate(
                    c.identity,
                    c.name,
                    c.probability,
                    c.score,
                    c.matches,
                    c.strong_matches,
                    photo,
                    c.match,
                    size,
                    mean,
                    spread,
                    c.photo_z,
                )
            )
        return Evidence(
            self.method,
            self.strong_confidence,
            self.query_size,
            self.new_individual_probability,
            np.asarray(self.null_confidences, dtype=np.float32),
            candidates,
        )

    def photo_matches(self, identity: str, fill: int = 3) -> list[PhotoMatch]:
        """``identity``'s compared gallery photos with their matches, best first.

        An individual none of whose photos was compared (it missed the shortlist) gets up to ``fill`` of
        its photos matched now, so any individual can be explained.
        """
        engine = self.engine
        members = [
            i
            for i, photo in enumerate(self.index.photos)
            if photo.identity == identity and photo.sha256 != self.query_sha
        ]
        if members and not any(i in self.results for i in members):
            todo = members[:fill]
            for i, result in zip(
                todo, engine.match_views(self.views, [self.index.features[i] for i in todo]), strict=True
            ):
                self.results[i] = self.zoom.to_frame(result) if self.zoom else result
        null, _ = self.index.model(self.method)
        found = [
            PhotoMatch(
                self.index.photos[i],
                self.results[i],
                float(null.z(self.index.photos[i].key, null.score(self.results[i].confidence))),
                self.index.features[i].image_size,
            )
            for i in members
            if i in self.results
        ]
        return sorted(found, key=lambda m: (-m.z, m.photo.key))

    def null_stats(self, photo: GalleryPhoto) -> tuple[float, float]:
        """Mean and spread of the photo's score against other individuals (its own null, or the pooled one)."""
        null, _ = self.index.model(self.method)
        return null.reference(photo.key)


def search_index(
    engine: Engine,
    index: GalleryIndex,
    source: bytes | Path,
    sha256: str,
    *,
    crop: tuple[float, float, float, float] | None = None,
    rotation: int = 0,
    side: str = "unknown",
    top_k: int = 5,
    method: str | None = None,
    shortlist: ShortlistConf | bool | None = None,
    progress: StageProgress | None = None,
) -> SearchResult:
    """Extract the query's features (cached by content, crop and rotation), match and rank.

    The engine's shortlist (``core.engine.shortlist``, ``shortlist=None``: the device's preset) picks the photos
    worth matching. A photo that is already in the gallery is compared with the others, never with itself.
    ``progress`` hears "features" (0 of 1, then 1 of 1), then "matching" with pairs matched of pairs planned, and
    "widening" once no candidate is sure after the first round and the shortlist adds more pairs.
    """
    if progress:
        progress("features", 0, 1)
    engine.query_views(source, sha256, crop, rotation)  # cached: the search below reads them back
    if progress:
        progress("features", 1, 1)
    everyone = max(top_k, len(index.identities))
    outcome = engine.search_photo(
        source, sha256, index, crop, rotation, everyone, method, {sha256}, shortlist, matching_progress(progress)
    )
    return SearchResult(
        outcome.identification,
        outcome.results,
        index,
        outcome.views,
        crop,
        rotation,
        side,
        sha256,
        engine,
        top_k,
        shortlisted=outcome.shortlist is not None,
        zoom=outcome.zoom,
    )


def matching_progress(progress: StageProgress | None) -> Progress | None:
    """The engine's pairs as the "matching" stage, and as "widening" once the pairs planned grow beyond the first
    round's (core.engine.shortlist rounds): the bar then says why there is more to do instead of moving back."""
    if progress is None:
        return None
    first_round: list[int] = []

    def report(done: int, total: int) -> None:
        if not first_round:
            first_round.append(total)
        progress("widening" if total > first_round[0] else "matching", done, total)

    return report


def working_image(engine: Engine, source: bytes | Path | np.ndarray, crop: Any = None, rotation: int = 0) -> np.ndarray:
    """The photo exactly as the extractor saw it (cropped, turned, downscaled): keypoints live in this frame."""
    return prepare(source, crop=crop, rotation=rotation, max_side=engine.extractor.max_side)


def individual_id_for_photo(session: Session, photo_id: int) -> int | None:
    """The active individual a gallery photo counts for now (following merges)."""
    photo = session.get(Photo, photo_id)
    if photo is None or photo.individual_id is None:
        return None
    individual = session.get(Individual, photo.individual_id)
    if individual is None:
        return None
    return resolve_merged(session, individual).id


def candidate_inputs(session: Session, result: SearchResult) -> list[CandidateInput]:
    """The ranked candidates as the review workflow stores them (rank 1 is the best)."""
    inputs = []
    seen: set[int] = set()
    for candidate in result.candidates:
        individual_id = individual_id_for_photo(session, candidate.photo.photo_id) if candidate.photo.photo_id else None
        if individual_id is None or individual_id in seen:
            continue
        seen.add(individual_id)
        inputs.append(
            CandidateInput(
                individual_id=individual_id,
                rank=len(inputs) + 1,
                score=float(candidate.score) if np.isfinite(candidate.score) else 0.0,
                probability=float(min(max(candidate.probability, 0.0), 1.0)),
                n_matches=int(candidate.matches),
            )
        )
    return inputs


# --- what the Identify page calls ------------------------------------------------------------------


def find(
    app: App,
    source: bytes | Path,
    sha256: str,
    *,
    crop: tuple[float, float, float, float] | None,
    rotation: int,
    side: str,
    progress: StageProgress | None = None,
    individuals: set[int] | None = None,
) -> SearchResult:
    """Search the gallery (only among ``individuals`` when given: core.service.scope); ``progress`` hears
    "gallery" (only while its index is prepared), then as in :func:`search_index`."""
    engine = app.engine
    preparing: Progress | None = (lambda done, total: progress("gallery", done, total)) if progress else None
    index = app.indexes.get(engine, app.db, app.store, side, preparing)
    if individuals is not None:
        with app.session() as session:
            index = restricted(session, index, individuals)  # a view: the shared index stays whole
    return search_index(
        engine,
        index,
        source,
        sha256,
        crop=crop,
        rotation=rotation,
        side=side,
        top_k=app.settings.engine.top_k,
        progress=progress,
    )


def query_image(app: App, source: bytes | Path | np.ndarray, crop: Any = None, rotation: int = 0) -> np.ndarray:
    """The photo in the frame its keypoints live in, for the match overlay."""
    return working_image(app.engine, source, crop, rotation)


def last_side(app: App, user: User) -> str:
    """The side of the head the volunteer chose for their latest sighting: most send one side after another."""
    with app.session() as session:
        side = session.exec(
            select(Photo.side)
            .join(Sighting, col(Sighting.photo_id) == col(Photo.id))
            .where(Sighting.submitted_by == user.id)
            .order_by(col(Sighting.id).desc())
            .limit(1)
        ).first()
    return side if side in SIDE_CHOICES else "unknown"


def gallery_is_empty(app: App) -> bool:
    from core.service.dashboard import gallery_size

    with app.session() as session:
        return gallery_size(session) == 0


@dataclass(frozen=True)
class ProposalChoices:
    """What a volunteer can propose: the candidates as stored with the sighting, or any active individual."""

    candidates: list[CandidateInput]
    individuals: list[IndividualRow]


#: From which probability a candidate (or "new individual") counts as convincing: the banner says "Most likely
#: T-0042" or "Probably a new individual" from here on, and the proposal defaults to it.
CONVINCING = 0.5


def suggested_proposal(
    candidates: Sequence[CandidateInput], new_individual_probability: float | None
) -> tuple[str, int | None]:
    """What the proposal form pre-selects: whatever the evidence supports, else "unsure".

    The default is what one careless click sends, so it is never a "same as" the evidence does not back:
    the best candidate only when it is convincing, "new" when a new individual is, and "unsure" otherwise.
    Without a search (an empty gallery) a first sighting can only be new.
    """
    best = max(candidates, key=lambda c: c.probability, default=None)
    if best is not None and best.probability >= CONVINCING:
        return ("same", best.individual_id)
    if new_individual_probability is None and not candidates:
        return ("new", None)
    if new_individual_probability is not None and new_individual_probability >= CONVINCING:
        return ("new", None)
    return ("unsure", None)


def needs_confirmation(
    candidates: Sequence[CandidateInput],
    new_individual_probability: float | None,
    proposal: str,
    individual_id: int | None,
) -> str | None:
    """Why a "same as" goes against the evidence (asked to confirm before it is sent), or None when it does not.

    "Same as X" is against the evidence when Scute gives X less than :data:`CONVINCING`: X is not among the
    candidates, or a new individual or another candidate is the likelier answer, or nothing is convincing.
    """
    if proposal != "same" or (new_individual_probability is None and not candidates):
        return None  # "new", "unsure", or nothing was searched: nothing to go against
    probability = next((c.probability for c in candidates if c.individual_id == individual_id), None)
    if probability is not None and probability >= CONVINCING:
        return None
    if new_individual_probability is not None and new_individual_probability >= CONVINCING:
        return f"Scute thinks this is probably a new individual ({new_individual_probability:.0%})"
    if probability is None:
        return "Scute did not rank this individual among its candidates"
    best = max(candidates, key=lambda c: c.probability)
    if best.individual_id != individual_id and best.probability > probability:
        return f"Scute gives this individual only {probability:.0%}, less than its best candidate"
    return f"Scute gives this individual only {probability:.0%}: the matches are not convincing"


def proposal_choices(app: App, result: SearchResult | None) -> ProposalChoices:
    with app.session() as session:
        candidates = candidate_inputs(session, result) if result is not None else []
        individuals = [row for row in individual_rows(session) if row.status == "active"]
    return ProposalChoices(candidates, individuals)


def send(
    app: App,
    user: User,
    upload: Upload,
    result: SearchResult | None,
    *,
    proposal: str | None,
    individual_id: int | None = None,
    comment: str = "",
    notes: str = "",
    side: str = "unknown",
    crop: tuple[float, float, float, float] | None = None,
    rotation: int = 0,
    taken_at: datetime | None = None,
) -> Submission:
    """Store the upload as a pending sighting with the candidates shown; the proposal is the first vote."""
    new_probability = result.identification.new_individual_probability if result is not None else None

    def work(session: Session, hook: GalleryHook) -> Submission:
        submission = submit_sighting(
            session,
            app.store,
            user,
            upload.data,
            candidates=candidate_inputs(session, result) if result is not None else [],
            new_individual_probability=None if new_probability is None else min(max(new_probability, 0.0), 1.0),
            proposal=proposal,
            proposed_individual_id=individual_id if proposal == "same" else None,
            comment=comment,
            side=side,
            crop=crop,
            rotation=rotation,
            taken_at=taken_at,
            notes=notes,
            original_name=Path(upload.name).name[:200],
            config=app.settings.review,
            on_gallery_change=hook,
        )
        if result is not None and submission.created and submission.sighting.id is not None:
            keep(session, submission.sighting.id, result.evidence(), result.engine_version)
        return submission

    # A proposal that decides at once (one required vote) adds the photo: its features come first (core.indexing).
    return with_gallery_features(app.db, app.store, app.engine, work)
