"""The Inbox page's data: a user's messages with what they point at, read state, and following individuals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import col, select

from core.review import inbox
from core.service.app import App
from core.store.models import Individual, Photo, Sighting, User


@dataclass(frozen=True)
class Message:
    """One inbox message as the page shows it; ``code`` is the individual's current code (merges followed)."""

    id: int
    kind: str
    text: str
    when: datetime
    read: bool
    encounter_id: int | None
    code: str | None
    photos: tuple[tuple[Path, tuple[float, float, float, float] | None, int], ...]  # the encounter's photos


def _current_code(individual: Individual | None, by_id: dict[int, Individual]) -> str | None:
    seen = 0
    while individual is not None and individual.merged_into_id is not None and seen < 32:
        individual, seen = by_id.get(individual.merged_into_id), seen + 1
    return individual.code if individual is not None else None


def messages(app: App, user: User, unread_only: bool = False) -> list[Message]:
    """The user's newest messages (read ones too unless ``unread_only``)."""
    with app.session() as session:
        notes = inbox.inbox(session, user.id, unread_only=unread_only)  # type: ignore[arg-type]
        by_id = {i.id: i for i in session.exec(select(Individual)).all()}
        encounter_ids = {n.encounter_id for n in notes if n.encounter_id is not None}
        rows = session.exec(
            select(Sighting.encounter_id, Photo)
            .join(Photo, col(Photo.id) == Sighting.photo_id)
            .where(col(Sighting.encounter_id).in_(encounter_ids))
            .order_by(col(Sighting.id))
        ).all()
        photos: dict[int, list[tuple[Path, tuple[float, float, float, float] | None, int]]] = {}
        for encounter_id, photo in rows:
            photos.setdefault(encounter_id, []).append((app.store.path(photo.path), photo.crop, photo.rotation))  # type: ignore[arg-type]
        return [
            Message(
                id=n.id,  # type: ignore[arg-type]
                kind=n.kind,
                text=n.message,
                when=n.created_at,
                read=n.read_at is not None,
                encounter_id=n.encounter_id,
                code=_current_code(by_id.get(n.individual_id), by_id) if n.individual_id is not None else None,
                photos=tuple(photos.get(n.encounter_id, ())) if n.encounter_id is not None else (),
            )
            for n in notes
        ]


def unread(app: App, user: User) -> int:
    with app.session() as session:
        return inbox.unread_count(session, user.id)  # type: ignore[arg-type]


def mark_read(app: App, user: User, ids: list[int] | None = None) -> int:
    """Mark these messages (all when None) read; returns how many were unread."""
    with app.session() as session:
        return inbox.mark_read(session, user.id, ids)  # type: ignore[arg-type]


def following(app: App, user: User, individual_id: int) -> bool:
    with app.session() as session:
        return inbox.is_following(session, user.id, individual_id)  # type: ignore[arg-type]


def set_following(app: App, user: User, individual_id: int, follow: bool) -> bool:
    """Follow or unfollow; True when that changed something."""
    with app.session() as session:
        if follow:
            return inbox.follow(session, user, individual_id)
        return inbox.unfollow(session, user, individual_id)
