"""The home page's counts and a volunteer's recent sightings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from core.review.sightings import count_sightings, review_queue
from core.service.app import App
from core.service.history import usernames
from core.store.gallery import resolve_merged
from core.store.models import Individual, Photo, Sighting, User, Vote


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


def home(app: App, user: User) -> tuple[Dashboard, list[SightingRow]]:
    """The counts and the user's ten latest sightings."""
    with app.session() as session:
        return dashboard(session, user), sighting_rows(session, submitted_by=user.id, limit=10)


def counts(app: App, user: User) -> Dashboard:
    with app.session() as session:
        return dashboard(session, user)


def decided_sightings(app: App, limit: int = 30) -> list[SightingRow]:
    with app.session() as session:
        return sighting_rows(session, status="decided", limit=limit)
