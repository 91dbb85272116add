"""Each user's inbox, and the individuals they follow: how volunteers hear back about their photos.

A volunteer who never learns what became of their turtle stops sending photos (Happywhale's lesson), so
every decision tells the people concerned: the submitter ("your encounter of 2026-05-01 was confirmed as
T-0042"), everyone who proposed an answer (and whether the decision agreed) and the followers of the
individual ("T-0042 was seen again"). :func:`notify_decision` and :func:`notify_conflict` are called by
``core.review.votes`` inside the decision's own transaction, so a refused decision leaves no message behind.
An encounter of several photos is decided photo by photo; each person still gets one message per encounter.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, func, select

from core.review.individuals import get_individual
from core.review.rules import ReviewError
from core.review.users import acting_user
from core.store.audit import record
from core.store.columns import utc_now
from core.store.feedback import Follow, Notification
from core.store.fieldwork import Encounter
from core.store.models import Individual, Sighting, User, Vote

#: What a message is about (``Notification.kind``).
CONFIRMED, NEW_INDIVIDUAL, CONFLICT, PROPOSAL, SEEN_AGAIN = (
    "confirmed",
    "new_individual",
    "conflict",
    "proposal",
    "seen_again",
)
KINDS: tuple[str, ...] = (CONFIRMED, NEW_INDIVIDUAL, CONFLICT, PROPOSAL, SEEN_AGAIN)
INBOX_LIMIT = 200  # the newest messages a page shows; older ones stay stored


def notify(
    session: Session,
    user_id: int,
    kind: str,
    message: str,
    encounter_id: int | None = None,
    individual_id: int | None = None,
) -> Notification:
    """Add one message to ``user_id``'s inbox, in the caller's transaction."""
    if kind not in KINDS:
        raise ReviewError(f"{kind!r} is not a kind of message; use one of {', '.join(KINDS)}.")
    note = Notification(
        user_id=user_id, kind=kind, message=message, encounter_id=encounter_id, individual_id=individual_id
    )
    session.add(note)
    session.flush()
    return note


def inbox(session: Session, user_id: int, unread_only: bool = False, limit: int = INBOX_LIMIT) -> list[Notification]:
    """The user's messages, newest first."""
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(col(Notification.read_at).is_(None))
    query = query.order_by(col(Notification.created_at).desc(), col(Notification.id).desc()).limit(limit)
    return list(session.exec(query).all())


def unread_count(session: Session, user_id: int) -> int:
    query = select(func.count()).where(Notification.user_id == user_id, col(Notification.read_at).is_(None))
    return int(session.exec(query).one())


def mark_read(session: Session, user_id: int, ids: Iterable[int] | None = None) -> int:
    """Mark the user's messages ``ids`` (all when None) read; another user's ids are ignored. Returns how many."""
    query = select(Notification).where(Notification.user_id == user_id, col(Notification.read_at).is_(None))
    if ids is not None:
        wanted = [int(i) for i in ids]
        if not wanted:
            return 0
        query = query.where(col(Notification.id).in_(wanted))
    now = utc_now()
    notes = list(session.exec(query).all())
    for note in notes:
        note.read_at = now
        session.add(note)
    session.flush()
    return len(notes)


# --- following individuals ---------------------------------------------------------------------------


def is_following(session: Session, user_id: int, individual_id: int) -> bool:
    return session.get(Follow, (user_id, individual_id)) is not None


def follow(session: Session, user: User | int, individual_id: int) -> bool:
    """Follow an individual (a merged one: the individual it was merged into); False if already following."""
    actor = acting_user(session, user, action="follow an individual")
    target = get_individual(session, individual_id, follow_merged=True)
    if is_following(session, actor.id, target.id):  # type: ignore[arg-type]
        return False
    session.add(Follow(user_id=actor.id, individual_id=target.id))  # type: ignore[arg-type]
    session.flush()
    record(session, actor, "individual.follow", target, before=None, after={"following": True})
    return True


def unfollow(session: Session, user: User | int, individual_id: int) -> bool:
    """Stop following; False if the user was not following it."""
    actor = acting_user(session, user, action="unfollow an individual")
    row = session.get(Follow, (actor.id, individual_id))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    record(session, actor, "individual.unfollow", ("individual", individual_id), before={"following": True}, after=None)
    return True


def followers(session: Session, individual_id: int) -> list[int]:
    """Who follows this individual, or one that was merged into it."""
    merged = select(Individual.id).where(Individual.merged_into_id == individual_id)
    query = select(Follow.user_id).where(
        (Follow.individual_id == individual_id) | col(Follow.individual_id).in_(merged)
    )
    return sorted(set(session.exec(query).all()))


# --- messages on decisions ---------------------------------------------------------------------------


def _encounter_date(session: Session, sighting: Sighting) -> str:
    encounter = session.get(Encounter, sighting.encounter_id) if sighting.encounter_id is not None else None
    when = (
        (encounter.taken_at if encounter is not None else None)
        or sighting.taken_at
        or (encounter.created_at if encounter is not None else None)
        or sighting.created_at
    )
    return when.date().isoformat()


def _already(session: Session, user_id: int, kind: str, sighting: Sighting) -> bool:
    """Whether this user already has this message about this encounter (another photo of it was decided)."""
    if sighting.encounter_id is None:
        return False
    query = select(Notification.id).where(
        Notification.user_id == user_id, Notification.kind == kind, Notification.encounter_id == sighting.encounter_id
    )
    return session.exec(query).first() is not None


def _once(
    session: Session, user_id: int, kind: str, message: str, sighting: Sighting, individual_id: int | None
) -> None:
    if not _already(session, user_id, kind, sighting):
        notify(session, user_id, kind, message, sighting.encounter_id, individual_id)


def notify_decision(session: Session, sighting: Sighting, decision: str, target: Individual) -> None:
    """Tell the submitter, the proposers and the followers what was decided (called by ``votes``)."""
    date = _encounter_date(session, sighting)
    code = target.code
    submitter = sighting.submitted_by
    if decision == "new":
        text = f"Your encounter of {date} was recorded as a new individual {code}."
        _once(session, submitter, NEW_INDIVIDUAL, text, sighting, target.id)
    else:
        text = f"Your encounter of {date} was confirmed as {code}."
        _once(session, submitter, CONFIRMED, text, sighting, target.id)
    for vote in session.exec(select(Vote).where(Vote.sighting_id == sighting.id).order_by(col(Vote.id))).all():
        if vote.user_id == submitter or vote.decision not in ("same", "new"):
            continue
        if vote.decision == "new":
            proposed, agreed = "a new individual", decision == "new"
        else:
            named = session.get(Individual, vote.individual_id)
            same = get_individual(session, vote.individual_id, follow_merged=True) if named is not None else None  # type: ignore[arg-type]
            proposed = named.code if named is not None else "an individual no longer in the gallery"
            agreed = decision == "same" and same is not None and same.id == target.id
        verdict = "as you proposed" if agreed else f"you proposed {proposed}"
        text = f"The encounter of {date} you reviewed was decided as {code} ({verdict})."
        _once(session, vote.user_id, PROPOSAL, text, sighting, target.id)
    if decision == "same":
        author = session.get(User, submitter)
        who = author.username if author is not None else "someone"
        for user_id in followers(session, target.id):  # type: ignore[arg-type]
            if user_id != submitter:
                text = f"{code} was seen again (encounter of {date}, by {who})."
                _once(session, user_id, SEEN_AGAIN, text, sighting, target.id)


def notify_conflict(session: Session, sighting: Sighting) -> None:
    """Tell the submitter that the votes on their encounter disagree, so an admin decides."""
    date = _encounter_date(session, sighting)
    text = f"Your encounter of {date} was found to be a conflict: the reviewers disagree, so an admin will decide."
    _once(session, sighting.submitted_by, CONFLICT, text, sighting, None)
