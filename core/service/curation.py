"""Curation for admins: edit, retire, merge, split, move and remove, each audited and (where it can be)
undoable; the audit history with undo."""

from __future__ import annotations

from collections.abc import Sequence

from core.review import curation
from core.review.curation import UNDOABLE
from core.service.app import App
from core.service.history import AuditRow, audit_rows
from core.store.models import AuditLog, Individual, User

__all__ = [
    "UNDOABLE",
    "history",
    "individual",
    "merge",
    "move_photos",
    "remove_photos",
    "retire",
    "save_individual",
    "split_off",
    "undo",
]


def individual(app: App, individual_id: int) -> Individual | None:
    with app.session() as session:
        return session.get(Individual, individual_id)


def save_individual(
    app: App, user: User, individual_id: int, *, name: str, code: str, species: str, notes: str
) -> list[AuditLog]:
    """Change what differs (name and code, species, notes) in one transaction; no change, no entry."""
    with app.session() as session:
        current = session.get(Individual, individual_id)
        if current is None:
            return []
        entries = []
        if (name.strip() or None) != current.name or code.strip() != current.code:
            entries.append(curation.rename(session, user, individual_id, name, code=code))
        if species.strip() != current.species:
            entries.append(curation.set_species(session, user, individual_id, species))
        if notes != current.notes:
            entries.append(curation.edit_notes(session, user, individual_id, notes))
        return entries


def retire(app: App, user: User, individual_id: int) -> AuditLog:
    with app.session() as session:
        result = curation.retire(session, user, individual_id)
    app.gallery_changed()
    return result


def merge(app: App, user: User, source_id: int, target_id: int) -> AuditLog:
    with app.session() as session:
        result = curation.merge(session, user, source_id, target_id)
    app.gallery_changed()
    return result


def split_off(app: App, user: User, individual_id: int, photo_ids: Sequence[int], name: str | None) -> AuditLog:
    """The photos become a new individual (the next code)."""
    with app.session() as session:
        result = curation.split(session, user, individual_id, list(photo_ids), name=name, config=app.settings.review)
    app.gallery_changed()
    return result


def move_photos(app: App, user: User, individual_id: int, photo_ids: Sequence[int], target_id: int) -> AuditLog:
    """One photo is moved; several are split into the other individual (one undoable entry either way)."""
    with app.session() as session:
        if len(photo_ids) == 1:
            result = curation.move_photo(session, user, photo_ids[0], target_id)
        else:
            result = curation.split(session, user, individual_id, list(photo_ids), into=target_id)
    app.gallery_changed()
    return result


def remove_photos(app: App, user: User, photo_ids: Sequence[int]) -> list[AuditLog]:
    with app.session() as session:
        result = [curation.remove_photo(session, user, photo_id) for photo_id in photo_ids]
    app.gallery_changed()
    return result


def undo(app: App, user: User, entry_id: int) -> AuditLog:
    with app.session() as session:
        result = curation.undo(session, user, entry_id)
    app.gallery_changed()
    return result


def history(app: App, limit: int = 300) -> list[AuditRow]:
    with app.session() as session:
        return audit_rows(session, limit=limit)
