"""The audit log as people read it: who did what, to which individual, and whether it can be undone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from core.review.curation import UNDOABLE
from core.store.audit import entries_for_individual
from core.store.models import AuditLog, Individual, User


@dataclass(frozen=True)
class AuditRow:
    id: int
    when: datetime
    user: str
    action: str
    target: str
    summary: str
    undoable: bool
    undone_by: int | None


def _summary(entry: AuditLog, codes: Mapping[int, str]) -> str:
    payload = entry.payload or {}
    before, after = payload.get("before"), payload.get("after")
    action = entry.action
    if action == "individual.merge":
        moved = len(payload.get("photo_ids", []))
        return f"merged {payload.get('source_code')} into {payload.get('target_code')} ({moved} photos)"
    if action == "individual.split":
        return f"split {len(payload.get('photo_ids', []))} photos into {payload.get('target_code')}"
    if action == "photo.move" and isinstance(before, dict) and isinstance(after, dict):
        origin, destination = codes.get(before.get("individual_id"), "—"), codes.get(after.get("individual_id"), "—")
        return f"moved from {origin} to {destination}"
    if action == "sighting.decide":
        return f"decided {payload.get('decision')} → {payload.get('code')} ({payload.get('how')})"
    if action == "sighting.vote" and isinstance(after, dict):
        who = codes.get(after.get("individual_id")) if after.get("individual_id") else ""
        return f"voted {after.get('decision')} {who}".strip()
    if isinstance(before, dict) and isinstance(after, dict):
        changed = [f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in after if before.get(k) != after.get(k)]
        return "; ".join(changed)[:200]
    if isinstance(after, dict):
        return ", ".join(f"{k}: {v}" for k, v in after.items() if k != "candidates")[:200]
    return ""


def _target_label(entry: AuditLog, codes: Mapping[int, str]) -> str:
    if entry.target_type == "individual" and entry.target_id is not None:
        return f"individual {codes.get(entry.target_id, entry.target_id)}"
    return f"{entry.target_type} {entry.target_id}"


def audit_rows(
    session: Session, *, individual_id: int | None = None, user_id: int | None = None, limit: int = 100
) -> list[AuditRow]:
    """Newest first, with who did it, a one-line summary, and whether it can still be undone."""
    if individual_id is not None:
        entries = list(entries_for_individual(session, individual_id, newest_first=True, limit=limit))
    else:
        query = select(AuditLog).order_by(col(AuditLog.created_at).desc(), col(AuditLog.id).desc()).limit(limit)
        if user_id is not None:
            query = query.where(AuditLog.user_id == user_id)
        entries = list(session.exec(query).all())
    ids = [e.id for e in entries]
    undone = dict(session.exec(select(AuditLog.reverts_id, AuditLog.id).where(col(AuditLog.reverts_id).in_(ids))).all())
    users = usernames(session)
    codes = individual_codes(session)
    return [
        AuditRow(
            id=e.id,  # type: ignore[arg-type]
            when=e.created_at,
            user=users.get(e.user_id, "system") if e.user_id is not None else "system",
            action=e.action,
            target=_target_label(e, codes),
            summary=_summary(e, codes),
            undoable=e.action in UNDOABLE and e.id not in undone,
            undone_by=undone.get(e.id),
        )
        for e in entries
    ]


def usernames(session: Session) -> dict[int, str]:
    return {u.id: u.username for u in session.exec(select(User)).all() if u.id is not None}


def individual_codes(session: Session) -> dict[int, str]:
    return {i.id: i.code for i in session.exec(select(Individual)).all() if i.id is not None}
