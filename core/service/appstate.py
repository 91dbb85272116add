"""What the web app needs beyond the engine and the review rules, kept out of the pages so it is testable.

The Streamlit pages only read widgets and render; everything they compute goes through here: engine
settings from the environment, the gallery index cache that follows the gallery's fingerprint, one
search with every gallery photo's match kept (so a reviewer can switch between a candidate's photos
without matching again), submitting a sighting with the candidates the volunteer saw, and the
read-only summaries the dashboard, gallery and curation pages show. Nothing here imports Streamlit.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import zipfile
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, col, func, select

from core.catalogue.importer import ImportReport, RowProblem, import_rows
from core.engine.features import DEFAULT_EXTRACTOR, EXTRACTORS, Features, pick_device
from core.engine.images import PhotoInfo, load_image, prepare, resize_long_side
from core.engine.matching import MatchResult
from core.engine.orientation import default_turns
from core.engine.scoring import ScoringConf
from core.engine.search import Candidate, Engine, GalleryIndex, GalleryPhoto, Identification
from core.engine.shortlist import ShortlistConf
from core.engine.shortlist import identify as shortlist_identify
from core.engine.shortlist import resolve as resolve_shortlist
from core.errors import ManifestError, ScuteError
from core.evaluation.protocol import EvaluationReport, ManifestRow, QueryOutcome, read_manifest
from core.review.sightings import (
    CandidateInput,
    GalleryHook,
    ReviewConfig,
    Submission,
    count_sightings,
    review_queue,
    submit_sighting,
)
from core.store.audit import entries_for_individual
from core.store.db import session_scope
from core.store.gallery import gallery_entries, gallery_fingerprint, record_features, resolve_merged
from core.store.models import SIDES, AuditLog, Individual, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore, sha256_hex

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

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


# --- engine settings -------------------------------------------------------------------------------


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ScuteError(f"{name} must be a whole number, not {raw!r}.") from None
    if value <= 0:
        raise ScuteError(f"{name} must be positive, not {value}.")
    return value


@dataclass(frozen=True)
class EngineSettings:
    """The app's engine configuration; import, search and evaluation in one deployment must agree.

    Read from ``SCUTE_EXTRACTOR``, ``SCUTE_MAX_SIDE``, ``SCUTE_KEYPOINTS``, ``SCUTE_DEVICE``,
    ``SCUTE_SCORING`` and ``SCUTE_TOP_K``; unset means the engine's defaults, so tests can run the
    app with small settings (512 px, 512 keypoints) on two CPU cores.
    """

    extractor: str = DEFAULT_EXTRACTOR
    max_side: int | None = None
    keypoints: int | None = None
    device: str = "auto"
    scoring: str = ScoringConf.method
    top_k: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if environ is None else environ
        extractor = env.get("SCUTE_EXTRACTOR", "").strip() or DEFAULT_EXTRACTOR
        if extractor not in EXTRACTORS:
            raise ScuteError(f"SCUTE_EXTRACTOR must be one of {', '.join(sorted(EXTRACTORS))}, not {extractor!r}.")
        scoring = env.get("SCUTE_SCORING", "").strip() or ScoringConf.method
        from core.engine.scoring import PAIR_SCORES

        if scoring not in PAIR_SCORES:
            raise ScuteError(f"SCUTE_SCORING must be one of {', '.join(sorted(PAIR_SCORES))}, not {scoring!r}.")
        return cls(
            extractor=extractor,
            max_side=_env_int(env, "SCUTE_MAX_SIDE"),
            keypoints=_env_int(env, "SCUTE_KEYPOINTS"),
            device=env.get("SCUTE_DEVICE", "").strip() or "auto",
            scoring=scoring,
            top_k=_env_int(env, "SCUTE_TOP_K") or 5,
        )

    def describe(self) -> str:
        """One line for the footer and the evaluation report: which engine answered."""
        device = pick_device(self.device)
        defaults = EXTRACTORS[self.extractor].defaults_for(device)
        side = self.max_side or defaults.get("max_side")
        keypoints = self.keypoints or defaults.get("max_keypoints")
        turns = default_turns(device)
        tried = f", queries tried in {len(turns)} turns" if len(turns) > 1 else ""
        engine = f"{self.extractor}, {side} px, {keypoints} keypoints, {self.scoring} scoring{tried}"
        return f"{engine}, device {self.device}"

    def extractor_conf(self) -> dict[str, Any] | None:
        conf: dict[str, Any] = {}
        if self.max_side:
            conf["max_side"] = self.max_side
        if self.keypoints:
            conf["max_keypoints"] = self.keypoints
        return conf or None

    def make_engine(self, cache_dir: Path | None = None) -> Engine:
        """Load the models (a second or two); the app keeps one per process."""
        return Engine(
            self.extractor,
            self.extractor_conf(),
            scoring=ScoringConf(method=self.scoring),
            device=self.device,
            cache_dir=cache_dir,
        )


# --- the gallery as the engine sees it -------------------------------------------------------------


def gallery_photos(session: Session, store: PhotoStore, side: str | None = None) -> list[GalleryPhoto]:
    """The searchable photos for a query of ``side`` (None or "unknown": all sides)."""
    return [
        GalleryPhoto(e.sha256, e.individual_code, e.path, e.crop, e.rotation, e.photo_id, e.individual_name)
        for e in gallery_entries(session, store, side)
    ]


class IndexCache:
    """Gallery indexes per (gallery fingerprint, side), rebuilt when the gallery changes.

    One instance per engine per process (the app keeps it with ``st.cache_resource``). The fingerprint
    is read from the database on every request, so a change made by another process (an import from
    the command line, a decision in another browser) is seen on the next search. Building runs under a
    lock: two volunteers searching at once wait for one build instead of doing it twice.
    """

    def __init__(self, max_entries: int = 6) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], GalleryIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        engine: Engine,
        db: SqlEngine,
        store: PhotoStore,
        side: str | None = None,
        progress: Progress | None = None,
    ) -> GalleryIndex:
        """The index for ``side``; raises :class:`~core.errors.EmptyGalleryError` for an empty gallery."""
        side_key = side if side in SIDES and side != "unknown" else "all"
        with session_scope(db) as session:
            fingerprint = gallery_fingerprint(session)
            key = (fingerprint, side_key)
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None:
                    self._entries.move_to_end(key)
                    return cached
            photos = gallery_photos(session, store, None if side_key == "all" else side_key)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                return cached
            index = engine.build_index(photos, progress)
            for stale in [k for k in self._entries if k[0] != fingerprint]:
                del self._entries[stale]  # the gallery changed: those indexes can never be asked for again
            self._entries[key] = index
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            log.info("Gallery index built: %d photos, side %s", len(index.photos), side_key)
            return index


# --- uploads and searching -------------------------------------------------------------------------


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
class PhotoMatch:
    """One gallery photo's match with the query, scored against that photo's own null."""

    photo: GalleryPhoto
    match: MatchResult
    z: float
    image_size: tuple[int, int]  # (W, H) of the working image the gallery keypoints live in


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
    views: list[Features]  # the query in each turn the engine tried (core.orientation); first: as given
    crop: tuple[float, float, float, float] | None
    rotation: int
    side: str
    query_sha: str
    top_k: int = 5
    shortlisted: bool = False

    @property
    def query(self) -> Features:
        """The query's features as given: the frame its matches and overlays are drawn in."""
        return self.views[0]

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

    def photo_matches(self, identity: str, engine: Engine | None = None, fill: int = 3) -> list[PhotoMatch]:
        """``identity``'s compared gallery photos with their matches, best first.

        With ``engine``, an individual none of whose photos was compared (it missed the shortlist) gets
        up to ``fill`` of its photos matched now, so any individual can be explained.
        """
        members = [
            i
            for i, photo in enumerate(self.index.photos)
            if photo.identity == identity and photo.sha256 != self.query_sha
        ]
        if engine is not None and members and not any(i in self.results for i in members):
            todo = members[:fill]
            for i, result in zip(
                todo, engine.match_views(self.views, [self.index.features[i] for i in todo]), strict=True
            ):
                self.results[i] = result
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


def search(
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
) -> SearchResult:
    """Extract the query's features (cached by content, crop and rotation), match and rank.

    Small galleries are matched exhaustively; large ones go through the engine's shortlist
    (``core.engine.shortlist``, ``shortlist=None`` decides by gallery size). A photo that is already in the
    gallery is compared with the others, never with itself.
    """
    views = engine.query_views(source, sha256, crop, rotation)
    everyone = max(top_k, len(index.identities))
    conf = resolve_shortlist(shortlist, len(index.photos), engine.device)
    if conf is None:
        matched = engine.match_gallery(views, index)
        identification = engine.rank(matched, index, top_k=everyone, method=method, exclude={sha256})
        results = dict(enumerate(matched))
    else:
        identification, _ = shortlist_identify(engine, views, index, conf, everyone, method, {sha256})
        position = {photo.key: i for i, photo in enumerate(index.photos)}
        results = {position[c.photo.key]: c.match for c in identification.candidates if c.match is not None}
    return SearchResult(
        identification, results, index, views, crop, rotation, side, sha256, top_k, shortlisted=conf is not None
    )


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


def feature_hook(session: Session, store: PhotoStore, engine: Engine) -> GalleryHook:
    """Cache the features of a photo that has just joined the gallery, so the next search is quick."""

    def hook(photo: Photo) -> None:
        features = engine.features(store.path(photo.path), photo.sha256, photo.crop, photo.rotation)
        from core.engine.features import photo_key

        key = photo_key(photo.sha256, photo.crop, photo.rotation)
        relpath = engine.feature_cache.path(features.version, key).relative_to(engine.feature_cache.root)
        record_features(session, photo.id, engine.extractor.name, engine.extractor.version, str(relpath), len(features))  # type: ignore[arg-type]

    return hook


def submit(
    session: Session,
    store: PhotoStore,
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
    config: ReviewConfig | None = None,
    engine: Engine | None = None,
) -> Submission:
    """Store the upload as a pending sighting with the candidates shown; the proposal is the first vote."""
    candidates = candidate_inputs(session, result) if result is not None else []
    new_probability = result.identification.new_individual_probability if result is not None else None
    return submit_sighting(
        session,
        store,
        user,
        upload.data,
        candidates=candidates,
        new_individual_probability=None if new_probability is None else float(min(max(new_probability, 0.0), 1.0)),
        proposal=proposal,
        proposed_individual_id=individual_id if proposal == "same" else None,
        comment=comment,
        side=side,
        crop=crop,
        rotation=rotation,
        taken_at=taken_at,
        notes=notes,
        original_name=Path(upload.name).name[:200],
        config=config,
        on_gallery_change=feature_hook(session, store, engine) if engine is not None else None,
    )


# --- dashboard -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    individuals: int
    gallery_photos: int
    pending: int
    conflict: int
    decided: int
    waiting_for_me: int
    my_sightings: int


def dashboard(session: Session, user: User) -> Dashboard:
    """The counts on the home page."""
    individuals = session.exec(select(func.count()).select_from(Individual).where(Individual.status == "active")).one()
    counts = count_sightings(session)
    mine = session.exec(select(func.count()).select_from(Sighting).where(Sighting.submitted_by == user.id)).one()
    return Dashboard(
        individuals=int(individuals),
        gallery_photos=gallery_size(session),
        pending=counts["pending"],
        conflict=counts["conflict"],
        decided=counts["decided"],
        waiting_for_me=len(review_queue(session, user, limit=None)),
        my_sightings=int(mine),
    )


def gallery_size(session: Session) -> int:
    """Photos the search compares with: in the gallery, of an active individual (merges followed)."""
    individuals = {ind.id: ind for ind in session.exec(select(Individual)).all()}
    rows = session.exec(
        select(Photo.individual_id, func.count())
        .where(col(Photo.in_gallery).is_(True), col(Photo.individual_id).is_not(None))
        .group_by(Photo.individual_id)
    ).all()
    total = 0
    for individual_id, n in rows:
        individual = individuals.get(individual_id)
        if individual is not None and resolve_merged(session, individual).status == "active":
            total += int(n)
    return total


@dataclass(frozen=True)
class SightingRow:
    id: int
    created_at: datetime
    status: str
    decision: str | None
    code: str | None
    submitted_by: str
    votes: int
    photo_id: int


def sighting_rows(
    session: Session, *, submitted_by: int | None = None, status: str | None = None, limit: int = 50
) -> list[SightingRow]:
    """Sightings newest first, with the decided individual's code and the number of votes."""
    query = select(Sighting).order_by(col(Sighting.created_at).desc(), col(Sighting.id).desc()).limit(limit)
    if submitted_by is not None:
        query = query.where(Sighting.submitted_by == submitted_by)
    if status is not None:
        query = query.where(Sighting.status == status)
    sightings = session.exec(query).all()
    users = usernames(session)
    votes = dict(
        session.exec(
            select(Vote.sighting_id, func.count())
            .where(col(Vote.sighting_id).in_([s.id for s in sightings]))
            .group_by(Vote.sighting_id)
        ).all()
    )
    rows = []
    for s in sightings:
        code = None
        if s.decided_individual_id is not None:
            individual = session.get(Individual, s.decided_individual_id)
            code = individual.code if individual is not None else None
        rows.append(
            SightingRow(
                id=s.id,  # type: ignore[arg-type]
                created_at=s.created_at,
                status=s.status,
                decision=s.decision,
                code=code,
                submitted_by=users.get(s.submitted_by, "?"),
                votes=int(votes.get(s.id, 0)),
                photo_id=s.photo_id,
            )
        )
    return rows


def usernames(session: Session) -> dict[int, str]:
    return {u.id: u.username for u in session.exec(select(User)).all() if u.id is not None}


def individual_codes(session: Session) -> dict[int, str]:
    return {i.id: i.code for i in session.exec(select(Individual)).all() if i.id is not None}


# --- gallery browsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndividualRow:
    id: int
    code: str
    name: str | None
    species: str
    status: str
    photos: int
    last_seen: datetime | None
    merged_into: str | None

    @property
    def label(self) -> str:
        return f"{self.code} · {self.name}" if self.name else self.code


def _photo_date(photo: Photo) -> datetime:
    return photo.taken_at or photo.created_at


def individual_rows(session: Session, *, include_merged: bool = False) -> list[IndividualRow]:
    """Every individual with its photo count and the date it was last seen (photo date, else upload date)."""
    individuals = session.exec(select(Individual).order_by(col(Individual.code))).all()
    by_id = {i.id: i for i in individuals}
    counts: dict[int, int] = defaultdict(int)
    last: dict[int, datetime] = {}
    for photo in session.exec(select(Photo).where(col(Photo.individual_id).is_not(None))).all():
        if not photo.in_gallery:
            continue
        individual_id = photo.individual_id
        counts[individual_id] += 1  # type: ignore[index]
        seen = _photo_date(photo)
        if individual_id not in last or seen > last[individual_id]:  # type: ignore[operator]
            last[individual_id] = seen  # type: ignore[index]
    rows = []
    for ind in individuals:
        if ind.status == "merged" and not include_merged:
            continue
        target = by_id.get(ind.merged_into_id) if ind.merged_into_id else None
        rows.append(
            IndividualRow(
                id=ind.id,  # type: ignore[arg-type]
                code=ind.code,
                name=ind.name,
                species=ind.species or "",
                status=ind.status,
                photos=counts.get(ind.id, 0),  # type: ignore[arg-type]
                last_seen=last.get(ind.id),  # type: ignore[arg-type]
                merged_into=target.code if target is not None else None,
            )
        )
    return rows


def filter_individuals(
    rows: Iterable[IndividualRow],
    text: str = "",
    *,
    species: Sequence[str] = (),
    statuses: Sequence[str] = (),
    seen_since: datetime | None = None,
) -> list[IndividualRow]:
    """Case-insensitive search in code and name, plus species, status and last-seen filters."""
    needle = text.strip().lower()
    out = []
    for row in rows:
        if needle and needle not in row.code.lower() and needle not in (row.name or "").lower():
            continue
        if species and row.species not in species:
            continue
        if statuses and row.status not in statuses:
            continue
        if seen_since is not None:
            if row.last_seen is None:
                continue
            since = seen_since if seen_since.tzinfo else seen_since.replace(tzinfo=UTC)
            if row.last_seen < since:
                continue
        out.append(row)
    return out


@dataclass(frozen=True)
class Encounter:
    """One photo of an individual as an entry of its history."""

    photo_id: int
    when: datetime
    dated_by: str  # "photo" (EXIF date) or "upload"
    side: str
    latitude: float | None
    longitude: float | None
    source: str  # "imported" or "sighting #12 by alice"
    in_gallery: bool


def encounters(session: Session, individual_id: int) -> list[Encounter]:
    """The individual's photos in time order, each with where it came from, for the timeline and the map."""
    photos = session.exec(select(Photo).where(Photo.individual_id == individual_id).order_by(col(Photo.id))).all()
    sightings = {
        s.photo_id: s
        for s in session.exec(select(Sighting).where(col(Sighting.photo_id).in_([p.id for p in photos]))).all()
    }
    users = usernames(session)
    out = []
    for photo in photos:
        sighting = sightings.get(photo.id)  # type: ignore[arg-type]
        latitude = photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None)
        longitude = photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None)
        taken = photo.taken_at or (sighting.taken_at if sighting else None)
        out.append(
            Encounter(
                photo_id=photo.id,  # type: ignore[arg-type]
                when=taken or photo.created_at,
                dated_by="photo" if taken else "upload",
                side=photo.side,
                latitude=latitude,
                longitude=longitude,
                source=_source(sighting, users),
                in_gallery=photo.in_gallery,
            )
        )
    return sorted(out, key=lambda e: (e.when, e.photo_id))


def _source(sighting: Sighting | None, users: Mapping[int, str]) -> str:
    if sighting is None:
        return "imported"
    return f"sighting #{sighting.id} by {users.get(sighting.submitted_by, '?')}"


def photos_of(session: Session, individual_id: int, *, in_gallery_only: bool = False) -> list[Photo]:
    query = select(Photo).where(Photo.individual_id == individual_id).order_by(col(Photo.side), col(Photo.id))
    if in_gallery_only:
        query = query.where(col(Photo.in_gallery).is_(True))
    return list(session.exec(query).all())


# --- audit -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    id: int
    when: datetime
    user: str
    action: str
    target: str
    summary: str
    undoable: bool
    undone_by: int | None


def _summary(entry: AuditLog, codes: Mapping[int, str]) -> str:
    payload = entry.payload or {}
    before, after = payload.get("before"), payload.get("after")
    action = entry.action
    if action == "individual.merge":
        moved = len(payload.get("photo_ids", []))
        return f"merged {payload.get('source_code')} into {payload.get('target_code')} ({moved} photos)"
    if action == "individual.split":
        return f"split {len(payload.get('photo_ids', []))} photos into {payload.get('target_code')}"
    if action == "photo.move" and isinstance(before, dict) and isinstance(after, dict):
        origin, destination = codes.get(before.get("individual_id"), "—"), codes.get(after.get("individual_id"), "—")
        return f"moved from {origin} to {destination}"
    if action == "sighting.decide":
        return f"decided {payload.get('decision')} → {payload.get('code')} ({payload.get('how')})"
    if action == "sighting.vote" and isinstance(after, dict):
        who = codes.get(after.get("individual_id")) if after.get("individual_id") else ""
        return f"voted {after.get('decision')} {who}".strip()
    if isinstance(before, dict) and isinstance(after, dict):
        changed = [f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in after if before.get(k) != after.get(k)]
        return "; ".join(changed)[:200]
    if isinstance(after, dict):
        return ", ".join(f"{k}: {v}" for k, v in after.items() if k != "candidates")[:200]
    return ""


def _target_label(entry: AuditLog, codes: Mapping[int, str]) -> str:
    if entry.target_type == "individual" and entry.target_id is not None:
        return f"individual {codes.get(entry.target_id, entry.target_id)}"
    return f"{entry.target_type} {entry.target_id}"


def audit_rows(
    session: Session, *, individual_id: int | None = None, user_id: int | None = None, limit: int = 100
) -> list[AuditRow]:
    """Newest first, with who did it, a one-line summary, and whether it can still be undone."""
    from core.review.curation import UNDOABLE

    if individual_id is not None:
        entries = list(entries_for_individual(session, individual_id, newest_first=True, limit=limit))
    else:
        query = select(AuditLog).order_by(col(AuditLog.created_at).desc(), col(AuditLog.id).desc()).limit(limit)
        if user_id is not None:
            query = query.where(AuditLog.user_id == user_id)
        entries = list(session.exec(query).all())
    ids = [e.id for e in entries]
    undone = dict(session.exec(select(AuditLog.reverts_id, AuditLog.id).where(col(AuditLog.reverts_id).in_(ids))).all())
    users = usernames(session)
    codes = individual_codes(session)
    return [
        AuditRow(
            id=e.id,  # type: ignore[arg-type]
            when=e.created_at,
            user=users.get(e.user_id, "system") if e.user_id is not None else "system",
            action=e.action,
            target=_target_label(e, codes),
            summary=_summary(e, codes),
            undoable=e.action in UNDOABLE and e.id not in undone,
            undone_by=undone.get(e.id),
        )
        for e in entries
    ]


# --- catalogue import from the browser -------------------------------------------------------------


def import_uploaded_catalogue(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    manifest: bytes,
    photos: Mapping[str, bytes],
    workdir: Path,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a CSV manifest whose photos were uploaded alongside it (matched by file name).

    Uploaded names are reduced to their last component before touching the disk, so a crafted name
    cannot write outside ``workdir``. Rows whose photo was not uploaded are reported and skipped.
    """
    manifest_path = workdir / "manifest.csv"
    manifest_path.write_bytes(manifest)
    rows = read_manifest(manifest_path)
    if not rows:
        raise ManifestError("The manifest has no rows.")
    folder = workdir / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    stored: dict[str, str] = {}
    for i, (name, data) in enumerate(photos.items()):
        base = Path(name.replace("\\", "/")).name
        if not base or base in (".", ".."):
            continue
        safe = f"{i:05d}{Path(base).suffix.lower()[:8]}"
        (folder / safe).write_bytes(data)
        stored[base] = safe
    mapped: list[ManifestRow] = []
    missing: list[RowProblem] = []
    for line, row in enumerate(rows, start=2):
        base = Path(row.path.replace("\\", "/")).name
        if base in stored:
            mapped.append(ManifestRow(stored[base], row.identity, row.side))
        else:
            missing.append(RowProblem(line, row.path, "the photo was not among the uploaded files"))
    report = import_rows(db, store, engine, mapped, folder, progress)
    report.problems.extend(missing)
    return report


def import_server_manifest(
    db: SqlEngine, store: PhotoStore, engine: Engine, manifest: Path, progress: Progress | None = None
) -> ImportReport:
    """Import a catalogue that already lies on the server (paths relative to the manifest's folder)."""
    rows = read_manifest(manifest)
    return import_rows(db, store, engine, rows, manifest.parent, progress)


# --- evaluation ------------------------------------------------------------------------------------


def gallery_manifest(session: Session, store: PhotoStore, identities: Sequence[str] = ()) -> list[ManifestRow]:
    """The current gallery as manifest rows (absolute paths), optionally only some identities."""
    keep = set(identities)
    return [
        ManifestRow(str(e.path), e.individual_code, e.side)
        for e in gallery_entries(session, store, None)
        if not keep or e.individual_code in keep
    ]


def gallery_photo_labels(session: Session, store: PhotoStore) -> dict[str, str]:
    """``"photo 12 (T-0042)"`` by stored path: stored files are named by hash, which means nothing to people."""
    return {str(e.path): f"photo {e.photo_id} ({e.individual_code})" for e in gallery_entries(session, store, None)}


def pair_scores(index: GalleryIndex, method: str) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the gallery's sampled same-individual and different-individual pairs."""
    null, _ = index.model(method)
    same = [null.z(k, null.score(c)) for k, arrays in index.positives.items() for c in arrays]
    different = [null.z(k, null.score(c)) for k, arrays in index.negatives.items() for c in arrays]
    return np.asarray(same, dtype=np.float64), np.asarray(different, dtype=np.float64)


def slowest_queries(report: EvaluationReport, n: int = 5) -> list[QueryOutcome]:
    return sorted(report.queries_detail, key=lambda q: -q.seconds)[:n]


def wrongest_queries(report: EvaluationReport, n: int = 5) -> list[QueryOutcome]:
    """Known queries whose individual ranked lowest, then novel queries given the highest confidence."""

    def badness(q: QueryOutcome) -> tuple[int, float]:
        if q.novel:
            return (0, q.best_probability)
        rank = q.ranking.index(q.identity) if q.identity in q.ranking else len(q.ranking) + 1
        return (rank, 1.0 - q.best_probability) if rank > 0 else (0, -1.0)

    wrong = [
        q
        for q in report.queries_detail
        if (q.novel and q.new_individual_probability < 0.5)
        or (not q.novel and (not q.ranking or q.ranking[0] != q.identity))
    ]
    return sorted(wrong, key=badness, reverse=True)[:n]


def report_csv(report: EvaluationReport) -> bytes:
    """Every query of an evaluation as CSV, for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "identity", "novel", "top5", "best_probability", "new_individual_probability", "seconds"])
    for q in report.queries_detail:
        writer.writerow(
            [
                q.path,
                q.identity,
                q.novel,
                " ".join(q.ranking),
                f"{q.best_probability:.4f}",
                f"{q.new_individual_probability:.4f}",
                f"{q.seconds:.3f}",
            ]
        )
    return buffer.getvalue().encode()


# --- export for downloads --------------------------------------------------------------------------


def export_tables_zip(db: SqlEngine, store: PhotoStore, workdir: Path) -> tuple[bytes, str]:
    """Every CSV table of :func:`core.catalogue.exchange.export_catalogue` in one ZIP, and the export's summary."""
    from core.catalogue.exchange import export_catalogue

    report = export_catalogue(db, store, workdir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(report.files):
            if path.suffix == ".csv":
                bundle.write(path, arcname=path.name)
    return buffer.getvalue(), report.summary()


def export_photos_zip(db: SqlEngine, store: PhotoStore, workdir: Path, code: str | None = None) -> bytes:
    """The catalogue with its photos as an importable ZIP: all of it, or one individual's (``code``)."""
    from core.catalogue.exchange import CATALOGUE_ZIP, export_catalogue, write_individual_zip

    if code is not None:
        dest = workdir / "individual.zip"
        write_individual_zip(db, store, code, dest)
        return dest.read_bytes()
    export_catalogue(db, store, workdir, photos=True)
    return (workdir / CATALOGUE_ZIP).read_bytes()
