"""Encounters: one animal seen once, with one or more photos (each with its side), reviewed and decided together.

Why: capture–recapture counts encounters, not photos, and the left and right photos of one turtle are one
observation. Submitting an encounter stores one :class:`~core.store.fieldwork.Encounter` and one sighting per
photo (:func:`~core.review.sightings.submit_sighting` with ``encounter_id``) in the caller's transaction; the
submitter's proposal is their vote on every photo. A vote on an encounter is a vote on each of its sightings,
in one transaction, so its photos are decided together; a "new" decision creates one individual for all of them
(core.review.votes). One-photo sightings keep working as they did: they are one-photo encounters.

Bad input raises :class:`EncounterError` (a :class:`ReviewError`) before anything is written; the caller's
transaction rolls back whatever a later step refuses, so nothing is stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from core.io import sha256_hex
from core.review.rules import MAX_NOTES_LENGTH, AlreadyVoted, ReviewConfig, ReviewError
from core.review.sightings import CandidateInput, Submission, submit_sighting
from core.review.users import acting_user
from core.review.votes import GalleryHook, VoteOutcome, check_vote, decide, locked_sighting, vote_locked
from core.safe_text import TextError, check_text
from core.store.audit import lock_for_write, record
from core.store.fieldwork import Encounter, Site, Species
from core.store.models import AuditLog, Crop, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore

__all__ = [
    "MAX_OBSERVER",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "CombinedInput",
    "EncounterError",
    "EncounterFields",
    "EncounterPhoto",
    "EncounterSubmission",
    "ShownRanking",
    "cast_encounter_vote",
    "check_encounter",
    "decide_encounter",
    "encounter_of",
    "encounter_photos",
    "shown_ranking",
    "submit_encounter",
]

MAX_TAGS = 20
MAX_TAG_LENGTH = 40
MAX_OBSERVER = 200
MAX_PHOTOS = 12
#: Local dates run up to 14 hours ahead of UTC (Kiribati): "today" there is not in the future.
FUTURE_SLACK = timedelta(hours=14)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


class EncounterError(ReviewError):
    """An encounter that cannot be stored as given; nothing was stored."""


@dataclass(frozen=True)
class EncounterFields:
    """What the volunteer says about the encounter; empty fields are filled from the photos' EXIF."""

    taken_at: datetime | None = None
    site_id: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    observer: str = ""
    species: str = ""
    notes: str = ""
    tags: Sequence[str] = ()


@dataclass(frozen=True)
class EncounterPhoto:
    """One photo of the encounter with the ranking it got against gallery photos of its own side."""

    data: bytes
    side: str = "unknown"
    candidates: Sequence[CandidateInput] = ()
    new_individual_probability: float | None = None
    crop: Crop | None = None
    rotation: int = 0
    original_name: str = ""


@dataclass(frozen=True)
class CombinedInput:
    """One row of the encounter's combined ranking as the submitter saw it (core.engine.combine)."""

    individual_id: int
    probability: float
    log_likelihood_ratio: float  # the encounter's evidence, summed over its photos (natural log)
    per_photo: tuple[float | None, ...] = ()  # each photo's ln LR; None where that photo was not compared


@dataclass(frozen=True)
class ShownRanking:
    """The combined ranking frozen with the encounter, with the new-individual probability beside it."""

    rows: list[CombinedInput]
    new_individual_probability: float | None


@dataclass(frozen=True)
class EncounterSubmission:
    encounter: Encounter
    submissions: list[Submission] = field(default_factory=list)  # one per photo, in the order given


def _text(value: object, what: str, max_length: int, *, multiline: bool = False) -> str:
    try:
        return check_text(value if value is not None else "", what, max_length=max_length, multiline=multiline).strip()
    except TextError as exc:
        raise EncounterError(str(exc)) from None


def _coordinate(value: object, what: str, limit: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EncounterError(f"The {what} must be a number, not {value!r}.") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise EncounterError(f"The {what} must lie between -{limit:g} and {limit:g}, not {value!r}.")
    return number


def _taken_at(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise EncounterError(f"The date must be a date and time, not {value!r}.")
    when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if when > now + FUTURE_SLACK:
        raise EncounterError(f"The date {when:%Y-%m-%d} is in the future; please check it.")
    if when < EARLIEST:
        raise EncounterError(f"The date {when:%Y-%m-%d} is before {EARLIEST:%Y}; please check it.")
    return when


def _tags(values: Sequence[str]) -> list[str]:
    if isinstance(values, str):
        values = [part for part in values.split(",")]
    tags: list[str] = []
    for value in values:
        tag = _text(value, "tag", 10 * MAX_TAG_LENGTH)
        if len(tag) > MAX_TAG_LENGTH:
            raise EncounterError(f"The tag {tag[:MAX_TAG_LENGTH]!r}… is too long: at most {MAX_TAG_LENGTH} characters.")
        if tag and tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise EncounterError(f"An encounter has at most {MAX_TAGS} tags, not {len(tags)}.")
    return tags


def check_encounter(session: Session, fields: EncounterFields, *, now: datetime | None = None) -> EncounterFields:
    """The fields cleaned (text trimmed, tags de-duplicated), or :class:`EncounterError` saying what is wrong."""
    latitude = _coordinate(fields.latitude, "latitude", 90.0)
    longitude = _coordinate(fields.longitude, "longitude", 180.0)
    if (latitude is None) != (longitude is None):
        raise EncounterError("Give both the latitude and the longitude, or neither.")
    site_id = fields.site_id
    if site_id is not None and (
        isinstance(site_id, bool) or not isinstance(site_id, int) or session.get(Site, site_id) is None
    ):
        raise EncounterError(f"There is no site {site_id!r}; choose one from the list.")
    species = _text(fields.species, "species", 120)
    if species and session.exec(select(Species.id).where(Species.name == species)).first() is None:
        raise EncounterError(f"{species!r} is not in the project's species list; choose one from the list or none.")
    return EncounterFields(
        taken_at=_taken_at(fields.taken_at, now or datetime.now(UTC)),
        site_id=site_id,
        latitude=latitude,
        longitude=longitude,
        observer=_text(fields.observer, "observer", MAX_OBSERVER),
        species=species,
        notes=_text(fields.notes, "notes", MAX_NOTES_LENGTH, multiline=True),
        tags=_tags(fields.tags),
    )


def _check_photos(session: Session, photos: Sequence[EncounterPhoto]) -> None:
    if not photos:
        raise EncounterError("An encounter needs at least one photo.")
    if len(photos) > MAX_PHOTOS:
        raise EncounterError(f"An encounter has at most {MAX_PHOTOS} photos, not {len(photos)}.")
    seen: dict[str, int] = {}
    for number, photo in enumerate(photos, 1):
        sha = sha256_hex(photo.data)
        if sha in seen:
            raise EncounterError(f"Photo {number} is the same file as photo {seen[sha]}; add each photo once.")
        seen[sha] = number
        if len(photos) > 1:
            earlier = session.exec(
                select(Sighting.id).join(Photo, col(Photo.id) == col(Sighting.photo_id)).where(Photo.sha256 == sha)
            ).first()
            if earlier is not None:
                raise EncounterError(
                    f"Photo {number} ({photo.original_name or 'no name'}) was already submitted as sighting "
                    f"{earlier}; leave it out of this encounter."
                )


def submit_encounter(
    session: Session,
    store: PhotoStore,
    user: User,
    fields: EncounterFields,
    photos: Sequence[EncounterPhoto],
    *,
    proposal: str | None = None,
    proposed_individual_id: int | None = None,
    comment: str = "",
    combined: ShownRanking | None = None,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> EncounterSubmission:
    """One encounter row and one sighting per photo, in the caller's transaction; the proposal votes on each.

    ``combined`` (the ranking of all photos together that the submitter saw) is kept with the encounter's audit
    entry, as each sighting's candidates are kept with its own, so reviewers see what the submitter saw.
    A one-photo encounter of a photo submitted before links to that sighting, as a single sighting always did."""
    clean = check_encounter(session, fields)
    if proposal is not None:
        check_vote(proposal, proposed_individual_id, comment)
    _check_photos(session, photos)
    lock_for_write(session)
    actor = acting_user(session, user, action="submit an encounter")
    encounter = Encounter(
        submitted_by=actor.id,  # type: ignore[arg-type]
        observer=clean.observer,
        taken_at=clean.taken_at,
        site_id=clean.site_id,
        latitude=clean.latitude,
        longitude=clean.longitude,
        species=clean.species,
        notes=clean.notes,
        tags=list(clean.tags),
    )
    session.add(encounter)
    session.flush()
    submissions = [
        submit_sighting(
            session,
            store,
            user,
            photo.data,
            candidates=photo.candidates,
            new_individual_probability=photo.new_individual_probability,
            proposal=proposal,
            proposed_individual_id=proposed_individual_id,
            comment=comment,
            side=photo.side,
            crop=photo.crop,
            rotation=photo.rotation,
            taken_at=clean.taken_at,
            latitude=clean.latitude,
            longitude=clean.longitude,
            notes=clean.notes,
            original_name=photo.original_name,
            encounter_id=encounter.id,
            config=config,
            on_gallery_change=on_gallery_change,
        )
        for photo in photos
    ]
    if len(submissions) == 1 and not submissions[0].created:  # the same photo again: its own encounter stands
        session.delete(encounter)
        session.flush()
        linked = session.get(Encounter, submissions[0].sighting.encounter_id)
        return EncounterSubmission(linked or encounter, submissions)
    _fill_from_photos(session, encounter, [s.sighting for s in submissions])
    record(
        session,
        actor,
        "encounter.create",
        ("encounter", encounter.id),
        before=None,
        after={
            "sightings": [s.sighting.id for s in submissions],
            "sides": [s.sighting.side for s in submissions],
            "taken_at": encounter.taken_at,
            "site_id": encounter.site_id,
            "species": encounter.species,
            "tags": encounter.tag_list,
        },
        individuals=[combined.rows[0].individual_id] if combined and combined.rows else [],
        extra={"combined": _ranking_payload(combined)} if combined is not None else None,
    )
    return EncounterSubmission(encounter, submissions)


def _ranking_payload(ranking: ShownRanking) -> dict[str, object]:
    for row in ranking.rows:
        if not (math.isfinite(row.probability) and 0.0 <= row.probability <= 1.0):
            raise EncounterError(f"A combined probability must lie between 0 and 1, not {row.probability!r}.")
    return {
        "rows": [[r.individual_id, r.probability, r.log_likelihood_ratio, list(r.per_photo)] for r in ranking.rows],
        "new_individual_probability": ranking.new_individual_probability,
    }


def shown_ranking(session: Session, encounter_id: int) -> ShownRanking | None:
    """The combined ranking the submitter saw (None for one-photo encounters and those sent without one)."""
    entry = session.exec(
        select(AuditLog).where(
            AuditLog.action == "encounter.create",
            AuditLog.target_type == "encounter",
            AuditLog.target_id == encounter_id,
        )
    ).first()
    payload = entry.payload.get("combined") if entry is not None and isinstance(entry.payload, dict) else None
    if not isinstance(payload, dict):
        return None
    rows = [
        CombinedInput(int(ident), float(prob), float(llr), tuple(None if v is None else float(v) for v in per))
        for ident, prob, llr, per in payload.get("rows", [])
    ]
    new = payload.get("new_individual_probability")
    return ShownRanking(rows, None if new is None else float(new))


def _fill_from_photos(session: Session, encounter: Encounter, sightings: Sequence[Sighting]) -> None:
    """Date and place not given by the volunteer come from the first photo whose EXIF has them."""
    if encounter.taken_at is None:
        encounter.taken_at = next((s.taken_at for s in sightings if s.taken_at is not None), None)
    if encounter.latitude is None and encounter.longitude is None:
        placed = next((s for s in sightings if s.latitude is not None and s.longitude is not None), None)
        if placed is not None:
            encounter.latitude, encounter.longitude = placed.latitude, placed.longitude
    session.add(encounter)
    session.flush()


def encounter_photos(session: Session, encounter_id: int) -> list[tuple[Sighting, Photo]]:
    """The encounter's sightings with their photos, in the order they were submitted."""
    rows = session.exec(
        select(Sighting, Photo)
        .join(Photo, col(Photo.id) == col(Sighting.photo_id))
        .where(Sighting.encounter_id == encounter_id)
        .order_by(col(Sighting.id))
    ).all()
    return [(sighting, photo) for sighting, photo in rows]


def encounter_of(session: Session, sighting_id: int) -> Encounter | None:
    sighting = session.get(Sighting, sighting_id)
    return session.get(Encounter, sighting.encounter_id) if sighting is not None else None


def cast_encounter_vote(
    session: Session,
    user: User,
    encounter_id: int,
    decision: str,
    individual_id: int | None = None,
    comment: str = "",
    *,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> list[VoteOutcome]:
    """``user``'s vote on every sighting of the encounter, in one transaction: its photos are decided together.

    A user who has voted on any of its sightings has voted on the encounter (:class:`AlreadyVoted`, nothing
    stored). As with one sighting, a vote on a sighting decided meanwhile is stored and changes nothing."""
    config = config or ReviewConfig()
    comment = (comment or "").strip()
    check_vote(decision, individual_id, comment)
    lock_for_write(session)
    actor = acting_user(session, user, action="vote")
    members = session.exec(
        select(Sighting.id).where(Sighting.encounter_id == encounter_id).order_by(col(Sighting.id))
    ).all()
    if not members:
        raise EncounterError(f"There is no encounter {encounter_id} with photos to vote on.")
    voted = session.exec(select(Vote.sighting_id).where(col(Vote.sighting_id).in_(members), Vote.user_id == actor.id))
    if voted.first() is not None:
        raise AlreadyVoted(f"{actor.username!r} has already voted on encounter {encounter_id}; each person votes once.")
    return [
        vote_locked(
            session,
            locked_sighting(session, sighting_id),  # type: ignore[arg-type]
            actor,
            decision,
            individual_id,
            comment,
            config,
            on_gallery_change,
        )
        for sighting_id in members
    ]


def decide_encounter(
    session: Session,
    user: User,
    encounter_id: int,
    decision: str,
    individual_id: int | None = None,
    *,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> list[VoteOutcome]:
    """An admin decides every open sighting of the encounter at once (see :func:`core.review.votes.decide`)."""
    open_ones = session.exec(
        select(Sighting.id)
        .where(Sighting.encounter_id == encounter_id, Sighting.status != "decided")
        .order_by(col(Sighting.id))
    ).all()
    if not open_ones:
        raise EncounterError(f"Encounter {encounter_id} has no open sighting to decide.")
    return [
        decide(
            session,
            user,
            sighting_id,  # type: ignore[arg-type]
            decision,
            individual_id,
            config=config,
            on_gallery_change=on_gallery_change,
        )
        for sighting_id in open_ones
    ]
