"""Tag numbers and alternate ids as the Gallery shows and edits them, and the gallery's search by tag."""

from __future__ import annotations

from dataclasses import dataclass

from core.review import tags
from core.review.tags import EDITOR_ROLES, KIND_LABELS, TAG_KINDS
from core.service.app import App
from core.store.models import AuditLog, User

__all__ = ["EDITOR_ROLES", "KIND_LABELS", "TAG_KINDS", "TagRow", "add", "can_edit", "matching", "remove", "tags_of"]


@dataclass(frozen=True)
class TagRow:
    kind: str  # flipper, pit or alternate
    label: str  # "flipper tag", "PIT tag", "alternate id"
    value: str


def can_edit(role: str | None) -> bool:
    return role in EDITOR_ROLES


def tags_of(app: App, individual_id: int) -> list[TagRow]:
    with app.session() as session:
        return [TagRow(t.kind, KIND_LABELS.get(t.kind, t.kind), t.value) for t in tags.tags_of(session, individual_id)]


def add(app: App, user: User, individual_id: int, kind: str, value: str) -> AuditLog:
    with app.session() as session:
        return tags.add_tag(session, user, individual_id, kind, value)


def remove(app: App, user: User, individual_id: int, kind: str, value: str) -> AuditLog:
    with app.session() as session:
        return tags.remove_tag(session, user, individual_id, kind, value)


def matching(app: App, text: str) -> set[int]:
    """Ids of individuals with a tag containing ``text`` (the gallery's search box finds them by tag)."""
    if not text.strip():
        return set()
    with app.session() as session:
        return tags.individuals_tagged(session, text)
