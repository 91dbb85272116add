"""Votes and consensus: counting a sighting's votes and applying its decision to the gallery exactly once.

Users vote "same as X", "new" or "unsure"; the submitter's own proposal is their vote and so counts
once. :class:`~core.review.rules.ReviewConfig` says how many concordant votes decide and how much dissent
is tolerated before the sighting goes to an admin (``conflict``). Only a decision changes the gallery:
"same" puts the photo into X's gallery, "new" creates the next code with the photo as its first. Under
the write lock the status is checked again, so two people voting at the same moment in two processes
store both votes and apply the decision once. The ``on_gallery_change`` hook runs inside that transaction,
so it must be cheap (no decoding: :mod:`core.indexing.searchable` computes features before the transaction);
whatever it raises refuses the decision and rolls the transaction back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.review.curation import moved_owner
from core.review.inbox import notify_conflict, notify_decision
from core.review.individuals import InactiveTarget, active_target, create_next_individual, get_individual
from core.review.rules import MAX_COMMENT_LENGTH, AlreadyDecided, AlreadyVoted, ReviewConfig, ReviewError
from core.review.users import acting_user
from core.safe_text import check_text
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.models import (
    VOTE_DECISIONS,
    Individual,
    Photo,
    Sighting,
    User,
    Vote,
    utc_now,
)

log = logging.getLogger(__name__)

__all__ = [
    "GalleryHook",
    "Tally",
    "VoteOutcome",
    "cast_vote",
    "decide",
    "tally",
]

GalleryHook = Callable[[Photo], None]
"""Called with a photo that has just joined the gallery (inside the transaction, after flush); raising refuses
the decision (a photo that searches could not use never joins the gallery)."""


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


def locked_sighting(session: Session, sighting_id: int) -> Sighting:
    sighting = session.get(Sighting, sighting_id, with_for_update=ROW_LOCK, populate_existing=True)
    if sighting is None:
        raise ReviewError(f"There is no sighting {sighting_id}.")
    return sighting


def check_vote(decision: str, individual_id: int | None, comment: str) -> None:
    if decision not in VOTE_DECISIONS:
        raise ReviewError(f"{decision!r} is not a vote; choose one of {', '.join(VOTE_DECISIONS)}.")
    if decision == "same" and individual_id is None:
        raise ReviewError("A vote 'same' must say which individual the photo shows.")
    if decision != "same" and individual_id is not None:
        raise ReviewError(f"A vote {decision!r} names no individual; leave the individual out.")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ReviewError(f"The comment is too long: at most {MAX_COMMENT_LENGTH} characters.")
    check_text(comment, "comment", multiline=True)


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
    if hook is not None:
        hook(photo)  # an error propagates: the decision is refused and nothing of it is kept


def _encounter_newcomer(session: Session, sighting: Sighting) -> Individual | None:
    """The new individual another photo of the same encounter became: one animal, one new individual."""
    sibling = session.exec(
        select(Sighting)
        .where(
            Sighting.encounter_id == sighting.encounter_id,
            Sighting.id != sighting.id,
            Sighting.decision == "new",
            col(Sighting.decided_individual_id).is_not(None),
        )
        .order_by(col(Sighting.id))
    ).first()
    if sibling is None:
        return None
    try:
        return active_target(session, sibling.decided_individual_id, lock=True)  # type: ignore[arg-type]
    except InactiveTarget:
        return None


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
        target = active_target(session, individual_id, lock=True)
    elif decision == "new":
        target = _encounter_newcomer(session, sighting) or create_next_individual(session, config.code_pattern)
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
        extra={
            "decision": decision,
            "code": target.code,
            "photo_id": photo.id,
            "how": how,
            "named_individual_id": individual_id,  # as named, before merges are followed: undoing a merge asks
        },
    )
    log.info("Sighting %s decided (%s): photo %s joins %s", sighting.id, how, photo.id, target.code)
    notify_decision(session, sighting, decision, target)  # same transaction: a refused decision tells no one
    _call_hook(hook, photo)
    return target


def settle(
    session: Session, sighting: Sighting, actor: User, config: ReviewConfig, hook: GalleryHook | None
) -> tuple[bool, int | None]:
    """Re-count a pending sighting and decide it or flag the conflict; returns (applied, individual id)."""
    status, proposal = tally(session, sighting.id).verdict(config)  # type: ignore[arg-type]
    moved = moved_owner(session, sighting) if status == "decided" and proposal is not None else None
    if moved is not None and proposal != ("same", moved.id):
        # An admin moved the photo meanwhile: the votes do not silently undo that; an admin decides.
        log.warning("Sighting %s: the votes disagree with the move of its photo to %s", sighting.id, moved.code)
        status = "conflict"
    elif status == "decided" and proposal is not None:
        decision, individual_id = proposal
        try:
            target = _apply(session, sighting, decision, individual_id, actor, config, hook, how="consensus")
        except InactiveTarget as exc:  # retired since the votes were cast: an admin must look at it
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
        notify_conflict(session, sighting)
        log.info("Sighting %s has conflicting votes; an admin must decide", sighting.id)
    return False, None


def add_vote(
    session: Session, sighting: Sighting, actor: User, decision: str, individual_id: int | None, comment: str
) -> Vote:
    existing = session.exec(select(Vote).where(Vote.sighting_id == sighting.id, Vote.user_id == actor.id)).first()
    if existing is not None:
        raise AlreadyVoted(
            f"{actor.username!r} has already voted {existing.decision!r} on sighting {sighting.id}; "
            "each person votes once."
        )
    if decision == "same":
        active_target(session, individual_id)  # type: ignore[arg-type]
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


def outcome_of(sighting: Sighting, vote: Vote | None, applied: bool) -> VoteOutcome:
    return VoteOutcome(
        sighting_id=sighting.id,  # type: ignore[arg-type]
        vote_id=vote.id if vote is not None else None,
        status=sighting.status,
        applied=applied,
        decision=sighting.decision,
        individual_id=sighting.decided_individual_id,
    )


def vote_locked(
    session: Session,
    sighting: Sighting,
    actor: User,
    decision: str,
    individual_id: int | None,
    comment: str,
    config: ReviewConfig,
    hook: GalleryHook | None,
) -> VoteOutcome:
    vote = add_vote(session, sighting, actor, decision, individual_id, comment)
    applied = False
    if sighting.status == "pending":
        applied, _ = settle(session, sighting, actor, config, hook)
    elif sighting.status == "decided":
        log.info("Late vote by %s on decided sighting %s stored; the decision stands", actor.username, sighting.id)
    return outcome_of(sighting, vote, applied)


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
    check_vote(decision, individual_id, comment)
    lock_for_write(session)
    actor = acting_user(session, user, action="vote")
    sighting = locked_sighting(session, sighting_id)
    return vote_locked(session, sighting, actor, decision, individual_id, comment, config, on_gallery_change)


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
    sighting = locked_sighting(session, sighting_id)
    if sighting.status == "decided":
        code = session.get(Individual, sighting.decided_individual_id)
        raise AlreadyDecided(
            f"Sighting {sighting_id} was already decided ({sighting.decision}"
            f"{', ' + code.code if code is not None else ''}); use curation to move the photo instead."
        )
    check_vote(decision, individual_id, "")
    if decision == "unsure":
        raise ReviewError("A decision must be 'same' or 'new'.")
    _apply(session, sighting, decision, individual_id, actor, config, on_gallery_change, how="admin")
    return outcome_of(sighting, None, True)
