"""Tag numbers and alternate ids of individuals: flipper tags, PIT tags and other catalogues' ids.

Why: a turtle that was tagged on a nesting beach is known there by its flipper or PIT tag, and other
catalogues know it by their own id; a coordinator looks an animal up by those numbers, and two
individuals with the same tag would mean one animal counted twice. So a tag (kind + value) names one
individual only, checked case-insensitively ("ab123" and "AB123" are one tag as typed on field sheets),
and every add and remove is audited. Reviewers and admins edit tags; a merge hands the merged
individual's tags to the survivor (:func:`core.review.curation.merge`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlmodel import Session, col, select

from core.review.individuals import get_individual
from core.review.rules import ReviewError
from core.review.users import acting_user
from core.safe_text import check_text
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.fieldwork import TAG_KINDS, IndividualTag
from core.store.models import AuditLog, Individual, User

log = logging.getLogger(__name__)

__all__ = [
    "EDITOR_ROLES",
    "KIND_LABELS",
    "MAX_TAG_LENGTH",
    "SEPARATOR",
    "TAG_KINDS",
    "TagError",
    "add_tag",
    "attach_imported",
    "check_tag",
    "duplicate_in",
    "individuals_tagged",
    "remove_tag",
    "split_cell",
    "tags_by_individual",
    "tags_of",
]

MAX_TAG_LENGTH = 128
EDITOR_ROLES = ("reviewer", "admin")
KIND_LABELS: dict[str, str] = {"flipper": "flipper tag", "pit": "PIT tag", "alternate": "alternate id"}


class TagError(ReviewError):
    """A tag that cannot be added or removed as asked; nothing was changed."""


def check_tag(kind: object, value: object) -> tuple[str, str]:
    """``(kind, value)`` with the value trimmed, or :class:`TagError` saying what is wrong."""
    if not isinstance(kind, str) or kind.strip().lower() not in TAG_KINDS:
        raise TagError(f"{kind!r} is not a kind of tag; choose one of {', '.join(TAG_KINDS)}.")
    kind = kind.strip().lower()
    label = KIND_LABELS[kind]
    try:
        text = check_text(value, label).strip()
    except ValueError as exc:
        raise TagError(str(exc)) from None
    if not text:
        raise TagError(f"The {label} is empty; type its number or id.")
    if len(text) > MAX_TAG_LENGTH:
        raise TagError(f"The {label} is too long: at most {MAX_TAG_LENGTH} characters.")
    if SEPARATOR in text:
        raise TagError(f"The {label} may not contain {SEPARATOR!r}: it separates tags in the catalogue's CSV files.")
    if not text.isprintable():
        raise TagError(f"The {label} contains characters that cannot be printed; please retype it.")
    return kind, text


def _same(value: str) -> str:
    return value.casefold()


def _holder(session: Session, kind: str, value: str) -> IndividualTag | None:
    """The stored tag that is ``value`` of ``kind`` when case is ignored, if any."""
    wanted = _same(value)
    rows = session.exec(select(IndividualTag).where(IndividualTag.kind == kind)).all()
    return next((row for row in rows if _same(row.value) == wanted), None)


def _code(session: Session, individual_id: int) -> str:
    individual = session.get(Individual, individual_id)
    return individual.code if individual is not None else f"individual {individual_id}"


def _editable(session: Session, ref: int | str | Individual) -> Individual:
    try:
        individual = ref if isinstance(ref, Individual) else get_individual(session, ref)
    except ReviewError as exc:
        raise TagError(str(exc)) from None
    locked = session.get(Individual, individual.id, with_for_update=ROW_LOCK, populate_existing=True)
    if locked is None:
        raise TagError(f"There is no individual {individual.code}.")
    if locked.status == "merged":
        target = _code(session, locked.merged_into_id) if locked.merged_into_id else "another individual"
        raise TagError(f"{locked.code} was merged into {target}; edit the tags of {target} instead.")
    return locked


def add_tag(session: Session, user: User, individual: int | str | Individual, kind: str, value: str) -> AuditLog:
    """Give ``individual`` a tag; refused when any individual already has it (the message names which)."""
    actor = acting_user(session, user, *EDITOR_ROLES, action="edit tags")
    kind, value = check_tag(kind, value)
    lock_for_write(session)
    target = _editable(session, individual)
    holder = _holder(session, kind, value)
    if holder is not None:
        who = _code(session, holder.individual_id)
        same = " already" if holder.individual_id == target.id else ""
        raise TagError(f"The {KIND_LABELS[kind]} {holder.value} is{same} on {who}; a tag names one individual only.")
    tag = IndividualTag(individual_id=target.id, kind=kind, value=value)  # type: ignore[arg-type]
    session.add(tag)
    session.flush()
    log.info("%s tagged %s with %s %s", actor.username, target.code, kind, value)
    return record(session, actor, "individual.tag_add", target, before=None, after={"kind": kind, "value": value})


def remove_tag(session: Session, user: User, individual: int | str | Individual, kind: str, value: str) -> AuditLog:
    """Take a tag off ``individual`` (case-insensitive match); refused when it does not have it."""
    actor = acting_user(session, user, *EDITOR_ROLES, action="edit tags")
    kind, value = check_tag(kind, value)
    lock_for_write(session)
    target = _editable(session, individual)
    holder = _holder(session, kind, value)
    if holder is None or holder.individual_id != target.id:
        raise TagError(f"{target.code} has no {KIND_LABELS[kind]} {value}.")
    stored = holder.value
    session.delete(holder)
    session.flush()
    log.info("%s removed %s %s from %s", actor.username, kind, stored, target.code)
    return record(session, actor, "individual.tag_remove", target, before={"kind": kind, "value": stored}, after=None)


def tags_of(session: Session, individual_id: int) -> list[IndividualTag]:
    """The individual's tags, by kind (flipper, PIT, alternate) and then value."""
    rows = session.exec(select(IndividualTag).where(IndividualTag.individual_id == individual_id)).all()
    return sorted(rows, key=lambda t: (TAG_KINDS.index(t.kind) if t.kind in TAG_KINDS else 99, _same(t.value)))


def tags_by_individual(session: Session) -> dict[int, dict[str, list[str]]]:
    """Every individual's tags: individual id -> kind -> values (sorted), for exports."""
    out: dict[int, dict[str, list[str]]] = {}
    rows = session.exec(select(IndividualTag).order_by(col(IndividualTag.kind), col(IndividualTag.value))).all()
    for row in rows:
        out.setdefault(row.individual_id, {}).setdefault(row.kind, []).append(row.value)
    return out


def individuals_tagged(session: Session, text: str) -> set[int]:
    """Individuals with a tag whose value contains ``text`` (case-insensitive); empty text finds none."""
    needle = _same(text.strip())
    if not needle:
        return set()
    rows = session.exec(select(IndividualTag.individual_id, IndividualTag.value)).all()
    return {individual_id for individual_id, value in rows if needle in _same(value)}


def duplicate_in(session: Session, wanted: Sequence[tuple[str, str, str]]) -> tuple[int, str] | None:
    """For an import: the first tag of ``(kind, value, code)`` triples that would name two individuals, as
    ``(its index, a sentence)``, or None. Either the triples give it to two codes, or the database has it on an
    individual with another code. The caller says where it was found (the row) and imports nothing.
    """
    seen: dict[tuple[str, str], str] = {}
    stored = {(row.kind, _same(row.value)): row.individual_id for row in session.exec(select(IndividualTag)).all()}
    for index, (kind, value, code) in enumerate(wanted):
        key = (kind, _same(value))
        if key in seen and seen[key] != code:
            return index, f"the {KIND_LABELS[kind]} {value} is also given to {seen[key]}"
        seen[key] = code
        if key in stored and (holder := _code(session, stored[key])) != code:
            return index, f"the {KIND_LABELS[kind]} {value} is already on {holder}"
    return None


def attach_imported(session: Session, individual_id: int, kind: str, value: str) -> bool:
    """Give an imported individual a tag it lacks (checked first with :func:`duplicate_in`); False if it has it.

    Not audited one by one: the import's own audit entry counts the tags it added.
    """
    holder = _holder(session, kind, value)
    if holder is not None:
        if holder.individual_id != individual_id:
            raise TagError(f"The {KIND_LABELS[kind]} {holder.value} is on {_code(session, holder.individual_id)}.")
        return False
    session.add(IndividualTag(individual_id=individual_id, kind=kind, value=value))
    session.flush()
    return True


SEPARATOR = ";"
"""Between the tags of one kind in a CSV cell (``flipper_tags``: ``AB123;AB124``); never inside a tag."""


def split_cell(text: str) -> list[str]:
    """The tags of one CSV cell: split at ``;``, trimmed, empty pieces left out."""
    return [piece.strip() for piece in text.split(SEPARATOR) if piece.strip()]
