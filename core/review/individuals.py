"""Individuals as the review sees them: found by code or id, checked to be active, and new ones numbered
by the configured code pattern inside the serialised write transaction (retrying on the unique code)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.review.rules import CodePattern, ReviewError
from core.store.audit import ROW_LOCK, lock_for_write
from core.store.gallery import resolve_merged
from core.store.models import (
    Individual,
)

log = logging.getLogger(__name__)

__all__ = [
    "create_next_individual",
    "get_individual",
    "next_code",
]


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


class InactiveTarget(ReviewError):
    """The individual a photo should join is retired (or its merge chain ends in one that is)."""


def active_target(session: Session, individual_id: int, *, lock: bool = False) -> Individual:
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
        raise InactiveTarget(
            f"Individual {individual.code} is {individual.status}; photos can only join an active individual."
        )
    return individual


def next_code(session: Session, pattern: str) -> str:
    """The code after the highest existing one of ``pattern``: max + 1 from 1; gaps are never reused."""
    parsed = CodePattern(pattern)
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
