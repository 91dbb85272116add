"""The audit log: every decision and curation action with who, when, on what, and before/after.

Entries are only ever added, never changed or deleted; an undo is a new entry whose ``reverts_id``
names the entry it reverted (unique, so nothing is undone twice). Each entry is linked to every
individual it concerns (a merge concerns two), so the history of one animal is one indexed query.

Every audited write runs as a serialised writer; :func:`lock_for_write` and :data:`ROW_LOCK`, shared by
users, review and curation, live here because this is the module all of them build on.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from core.store.models import AuditIndividual, AuditLog, Individual, Photo, Sighting, User, Vote

log = logging.getLogger(__name__)

__all__ = [
    "ROW_LOCK",
    "AuditLog",
    "entries_for_individual",
    "entries_for_target",
    "entries_for_user",
    "lock_for_write",
    "record",
]

_PG_WRITER_LOCK_KEY = 0x5C07E + 3  # advisory lock serialising audited writers across processes

ROW_LOCK = {"key_share": True}
"""``FOR NO KEY UPDATE`` on PostgreSQL: serialises writers of a row without blocking inserts that merely
reference it (a vote or audit link naming an individual); plain ``FOR UPDATE`` would deadlock there."""

_TARGET_TYPES: dict[type[SQLModel], str] = {
    Individual: "individual",
    Photo: "photo",
    Sighting: "sighting",
    User: "user",
    Vote: "vote",
}
Target = SQLModel | tuple[str, int | None]
"""What an entry is about: a stored row, or ``(type name, id)``."""


def lock_for_write(session: Session) -> None:
    """Make this session's transaction a serialised writer from now until it commits or rolls back.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock up front (other writers wait for the busy timeout)
    unless the transaction already holds it, i.e. has already written. PostgreSQL: a transaction-level
    advisory lock does the same. Row locks alone are not enough there: a vote locks its sighting and
    then the individual it decides for, a merge locks individuals and then their sightings, and two
    such orders deadlock. The callers still lock the rows they change (:data:`ROW_LOCK`).
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITER_LOCK_KEY})")
        return
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: datetimes become ISO 8601 text, tuples and sets become lists.

    Anything else that JSON cannot hold raises TypeError here, rather than failing at commit time.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [jsonable(item) for item in items]
    raise TypeError(f"cannot store {type(value).__name__} in the audit log: {value!r}")


def _target(target: Target) -> tuple[str, int | None]:
    if isinstance(target, tuple):
        kind, ident = target
        return str(kind), ident
    kind = _TARGET_TYPES.get(type(target))
    if kind is None:
        raise TypeError(f"no audit target type for {type(target).__name__}")
    return kind, target.id  # type: ignore[attr-defined]


def record(
    session: Session,
    user: User | None,
    action: str,
    target: Target,
    before: Any,
    after: Any,
    *,
    individuals: Iterable[int | None] = (),
    reverts: AuditLog | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Add one entry (flushed, in the caller's transaction) and link it to the individuals concerned.

    ``user`` None means the system itself (only the creation of the first account). The target counts
    as concerned when it is an individual. ``extra`` goes into the payload beside ``before``/``after``
    (e.g. what an undo needs that is neither).
    """
    kind, target_id = _target(target)
    payload: dict[str, Any] = {"before": jsonable(before), "after": jsonable(after)}
    if extra:
        payload.update({key: jsonable(value) for key, value in extra.items() if key not in payload})
    entry = AuditLog(
        user_id=user.id if user is not None else None,
        action=action,
        target_type=kind,
        target_id=target_id,
        payload=payload,
        reverts_id=reverts.id if reverts is not None else None,
    )
    session.add(entry)
    session.flush()
    concerned = {ident for ident in individuals if ident is not None}
    if kind == "individual" and target_id is not None:
        concerned.add(target_id)
    for individual_id in sorted(concerned):
        session.add(AuditIndividual(audit_log_id=entry.id, individual_id=individual_id))  # type: ignore[arg-type]
    session.flush()
    log.debug("Audit %s: %s %s %s by user %s", entry.id, action, kind, target_id, entry.user_id)
    return entry


def _ordered(query: Any, newest_first: bool, limit: int | None) -> Any:
    order = (
        (col(AuditLog.created_at).desc(), col(AuditLog.id).desc())
        if newest_first
        else (
            col(AuditLog.created_at),
            col(AuditLog.id),
        )
    )
    query = query.order_by(*order)
    return query.limit(limit) if limit is not None else query


def entries_for_individual(
    session: Session, individual_id: int, *, newest_first: bool = False, limit: int | None = None
) -> Sequence[AuditLog]:
    """Everything that concerned one individual: decisions that added photos, merges, splits, moves, ..."""
    query = (
        select(AuditLog)
        .join(AuditIndividual, col(AuditIndividual.audit_log_id) == col(AuditLog.id))
        .where(AuditIndividual.individual_id == individual_id)
    )
    return session.exec(_ordered(query, newest_first, limit)).all()


def entries_for_user(
    session: Session, user_id: int, *, newest_first: bool = False, limit: int | None = None
) -> Sequence[AuditLog]:
    """Everything one user did."""
    query = select(AuditLog).where(AuditLog.user_id == user_id)
    return session.exec(_ordered(query, newest_first, limit)).all()


def entries_for_target(
    session: Session,
    target_type: str,
    target_id: int,
    *,
    newest_first: bool = False,
    limit: int | None = None,
) -> Sequence[AuditLog]:
    """Everything recorded about one row, e.g. ``("photo", 17)`` or ``("sighting", 3)``."""
    query = select(AuditLog).where(AuditLog.target_type == target_type, AuditLog.target_id == target_id)
    return session.exec(_ordered(query, newest_first, limit)).all()
