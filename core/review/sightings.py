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
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from core.engine.images import load_image
from core.errors import ScuteError
from core.review.users import acting_user
from core.safe_text import check_text
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.gallery import add_photo, normalize_code, resolve_merged
from core.store.models import (
    SIDES,
    VOTE_DECISIONS,
    Candidate,
    Crop,
    Individual,
    Photo,
    Sighting,
    User,
    Vote,
    utc_now,
)
from core.store.photos import PhotoStore, sha256_hex

log = logging.getLogger(__name__)

__all__ = [
    "ROW_LOCK",
    "AlreadyDecided",
    "AlreadyInGallery",
    "AlreadyVoted",
    "CandidateInput",
    "GalleryHook",
    "ReviewConfig",
    "ReviewError",
    "SightingDetail",
    "Submission",
    "Tally",
    "VoteOutcome",
    "cast_vote",
    "count_sightings",
    "create_next_individual",
    "decide",
    "get_individual",
    "list_sightings",
    "lock_for_write",
    "next_code",
    "review_queue",
    "sighting_detail",
    "submit_sighting",
    "tally",
]

GalleryHook = Callable[[Photo], None]
"""Called with a photo that has just joined the gallery (inside the transaction, after flush)."""

MAX_COMMENT_LENGTH = 2000
MAX_NOTES_LENGTH = 10_000
_SUFFIX_FOR_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "HEIF": ".heic"}


class ReviewError(ScuteError):
    """A submission, vote or decision that cannot be carried out as asked."""


class AlreadyVoted(ReviewError):
    """The user has already voted on this sighting (one vote per user and sighting)."""


class AlreadyDecided(ReviewError):
    """The sighting was decided already; nothing was changed."""


class AlreadyInGallery(ReviewError):
    """The submitted photo is already a gallery photo of an individual."""


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewConfig:
    """The consensus rule and the code pattern; every process deciding on one database should agree.

    A sighting is decided when the leading proposal ("same as X" or "new") has ``required_votes``
    votes from distinct users, strictly more than any other, and the votes for other proposals number
    at most ``allowed_dissent``; more dissent than that makes it a conflict for an admin. "Unsure"
    votes are stored but count for nothing.
    """

    required_votes: int = 2
    allowed_dissent: int = 0
    code_pattern: str = "T-{n:04d}"

    def __post_init__(self) -> None:
        if isinstance(self.required_votes, bool) or not isinstance(self.required_votes, int):
            raise ValueError(f"required_votes must be an integer, got {self.required_votes!r}")
        if self.required_votes < 1:
            raise ValueError(f"required_votes must be at least 1, got {self.required_votes}")
        if isinstance(self.allowed_dissent, bool) or not isinstance(self.allowed_dissent, int):
            raise ValueError(f"allowed_dissent must be an integer, got {self.allowed_dissent!r}")
        if self.allowed_dissent < 0:
            raise ValueError(f"allowed_dissent must be >= 0, got {self.allowed_dissent}")
        _CodePattern(self.code_pattern)  # validates

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReviewConfig:
        """Read ``SCUTE_REQUIRED_VOTES``, ``SCUTE_ALLOWED_DISSENT`` and ``SCUTE_CODE_PATTERN``."""
        env = os.environ if environ is None else environ
        defaults = cls()
        try:
            return cls(
                required_votes=int(env.get("SCUTE_REQUIRED_VOTES", defaults.required_votes)),
                allowed_dissent=int(env.get("SCUTE_ALLOWED_DISSENT", defaults.allowed_dissent)),
                code_pattern=env.get("SCUTE_CODE_PATTERN", defaults.code_pattern),
            )
        except ValueError as exc:
            raise ReviewError(f"The review settings in the environment are invalid: {exc}") from exc


class _CodePattern:
    """A ``str.format`` pattern with exactly one integer field ``n``, e.g. ``T-{n:04d}``."""

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise ValueError(f"code pattern must be text, got {type(pattern).__name__}")
        try:
            parts = list(string.Formatter().parse(pattern))
        except ValueError as exc:
            raise ValueError(f"code pattern {pattern!r} is not a valid format string: {exc}") from exc
        fields = [name for _, name, _, _ in parts if name is not None]
        if fields != ["n"]:
            raise ValueError(f"code pattern must contain exactly one field {{n}}, e.g. 'T-{{n:04d}}'; got {pattern!r}")
        self.pattern = pattern
        self.prefix = parts[0][0]
        self.regex = re.compile("".join(re.escape(lit) + (r"(\d+)" if name else "") for lit, name, _, _ in parts))
        for n in (1, 10, 255, 12345):
            try:
                sample = self.format(n)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"code pattern {pattern!r} cannot format a number: {exc}") from exc
            if self.number(sample) != n:
                raise ValueError(f"code pattern {pattern!r} makes codes that cannot be read back ({sample!r})")

    def format(self, n: int) -> str:
        return normalize_code(self.pattern.format(n=n))

    def number(self, code: str) -> int | None:
        match = self.regex.fullmatch(code)
        return int(match.group(1)) if match else None


# --- inputs and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateInput:
    """One ranked candidate as computed by the engine (rank 1 is the best)."""

    individual_id: int
    rank: int
    score: float
    probability: float | None = None
    n_matches: int = 0


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote or decision led to. ``applied`` is True only for the call that changed the gallery."""

    sighting_id: int
    vote_id: int | None
    status: str
    applied: bool
    decision: str | None
    individual_id: int | None


@dataclass(frozen=True)
class Submission:
    """A submitted sighting; ``created`` False means the same photo was submitted before and is linked."""

    sighting: Sighting
    photo: Photo
    created: bool
    outcome: VoteOutcome | None


@dataclass(frozen=True)
class Tally:
    """Votes counted per proposal; ``same`` maps the surviving individual's id to its votes."""

    same: dict[int, int] = field(default_factory=dict)
    new: int = 0
    unsure: int = 0

    @cached_property
    def proposals(self) -> Counter[tuple[str, int | None]]:
        counts: Counter[tuple[str, int | None]] = Counter({("same", ident): n for ident, n in self.same.items()})
        if self.new:
            counts[("new", None)] = self.new
        return counts

    def verdict(self, config: ReviewConfig) -> tuple[str, tuple[str, int | None] | None]:
        """``("decided", proposal)``, ``("conflict", None)`` or ``("pending", None)``."""
        ranked = self.proposals.most_common()
        if not ranked:
            return "pending", None
        leader, votes = ranked[0]
        dissent = sum(self.proposals.values()) - votes
        if dissent > config.allowed_dissent:
            return "conflict", None
        tied = len(ranked) > 1 and ranked[1][1] == votes
        if votes >= config.required_votes and not tied:
            return "decided", leader
        return "pending", None


@dataclass(frozen=True)
class SightingDetail:
    """Everything a reviewer looks at: the sighting, its photo, frozen candidates and the votes so far."""

    sighting: Sighting
    photo: Photo
    candidates: list[Candidate]
    votes: list[Vote]
    tally: Tally


# --- locking ---------------------------------------------------------------------------------------


def _locked_sighting(session: Session, sighting_id: int) -> Sighting:
    sighting = session.get(Sighting, sighting_id, with_for_update=ROW_LOCK, populate_existing=True)
    if sighting is None:
        raise ReviewError(f"There is no sighting {sighting_id}.")
    return sighting


# --- individuals and codes -------------------------------------------------------------------------


def get_individual(session: Session, ref: int | str, *, follow_merged: bool = False) -> Individual:
    """The individual with this id (int) or code (str); raises :class:`ReviewError` when unknown."""
    if isinstance(ref, bool):
        raise ReviewError(f"{ref!r} is not an individual's id or code.")
    if isinstance(ref, int):
        individual = session.get(Individual, ref)
        label = f"id {ref}"
    else:
        code = ref.strip()
        individual = session.exec(select(Individual).where(Individual.code == code)).first() if code else None
        label = repr(code)
    if individual is None:
        raise ReviewError(f"There is no individual {label}.")
    return resolve_merged(session, individual) if follow_merged else individual


class _InactiveTarget(ReviewError):
    """The individual a photo should join is retired (or its merge chain ends in one that is)."""


def _active_target(session: Session, individual_id: int, *, lock: bool = False) -> Individual:
    """The active individual ``individual_id`` stands for (following merges), locked when asked.

    Locking re-reads the row; should a merge have committed meanwhile, the survivor is resolved and
    locked instead, so a concurrent merge never leaves a photo on a merged individual.
    """
    individual = get_individual(session, individual_id, follow_merged=True)
    for _ in range(8 if lock else 0):  # a concurrent merge or retirement must not slip in before commit
        locked = session.get(Individual, individual.id, with_for_update=ROW_LOCK, populate_existing=True)
        assert locked is not None
        individual = locked
        survivor = resolve_merged(session, individual)
        if survivor.id == individual.id:
            break
        individual = survivor
    if individual.status != "active":
        raise _InactiveTarget(
            f"Individual {individual.code} is {individual.status}; photos can only join an active individual."
        )
    return individual


def next_code(session: Session, pattern: str) -> str:
    """The code after the highest existing one of ``pattern``: max + 1 from 1; gaps are never reused."""
    parsed = _CodePattern(pattern)
    query = select(Individual.code)
    if parsed.prefix:
        query = query.where(col(Individual.code).startswith(parsed.prefix, autoescape=True))
    numbers = [n for code in session.exec(query).all() if (n := parsed.number(code)) is not None]
    return parsed.format(max(numbers, default=0) + 1)


def create_next_individual(session: Session, pattern: str, *, name: str | None = None) -> Individual:
    """Create an individual with :func:`next_code`; safe when several processes do it at once.

    The transaction becomes a serialised writer (:func:`lock_for_write`; its callers already are), so
    two decisions never compute the same next code. A code taken meanwhile (say, by an import) is retried.
    """
    lock_for_write(session)
    for _ in range(5):
        code = next_code(session, pattern)
        individual = Individual(code=code, name=name)
        try:
            with session.begin_nested():
                session.add(individual)
                session.flush()
        except IntegrityError:
            log.warning("Code %s was taken meanwhile; trying the next one", code)
            continue
        log.info("Created individual %s", code)
        return individual
    raise ReviewError("Could not allocate a new individual code; please try again.")


# --- validation ------------------------------------------------------------------------------------


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


def _check_vote(decision: str, individual_id: int | None, comment: str) -> None:
    if decision not in VOTE_DECISIONS:
        raise ReviewError(f"{decision!r} is not a vote; choose one of {', '.join(VOTE_DECISIONS)}.")
    if decision == "same" and individual_id is None:
        raise ReviewError("A vote 'same' must say which individual the photo shows.")
    if decision != "same" and individual_id is not None:
        raise ReviewError(f"A vote {decision!r} names no individual; leave the individual out.")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ReviewError(f"The comment is too long: at most {MAX_COMMENT_LENGTH} characters.")
    check_text(comment, "comment", multiline=True)


# --- counting and applying -------------------------------------------------------------------------


def tally(session: Session, sighting_id: int) -> Tally:
    """Count the votes of a sighting, following merges (votes for T-1 and for T-2 merged into T-1 agree)."""
    same: Counter[int] = Counter()
    new = unsure = 0
    for vote in session.exec(select(Vote).where(Vote.sighting_id == sighting_id)).all():
        if vote.decision == "same" and vote.individual_id is not None:
            same[get_individual(session, vote.individual_id, follow_merged=True).id] += 1  # type: ignore[index]
        elif vote.decision == "new":
            new += 1
        else:
            unsure += 1
    return Tally(same=dict(same), new=new, unsure=unsure)


def _call_hook(hook: GalleryHook | None, photo: Photo) -> None:
    if hook is None:
        return
    try:
        hook(photo)
    except ScuteError as exc:
        # The decision stands; the search computes missing features itself the next time.
        log.warning("Could not cache features of photo %s after it joined the gallery: %s", photo.id, exc)


def _apply(
    session: Session,
    sighting: Sighting,
    decision: str,
    individual_id: int | None,
    actor: User,
    config: ReviewConfig,
    hook: GalleryHook | None,
    how: str,
) -> Individual:
    """Put the sighting's photo into the gallery; the caller holds the lock and has checked the status.

    Locks are taken sighting, individual, photo; curation takes individuals, photos, sightings. The two
    orders differ, which is why :func:`lock_for_write` serialises writers on PostgreSQL too.
    """
    if decision == "same":
        if individual_id is None:
            raise ReviewError("A decision 'same' must say which individual the photo shows.")
        target = _active_target(session, individual_id, lock=True)
    elif decision == "new":
        target = create_next_individual(session, config.code_pattern)
    else:
        raise ReviewError(f"A sighting is decided as 'same' or 'new', not {decision!r}.")
    photo = session.get(Photo, sighting.photo_id, with_for_update=ROW_LOCK, populate_existing=True)
    if photo is None:  # pragma: no cover - the foreign key forbids it
        raise ReviewError(f"The photo of sighting {sighting.id} is missing.")
    before = {
        "status": sighting.status,
        "photo_individual_id": photo.individual_id,
        "photo_in_gallery": photo.in_gallery,
    }
    photo.individual_id = target.id
    photo.in_gallery = True
    sighting.status = "decided"
    sighting.decision = decision
    sighting.decided_individual_id = target.id
    sighting.decided_by = actor.id
    sighting.decided_at = utc_now()
    session.add_all([photo, sighting])
    session.flush()
    record(
        session,
        actor,
        "sighting.decide",
        sighting,
        before=before,
        after={"status": "decided", "photo_individual_id": target.id, "photo_in_gallery": True},
        individuals=[target.id],
        extra={"decision": decision, "code": target.code, "photo_id": photo.id, "how": how},
    )
    log.info("Sighting %s decided (%s): photo %s joins %s", sighting.id, how, photo.id, target.code)
    _call_hook(hook, photo)
    return target


def _evaluate(
    session: Session, sighting: Sighting, actor: User, config: ReviewConfig, hook: GalleryHook | None
) -> tuple[bool, int | None]:
    """Re-count a pending sighting and decide it or flag the conflict; returns (applied, individual id)."""
    status, proposal = tally(session, sighting.id).verdict(config)  # type: ignore[arg-type]
    if status == "decided" and proposal is not None:
        decision, individual_id = proposal
        try:
            target = _apply(session, sighting, decision, individual_id, actor, config, hook, how="consensus")
        except _InactiveTarget as exc:  # retired since the votes were cast: an admin must look at it
            log.warning("Sighting %s cannot be applied (%s); sending it to an admin", sighting.id, exc)
            status = "conflict"
        else:
            return True, target.id
    if status == "conflict" and sighting.status != "conflict":
        sighting.status = "conflict"
        session.add(sighting)
        session.flush()
        record(
            session,
            actor,
            "sighting.conflict",
            sighting,
            before={"status": "pending"},
            after={"status": "conflict"},
        )
        log.info("Sighting %s has conflicting votes; an admin must decide", sighting.id)
    return False, None


def _add_vote(
    session: Session, sighting: Sighting, actor: User, decision: str, individual_id: int | None, comment: str
) -> Vote:
    existing = session.exec(select(Vote).where(Vote.sighting_id == sighting.id, Vote.user_id == actor.id)).first()
    if existing is not None:
        raise AlreadyVoted(
            f"{actor.username!r} has already voted {existing.decision!r} on sighting {sighting.id}; "
            "each person votes once."
        )
    if decision == "same":
        _active_target(session, individual_id)  # type: ignore[arg-type]
    vote = Vote(
        sighting_id=sighting.id,  # type: ignore[arg-type]
        user_id=actor.id,  # type: ignore[arg-type]
        decision=decision,
        individual_id=individual_id,
        comment=comment,
    )
    try:
        with session.begin_nested():
            session.add(vote)
            session.flush()
    except IntegrityError as exc:  # a concurrent double vote that slipped past the check above
        raise AlreadyVoted(
            f"{actor.username!r} has already voted on sighting {sighting.id}; each person votes once."
        ) from exc
    record(
        session,
        actor,
        "sighting.vote",
        sighting,
        before=None,
        after={"decision": decision, "individual_id": individual_id, "comment": comment},
        individuals=[individual_id],
        extra={"vote_id": vote.id, "status": sighting.status},
    )
    return vote


def _outcome(sighting: Sighting, vote: Vote | None, applied: bool) -> VoteOutcome:
    return VoteOutcome(
        sighting_id=sighting.id,  # type: ignore[arg-type]
        vote_id=vote.id if vote is not None else None,
        status=sighting.status,
        applied=applied,
        decision=sighting.decision,
        individual_id=sighting.decided_individual_id,
    )


# --- public operations -----------------------------------------------------------------------------


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
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> Submission:
    """Store a photo as a pending sighting with its candidates; the proposal (if any) is the submitter's vote.

    Date and place default to the photo's EXIF. The same photo (same SHA-256) submitted again returns the
    existing sighting with ``created`` False; a different user's proposal then counts as their vote, while
    the same user's is ignored. A photo that already is a gallery photo raises :class:`AlreadyInGallery`.
    With ``required_votes=1`` the proposal alone decides, and the photo joins the gallery at once.
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
        _check_vote(proposal, proposed_individual_id, comment)
    new_individual_probability = _check_probability(new_individual_probability, "new_individual_probability")
    ranked = _check_candidates(session, candidates)
    if latitude is None and longitude is None:
        latitude, longitude = info.latitude, info.longitude
    taken_at = taken_at or info.taken_at
    if taken_at is not None and taken_at.tzinfo is None:
        # EXIF carries no zone; like every naive time it is taken as UTC (see core.models.UTCDateTime).
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
                        suffix=_SUFFIX_FOR_FORMAT[info.format],
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
                sighting = Sighting(
                    photo_id=photo.id,  # type: ignore[arg-type]
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
        vote = _add_vote(session, sighting, actor, proposal, proposed_individual_id, comment)
        applied, _ = _evaluate(session, sighting, actor, config, on_gallery_change)
        outcome = _outcome(sighting, vote, applied)
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
    sighting = _locked_sighting(session, sighting.id)  # type: ignore[arg-type]
    log.info("Photo %s was already submitted as sighting %s; linking", photo.sha256[:12], sighting.id)
    voted = session.exec(select(Vote.id).where(Vote.sighting_id == sighting.id, Vote.user_id == actor.id)).first()
    if proposal is None or voted is not None:
        return Submission(sighting=sighting, photo=photo, created=False, outcome=None)
    outcome = _vote_locked(session, sighting, actor, proposal, proposed_individual_id, comment, config, hook)
    return Submission(sighting=sighting, photo=photo, created=False, outcome=outcome)


def _vote_locked(
    session: Session,
    sighting: Sighting,
    actor: User,
    decision: str,
    individual_id: int | None,
    comment: str,
    config: ReviewConfig,
    hook: GalleryHook | None,
) -> VoteOutcome:
    vote = _add_vote(session, sighting, actor, decision, individual_id, comment)
    applied = False
    if sighting.status == "pending":
        applied, _ = _evaluate(session, sighting, actor, config, hook)
    elif sighting.status == "decided":
        log.info("Late vote by %s on decided sighting %s stored; the decision stands", actor.username, sighting.id)
    return _outcome(sighting, vote, applied)


def cast_vote(
    session: Session,
    user: User,
    sighting_id: int,
    decision: str,
    individual_id: int | None = None,
    comment: str = "",
    *,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> VoteOutcome:
    """Record ``user``'s vote and decide the sighting when the consensus rule is met.

    Any active account may vote, once per sighting (:class:`AlreadyVoted`). A vote on a sighting that
    was decided meanwhile is still stored (no vote is lost) but changes nothing; on a conflict it is
    stored for the admin to see. Call inside a transaction that commits afterwards (``session_scope``).
    """
    config = config or ReviewConfig()
    comment = (comment or "").strip()
    _check_vote(decision, individual_id, comment)
    lock_for_write(session)
    actor = acting_user(session, user, action="vote")
    sighting = _locked_sighting(session, sighting_id)
    return _vote_locked(session, sighting, actor, decision, individual_id, comment, config, on_gallery_change)


def decide(
    session: Session,
    user: User,
    sighting_id: int,
    decision: str,
    individual_id: int | None = None,
    *,
    config: ReviewConfig | None = None,
    on_gallery_change: GalleryHook | None = None,
) -> VoteOutcome:
    """An admin decides a pending or conflicting sighting directly ('same' with an individual, or 'new')."""
    config = config or ReviewConfig()
    lock_for_write(session)
    actor = acting_user(session, user, "admin", action="decide a sighting directly")
    sighting = _locked_sighting(session, sighting_id)
    if sighting.status == "decided":
        code = session.get(Individual, sighting.decided_individual_id)
        raise AlreadyDecided(
            f"Sighting {sighting_id} was already decided ({sighting.decision}"
            f"{', ' + code.code if code is not None else ''}); use curation to move the photo instead."
        )
    _check_vote(decision, individual_id, "")
    if decision == "unsure":
        raise ReviewError("A decision must be 'same' or 'new'.")
    _apply(session, sighting, decision, individual_id, actor, config, on_gallery_change, how="admin")
    return _outcome(sighting, None, True)


# --- reading ---------------------------------------------------------------------------------------


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
