"""Sightings, votes and consensus; applying a decision to the gallery exactly once.

A submitted photo becomes a *sighting* (status ``pending``) together with the ranked candidates and
the new-individual probability the submitter saw, frozen so a reviewer sees the same list after the
gallery has changed. Users vote "same as X", "new" or "unsure"; the submitter's own proposal is their
vote and so counts once. :class:`ReviewConfig` says how many concordant votes decide and how much
dissent is tolerated before the sighting goes to an admin (``conflict``). Only a decision changes the
gallery: "same" puts the photo into X's gallery, "new" creates the next code of the configured
pattern (``T-0043``) with the photo as its first.

Concurrency: every writing function first calls :func:`lock_for_write`, which takes the database's
write lock at the start of the transaction (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock),
so reads that follow see the latest state and no two writers interleave, and then locks the sighting
row (``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL, see :data:`ROW_LOCK`). Under the lock the status
is checked again, so two people voting at the same moment in two processes store both votes and apply
the decision once. The ``on_gallery_change`` hook runs inside that transaction, so it should be quick
(one photo's features). New codes are allocated inside that serialised transaction, with a retry on
the unique code.

This module knows nothing about image matching: the caller computes the candidates and passes them as
:class:`CandidateInput`, and may pass ``on_gallery_change`` to cache features of a newly accepted photo.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from core.engine.images import load_image
from core.io import sha256_hex
from core.review.individuals import get_individual
from core.review.rules import MAX_NOTES_LENGTH, AlreadyInGallery, ReviewConfig, ReviewError
from core.review.users import acting_user
from core.review.votes import (
    GalleryHook,
    Tally,
    VoteOutcome,
    add_vote,
    check_vote,
    locked_sighting,
    outcome_of,
    settle,
    tally,
    vote_locked,
)
from core.safe_text import check_text
from core.store.audit import lock_for_write, record
from core.store.fieldwork import Encounter
from core.store.gallery import add_photo
from core.store.models import (
    SIDES,
    Candidate,
    Crop,
    Individual,
    Photo,
    Sighting,
    User,
    Vote,
)
from core.store.photos import SUFFIX_FOR_FORMAT, PhotoStore

log = logging.getLogger(__name__)

__all__ = [
    "CandidateInput",
    "SightingDetail",
    "Submission",
    "count_sightings",
    "list_sightings",
    "review_queue",
    "sighting_detail",
    "submit_sighting",
]


@dataclass(frozen=True)
class CandidateInput:
    """One ranked candidate as computed by the engine (rank 1 is the best)."""

    individual_id: int
    rank: int
    score: float
    probability: float | None = None
    n_matches: int = 0


@dataclass(frozen=True)
class Submission:
    """A submitted sighting; ``created`` False means the same photo was submitted before and is linked."""

    sighting: Sighting
    photo: Photo
    created: bool
    outcome: VoteOutcome | None


@dataclass(frozen=True)
class SightingDetail:
    """Everything a reviewer looks at: the sighting, its photo, frozen candidates and the votes so far."""

    sighting: Sighting
    photo: Photo
    candidates: list[Candidate]
    votes: list[Vote]
    tally: Tally


def _check_probability(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be between 0 and 1, got {value!r}")
    return value


def _check_candidates(session: Session, candidates: Sequence[CandidateInput]) -> list[CandidateInput]:
    ranks = [c.rank for c in candidates]
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"candidate ranks must be distinct, got {ranks}")
    for candidate in candidates:
        if isinstance(candidate.rank, bool) or not isinstance(candidate.rank, int) or candidate.rank < 1:
            raise ValueError(f"candidate rank must be an integer >= 1, got {candidate.rank!r}")
        if not math.isfinite(float(candidate.score)):
            raise ValueError(f"candidate score must be finite, got {candidate.score!r}")
        _check_probability(candidate.probability, "candidate probability")
        if int(candidate.n_matches) < 0:
            raise ValueError(f"n_matches must be >= 0, got {candidate.n_matches!r}")
        if session.get(Individual, candidate.individual_id) is None:
            raise ReviewError(f"Candidate individual id {candidate.individual_id} does not exist.")
    return sorted(candidates, key=lambda c: c.rank)


def submit_sighting(
    session: Session,
    store: PhotoStore,
    user: User,
    data: bytes,
    *,
    candidates: Sequence[CandidateInput],
    new_individual_probability: float | None,
    proposal: str | None = None,
    proposed_individual_id: int | None = None,
    comment: str = "",
    side: str = "unknown",
    crop: Crop | None = None,
    rotation: int = 0,
    taken_at: datetime | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    notes: str = "",
    original_name: str = "",
    encounter_id: int | None = None,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> Submission:
    """Store a photo as a pending sighting with its candidates; the proposal (if any) is the submitter's vote.

    Date and place default to the photo's EXIF. The same photo (same SHA-256) submitted again returns the
    existing sighting with ``created`` False; a different user's proposal then counts as their vote, while
    the same user's is ignored. A photo that already is a gallery photo raises :class:`AlreadyInGallery`.
    With ``required_votes=1`` the proposal alone decides, and the photo joins the gallery at once.
    Without ``encounter_id`` the photo becomes a one-photo encounter of its own.
    """
    config = config or ReviewConfig()
    # Decode fully, not just the header: a photo whose body is truncated or corrupt would otherwise be
    # stored, join the gallery on a decision, and then fail every later search that loads it. Done before
    # taking the write lock, so a large photo does not hold up other writers.
    info = load_image(data).info  # ImageError for anything that is not a photo we accept
    lock_for_write(session)
    actor = acting_user(session, user, action="submit a sighting")
    if side not in SIDES:
        raise ReviewError(f"The side must be one of {', '.join(SIDES)}, not {side!r}.")
    if len(notes) > MAX_NOTES_LENGTH:
        raise ReviewError(f"The notes are too long: at most {MAX_NOTES_LENGTH} characters.")
    check_text(notes, "notes", multiline=True)
    if proposal is not None:
        check_vote(proposal, proposed_individual_id, comment)
    new_individual_probability = _check_probability(new_individual_probability, "new_individual_probability")
    ranked = _check_candidates(session, candidates)
    if latitude is None and longitude is None:
        latitude, longitude = info.latitude, info.longitude
    taken_at = taken_at or info.taken_at
    if taken_at is not None and taken_at.tzinfo is None:
        # EXIF carries no zone; like every naive time it is taken as UTC (see core.store.models.UTCDateTime).
        taken_at = taken_at.replace(tzinfo=UTC)

    sha = sha256_hex(data)
    for _attempt in range(2):
        photo = session.exec(select(Photo).where(Photo.sha256 == sha)).first()
        if photo is not None:
            sighting = session.exec(select(Sighting).where(Sighting.photo_id == photo.id)).first()
            if sighting is not None:
                return _link_resubmission(
                    session,
                    sighting,
                    photo,
                    actor,
                    proposal,
                    proposed_individual_id,
                    comment,
                    config,
                    on_gallery_change,
                )
            if photo.in_gallery and photo.individual_id is not None:
                owner = get_individual(session, photo.individual_id, follow_merged=True)
                raise AlreadyInGallery(
                    f"This photo is already in the gallery as {owner.code} (photo {photo.id}); "
                    "there is nothing to review."
                )
        try:
            with session.begin_nested():
                if photo is None:
                    photo, _ = add_photo(
                        session,
                        store,
                        data,
                        suffix=SUFFIX_FOR_FORMAT[info.format],
                        individual=None,
                        side=side,
                        original_name=original_name,
                        width=info.width,
                        height=info.height,
                        taken_at=taken_at,
                        latitude=latitude,
                        longitude=longitude,
                        crop=crop,
                        rotation=rotation,
                        in_gallery=False,
                        uploaded_by=actor.id,
                    )
                own_encounter = encounter_id
                if own_encounter is None:
                    encounter = Encounter(
                        submitted_by=actor.id,  # type: ignore[arg-type]
                        taken_at=taken_at,
                        latitude=latitude,
                        longitude=longitude,
                        notes=notes,
                    )
                    session.add(encounter)
                    session.flush()
                    own_encounter = encounter.id
                elif session.get(Encounter, own_encounter) is None:
                    raise ReviewError(f"Encounter {own_encounter} does not exist.")
                sighting = Sighting(
                    photo_id=photo.id,  # type: ignore[arg-type]
                    encounter_id=own_encounter,  # type: ignore[arg-type]
                    submitted_by=actor.id,  # type: ignore[arg-type]
                    side=side,
                    notes=notes,
                    taken_at=taken_at,
                    latitude=latitude,
                    longitude=longitude,
                    new_individual_probability=new_individual_probability,
                )
                session.add(sighting)
                session.flush()
        except IntegrityError:
            # The same photo arrived from another process in the meantime (PostgreSQL): link to it.
            log.info("Photo %s was submitted concurrently; linking to that sighting", sha[:12])
            continue
        break
    else:  # pragma: no cover - needs two concurrent failures in a row
        raise ReviewError("The photo could not be stored; please submit it again.")

    codes = {}
    for candidate in ranked:
        individual = session.get(Individual, candidate.individual_id)
        codes[candidate.rank] = individual.code if individual is not None else ""
        session.add(
            Candidate(
                sighting_id=sighting.id,  # type: ignore[arg-type]
                individual_id=candidate.individual_id,
                code=codes[candidate.rank],
                rank=candidate.rank,
                score=float(candidate.score),
                probability=_check_probability(candidate.probability, "candidate probability"),
                n_matches=int(candidate.n_matches),
            )
        )
    session.flush()
    record(
        session,
        actor,
        "sighting.submit",
        sighting,
        before=None,
        after={
            "photo_id": photo.id,
            "side": side,
            "candidates": [[c.rank, codes[c.rank], c.probability] for c in ranked],
            "new_individual_probability": new_individual_probability,
        },
        individuals=[c.individual_id for c in ranked[:1]],
    )
    log.info("Sighting %s submitted by %s (photo %s)", sighting.id, actor.username, photo.id)
    outcome = None
    if proposal is not None:
        vote = add_vote(session, sighting, actor, proposal, proposed_individual_id, comment)
        applied, _ = settle(session, sighting, actor, config, on_gallery_change)
        outcome = outcome_of(sighting, vote, applied)
    return Submission(sighting=sighting, photo=photo, created=True, outcome=outcome)


def _link_resubmission(
    session: Session,
    sighting: Sighting,
    photo: Photo,
    actor: User,
    proposal: str | None,
    proposed_individual_id: int | None,
    comment: str,
    config: ReviewConfig,
    hook: GalleryHook | None,
) -> Submission:
    sighting = locked_sighting(session, sighting.id)  # type: ignore[arg-type]
    log.info("Photo %s was already submitted as sighting %s; linking", photo.sha256[:12], sighting.id)
    voted = session.exec(select(Vote.id).where(Vote.sighting_id == sighting.id, Vote.user_id == actor.id)).first()
    if proposal is None or voted is not None:
        return Submission(sighting=sighting, photo=photo, created=False, outcome=None)
    outcome = vote_locked(session, sighting, actor, proposal, proposed_individual_id, comment, config, hook)
    return Submission(sighting=sighting, photo=photo, created=False, outcome=outcome)


def list_sightings(session: Session, status: str | None = None, *, limit: int | None = None) -> list[Sighting]:
    """Sightings, oldest first (the order a review queue works through them), optionally by status."""
    query = select(Sighting).order_by(col(Sighting.created_at), col(Sighting.id))
    if status is not None:
        query = query.where(Sighting.status == status)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def review_queue(session: Session, user: User, *, limit: int | None = 50) -> list[Sighting]:
    """Pending sightings ``user`` has not voted on yet, oldest first."""
    voted = select(Vote.sighting_id).where(Vote.user_id == user.id)
    query = (
        select(Sighting)
        .where(Sighting.status == "pending", col(Sighting.id).not_in(voted))
        .order_by(col(Sighting.created_at), col(Sighting.id))
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def sighting_detail(session: Session, sighting_id: int) -> SightingDetail:
    sighting = session.get(Sighting, sighting_id)
    if sighting is None:
        raise ReviewError(f"There is no sighting {sighting_id}.")
    photo = session.get(Photo, sighting.photo_id)
    assert photo is not None  # the foreign key guarantees it
    candidates = session.exec(
        select(Candidate).where(Candidate.sighting_id == sighting_id).order_by(col(Candidate.rank))
    ).all()
    votes = session.exec(
        select(Vote).where(Vote.sighting_id == sighting_id).order_by(col(Vote.created_at), col(Vote.id))
    ).all()
    return SightingDetail(sighting, photo, list(candidates), list(votes), tally(session, sighting_id))


def count_sightings(session: Session) -> dict[str, int]:
    """Number of sightings per status (every status present, zero included), for dashboards."""
    rows = session.exec(select(Sighting.status, func.count()).group_by(Sighting.status)).all()
    counts = {status: 0 for status in ("pending", "conflict", "decided")}
    counts.update({status: n for status, n in rows})
    return counts
