"""Gallery curation by admins: rename, notes, merge, split, move, remove, retire, and undo.

Every action checks that the acting user is an active admin, runs as a serialised writer
(:func:`core.store.audit.lock_for_write`, plus row locks on PostgreSQL: ``FOR NO KEY UPDATE``), and
adds one audit entry with the state before and after. Each function returns that entry; its id is what
:func:`undo` takes. Nothing is ever deleted: a merged individual keeps its row (status ``merged``,
``merged_into_id`` set, its code resolvable with :func:`core.store.gallery.resolve_merged`), a removed photo
keeps its file and history and only leaves the search, and a retired individual stays listed.

Tags (flipper, PIT, alternate ids) follow the animal: a merge hands the merged individual's tags to the
survivor and its undo gives back those still there; a split leaves them where they were.

Sightings follow their photos: when a photo changes individual, so does the ``decided_individual_id``
of the sighting that brought it in, so the exported capture history stays consistent with the gallery.

Undo restores the state recorded in the entry, provided that state is still what the entry left
behind; otherwise it refuses and says so (undo the later change first). Undoing a merge also takes back
what was decided into the merged individual meanwhile: a sighting decided while ``A`` was merged into
``B`` whose votes (or admin) named ``A`` goes back to ``A`` with its photo; one whose votes named ``B``
stays; one whose votes named both (they only agreed because of the merge) stays on ``B`` and the undo
entry lists it under ``sightings_kept``, for an admin to move. An admin's move of a pending sighting's
photo is a curation the votes may not silently undo: :func:`moved_owner` tells the consensus, which sends
a disagreeing sighting to an admin as a conflict instead of applying it. An entry is undone at most
once (the database enforces it). Codes are never reused: a split that created ``T-0044`` and is
undone leaves ``T-0044`` retired and empty.

Over 500 lines because each action and its undo are kept side by side: reading one without the other
is how an undo drifts out of step with what it reverts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from core.errors import ScuteError
from core.review.individuals import create_next_individual, get_individual
from core.review.rules import MAX_NAME_LENGTH, MAX_NOTES_LENGTH, ReviewConfig
from core.review.users import acting_user
from core.safe_text import check_text
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.fieldwork import IndividualTag
from core.store.gallery import normalize_code, resolve_merged
from core.store.models import AuditLog, Individual, Photo, Sighting, User

log = logging.getLogger(__name__)

__all__ = [
    "UNDOABLE",
    "CurationError",
    "IndividualRef",
    "edit_notes",
    "merge",
    "move_photo",
    "moved_owner",
    "remove_photo",
    "rename",
    "retire",
    "set_species",
    "split",
    "undo",
]

IndividualRef = int | str | Individual
"""An individual given by id, by code, or as a row."""


class CurationError(ScuteError):
    """A curation action that cannot be carried out as asked; nothing was changed."""


# --- helpers ---------------------------------------------------------------------------------------


def _admin(session: Session, user: User, action: str) -> User:
    lock_for_write(session)
    return acting_user(session, user, "admin", action=action)


def _ref_id(session: Session, ref: IndividualRef) -> int:
    if isinstance(ref, Individual):
        if ref.id is None:
            raise CurationError("That individual has not been saved yet.")
        return ref.id
    try:
        return get_individual(session, ref).id  # type: ignore[return-value]
    except ScuteError as exc:
        raise CurationError(str(exc)) from exc


Row = TypeVar("Row", Individual, Photo, Sighting)


def _locked_by_id(session: Session, model: type[Row], ids: Iterable[int]) -> dict[int, Row]:
    """Rows by id, re-read and locked in id order, so that two writers never wait on each other."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.exec(
        select(model)
        .where(col(model.id).in_(wanted))
        .order_by(col(model.id))
        .with_for_update(**ROW_LOCK)
        .execution_options(populate_existing=True)
    ).all()
    return {row.id: row for row in rows}  # type: ignore[misc]


def _lock_individuals(session: Session, *refs: IndividualRef) -> list[Individual]:
    """The individuals, locked (see :func:`_locked_by_id`), returned in ``refs`` order."""
    ids = [_ref_id(session, ref) for ref in refs]
    by_id = _locked_by_id(session, Individual, ids)
    return [by_id[ident] for ident in ids]


def _lock_photos(session: Session, photo_ids: Iterable[int]) -> dict[int, Photo]:
    ids = sorted(set(photo_ids))
    found = _locked_by_id(session, Photo, ids)
    missing = [ident for ident in ids if ident not in found]
    if missing:
        raise CurationError(f"There is no photo {', '.join(map(str, missing))}.")
    return found  # type: ignore[return-value]


def _photo_ids_of(session: Session, individual_id: int) -> list[int]:
    query = select(Photo.id).where(Photo.individual_id == individual_id).order_by(col(Photo.id))
    return [ident for ident in session.exec(query).all() if ident is not None]


def _sightings_of_photos(session: Session, photo_ids: Sequence[int], individual_id: int) -> list[Sighting]:
    """Decided sightings that brought these photos to ``individual_id``."""
    if not photo_ids:
        return []
    query = (
        select(Sighting)
        .where(col(Sighting.photo_id).in_(photo_ids), Sighting.decided_individual_id == individual_id)
        .order_by(col(Sighting.id))
        .with_for_update(**ROW_LOCK)
    )
    return list(session.exec(query).all())


def _reassign(session: Session, photos: Iterable[Photo], sightings: Iterable[Sighting], to_id: int | None) -> None:
    for photo in photos:
        photo.individual_id = to_id
        session.add(photo)
    for sighting in sightings:
        sighting.decided_individual_id = to_id
        session.add(sighting)
    session.flush()


def _require_active(individual: Individual, role: str) -> None:
    if individual.status != "active":
        raise CurationError(f"{individual.code} is {individual.status}; {role} must be an active individual.")


# --- individuals -----------------------------------------------------------------------------------


def rename(
    session: Session, user: User, individual: IndividualRef, name: str | None, *, code: str | None = None
) -> AuditLog:
    """Set an individual's display name (``None`` or blank clears it) and, optionally, its code.

    Changing a code is allowed but rarely wise: codes are written on field sheets; the old code is
    kept in the audit log.
    """
    actor = _admin(session, user, "rename individuals")
    (target,) = _lock_individuals(session, individual)
    new_name = (name or "").strip() or None
    if new_name is not None and len(new_name) > MAX_NAME_LENGTH:
        raise CurationError(f"The name is too long: at most {MAX_NAME_LENGTH} characters.")
    if new_name is not None:
        check_text(new_name, "name")
    new_code = target.code
    if code is not None:
        try:
            new_code = normalize_code(code)
        except ValueError as exc:
            raise CurationError(f"Invalid code: {exc}.") from exc
        clash = session.exec(
            select(Individual.id).where(Individual.code == new_code, Individual.id != target.id)
        ).first()
        if clash is not None:
            raise CurationError(f"The code {new_code} is already used by another individual.")
    before = {"name": target.name, "code": target.code}
    after = {"name": new_name, "code": new_code}
    if before == after:
        raise CurationError(f"{target.code} already has that name and code; nothing to change.")
    target.name, target.code = new_name, new_code
    session.add(target)
    session.flush()
    log.info("%s renamed %s: %s -> %s", actor.username, target.id, before, after)
    return record(session, actor, "individual.rename", target, before=before, after=after)


def edit_notes(session: Session, user: User, individual: IndividualRef, notes: str) -> AuditLog:
    """Replace an individual's notes."""
    actor = _admin(session, user, "edit notes")
    (target,) = _lock_individuals(session, individual)
    notes = notes or ""
    if len(notes) > MAX_NOTES_LENGTH:
        raise CurationError(f"The notes are too long: at most {MAX_NOTES_LENGTH} characters.")
    check_text(notes, "notes", multiline=True)
    before = {"notes": target.notes}
    target.notes = notes
    session.add(target)
    session.flush()
    return record(session, actor, "individual.notes", target, before=before, after={"notes": notes})


def set_species(session: Session, user: User, individual: IndividualRef, species: str) -> AuditLog:
    """Set an individual's species (blank clears it): one gallery may hold several species."""
    actor = _admin(session, user, "set species")
    (target,) = _lock_individuals(session, individual)
    species = (species or "").strip()
    if len(species) > MAX_NAME_LENGTH:
        raise CurationError(f"The species is too long: at most {MAX_NAME_LENGTH} characters.")
    check_text(species, "species")
    if species == target.species:
        raise CurationError(f"{target.code} already has that species; nothing to change.")
    before = {"species": target.species}
    target.species = species
    session.add(target)
    session.flush()
    return record(session, actor, "individual.species", target, before=before, after={"species": species})


def retire(session: Session, user: User, individual: IndividualRef) -> AuditLog:
    """Take an active individual out of the search (dead, left the area, ...); its photos stay."""
    actor = _admin(session, user, "retire individuals")
    (target,) = _lock_individuals(session, individual)
    _require_active(target, "the individual to retire")
    target.status = "retired"
    session.add(target)
    session.flush()
    log.info("%s retired %s", actor.username, target.code)
    return record(session, actor, "individual.retire", target, before={"status": "active"}, after={"status": "retired"})


def merge(session: Session, user: User, source: IndividualRef, target: IndividualRef) -> AuditLog:
    """Merge ``source`` into ``target``: its photos and decided sightings move, it becomes ``merged``.

    ``source`` may be active or retired; ``target`` (followed through earlier merges) must be active.
    The source's code stays resolvable to the target.
    """
    actor = _admin(session, user, "merge individuals")
    first, second = _lock_individuals(session, source, target)
    survivor = resolve_merged(session, second)
    if survivor.id != second.id:
        (second,) = _lock_individuals(session, survivor)
    if first.id == second.id:
        raise CurationError(f"{first.code} cannot be merged into itself.")
    if first.status == "merged":
        raise CurationError(f"{first.code} was already merged; undo that merge first.")
    _require_active(second, "the individual merged into")
    photo_ids = _photo_ids_of(session, first.id)  # type: ignore[arg-type]
    photos = _lock_photos(session, photo_ids)
    sightings = session.exec(
        select(Sighting)
        .where(Sighting.decided_individual_id == first.id)
        .order_by(col(Sighting.id))
        .with_for_update(**ROW_LOCK)
    ).all()
    before = {"status": first.status, "merged_into_id": first.merged_into_id}
    _reassign(session, photos.values(), sightings, second.id)
    tag_ids = _move_tags(session, _tag_ids_of(session, first.id), second.id)  # type: ignore[arg-type]
    first.status, first.merged_into_id = "merged", second.id
    session.add(first)
    session.flush()
    log.info("%s merged %s into %s (%d photos)", actor.username, first.code, second.code, len(photo_ids))
    return record(
        session,
        actor,
        "individual.merge",
        first,
        before=before,
        after={"status": "merged", "merged_into_id": second.id},
        individuals=[second.id],
        extra={
            "source_id": first.id,
            "target_id": second.id,
            "source_code": first.code,
            "target_code": second.code,
            "photo_ids": photo_ids,
            "sighting_ids": [s.id for s in sightings],
            "tag_ids": tag_ids,
        },
    )


def _tag_ids_of(session: Session, individual_id: int) -> list[int]:
    query = select(IndividualTag.id).where(IndividualTag.individual_id == individual_id)
    return sorted(ident for ident in session.exec(query).all() if ident is not None)


def _move_tags(session: Session, tag_ids: Sequence[int], to_id: int, *, from_id: int | None = None) -> list[int]:
    """Give these tags (those still on ``from_id``, when given) to ``to_id``; tags are unique, so no clash."""
    tags = session.exec(select(IndividualTag).where(col(IndividualTag.id).in_(list(tag_ids)))).all()
    moved = []
    for tag in tags:
        if from_id is not None and tag.individual_id != from_id:
            continue
        tag.individual_id = to_id
        session.add(tag)
        moved.append(tag.id)
    session.flush()
    return sorted(ident for ident in moved if ident is not None)


def split(
    session: Session,
    user: User,
    source: IndividualRef,
    photo_ids: Sequence[int],
    *,
    into: IndividualRef | None = None,
    name: str | None = None,
    config: ReviewConfig | None = None,
) -> AuditLog:
    """Move some of ``source``'s photos to ``into`` (active), or to a new individual with the next code.

    ``name`` names the new individual; it is refused together with ``into``.
    """
    actor = _admin(session, user, "split individuals")
    if not photo_ids:
        raise CurationError("Name at least one photo to split off.")
    if into is not None and name is not None:
        raise CurationError("A name is only given to a new individual; leave it out when splitting into one.")
    if name is not None:
        name = check_text(name, "name", max_length=MAX_NAME_LENGTH).strip() or None
    (origin,) = _lock_individuals(session, source)
    photos = _lock_photos(session, photo_ids)
    foreign = [ident for ident, photo in photos.items() if photo.individual_id != origin.id]
    if foreign:
        raise CurationError(f"Photo {', '.join(map(str, foreign))} does not belong to {origin.code}.")
    created = into is None
    if into is None:
        destination = create_next_individual(session, (config or ReviewConfig()).code_pattern, name=name)
    else:
        (destination,) = _lock_individuals(session, into)
        if destination.id == origin.id:
            raise CurationError(f"The photos already belong to {origin.code}.")
        _require_active(destination, "the individual split into")
    ids = sorted(photos)
    sightings = _sightings_of_photos(session, ids, origin.id)  # type: ignore[arg-type]
    _reassign(session, photos.values(), sightings, destination.id)
    log.info("%s split %d photos of %s into %s", actor.username, len(ids), origin.code, destination.code)
    return record(
        session,
        actor,
        "individual.split",
        origin,
        before={"individual_id": origin.id},
        after={"individual_id": destination.id},
        individuals=[destination.id],
        extra={
            "source_id": origin.id,
            "target_id": destination.id,
            "target_code": destination.code,
            "created": created,
            "photo_ids": ids,
            "sighting_ids": [s.id for s in sightings],
        },
    )


# --- photos ----------------------------------------------------------------------------------------


def move_photo(session: Session, user: User, photo_id: int, to: IndividualRef) -> AuditLog:
    """Give one photo to another (active) individual; an unassigned photo is assigned."""
    actor = _admin(session, user, "move photos")
    (destination,) = _lock_individuals(session, to)
    destination = resolve_merged(session, destination)
    _require_active(destination, "the individual a photo moves to")
    photo = _lock_photos(session, [photo_id])[photo_id]
    origin_id = photo.individual_id
    if origin_id == destination.id:
        raise CurationError(f"Photo {photo_id} already belongs to {destination.code}.")
    sightings = _sightings_of_photos(session, [photo_id], origin_id) if origin_id is not None else []
    _reassign(session, [photo], sightings, destination.id)
    log.info("%s moved photo %s from individual %s to %s", actor.username, photo_id, origin_id, destination.code)
    return record(
        session,
        actor,
        "photo.move",
        photo,
        before={"individual_id": origin_id},
        after={"individual_id": destination.id},
        individuals=[origin_id, destination.id],
        extra={"sighting_ids": [s.id for s in sightings]},
    )


def moved_owner(session: Session, sighting: Sighting) -> Individual | None:
    """The individual an admin moved an undecided sighting's photo to (followed through merges), if any.

    The consensus asks before applying: votes that disagree with the move go to an admin as a conflict
    instead of silently moving the photo back (:func:`core.review.votes.settle`).
    """
    if sighting.status == "decided":
        return None
    photo = session.get(Photo, sighting.photo_id)
    if photo is None or photo.individual_id is None:
        return None
    return get_individual(session, photo.individual_id, follow_merged=True)


def remove_photo(session: Session, user: User, photo_id: int) -> AuditLog:
    """Take a photo out of the gallery and the search; its file, individual and history are kept."""
    actor = _admin(session, user, "remove photos")
    photo = _lock_photos(session, [photo_id])[photo_id]
    if not photo.in_gallery:
        raise CurationError(f"Photo {photo_id} is not in the gallery.")
    photo.in_gallery = False
    session.add(photo)
    session.flush()
    log.info("%s removed photo %s from the gallery", actor.username, photo_id)
    return record(
        session,
        actor,
        "photo.remove",
        photo,
        before={"in_gallery": True},
        after={"in_gallery": False},
        individuals=[photo.individual_id],
    )


# --- undo ------------------------------------------------------------------------------------------


def _changed_since(what: str) -> CurationError:
    return CurationError(f"{what} has changed since; undo the later changes first.")


def _undo_merge(session: Session, entry: AuditLog) -> tuple[dict[str, Any], dict[str, Any], list[int | None]]:
    payload = entry.payload
    source, target = _lock_individuals(session, payload["source_id"], payload["target_id"])
    if source.status != "merged" or source.merged_into_id != target.id:
        raise _changed_since(f"The merge of {source.code} into {target.code}")
    photos = _lock_photos(session, payload["photo_ids"])
    moved = [ident for ident, photo in photos.items() if photo.individual_id != target.id]
    if moved:
        raise _changed_since(f"Photo {', '.join(map(str, moved))} of that merge")
    sightings = [s for s in _sightings_by_id(session, payload["sighting_ids"]) if s.decided_individual_id == target.id]
    back, kept = _decided_during(session, entry, source.id, target.id)  # type: ignore[arg-type]
    _reassign(session, [*photos.values(), *(p for _, p in back)], [*sightings, *(s for s, _ in back)], source.id)
    _move_tags(session, payload.get("tag_ids", []), source.id, from_id=target.id)  # type: ignore[arg-type]
    restored = payload["before"]
    source.status, source.merged_into_id = restored["status"], restored["merged_into_id"]
    session.add(source)
    session.flush()
    after = {**restored, "sightings_moved_back": sorted(s.id for s, _ in back), "sightings_kept": kept}
    return payload["after"], after, [source.id, target.id]


def _decided_during(
    session: Session, merge_entry: AuditLog, source_id: int, target_id: int
) -> tuple[list[tuple[Sighting, Photo]], list[int]]:
    """Sightings decided into ``target_id`` after the merge, still there: those whose decision named the merged
    individual (by then resolved to the target), with their photos, and the ids of those whose votes named both.

    What a decision named: the admin's individual, or the "same" votes cast before it that counted for the target.
    A photo curated elsewhere since is left where it is.
    """
    decisions = session.exec(
        select(AuditLog)
        .join(Sighting, col(Sighting.id) == col(AuditLog.target_id))
        .where(
            AuditLog.action == "sighting.decide",
            AuditLog.target_type == "sighting",
            col(AuditLog.id) > merge_entry.id,
            Sighting.decided_individual_id == target_id,
        )
        .order_by(col(AuditLog.id))
    ).all()
    back: list[tuple[Sighting, Photo]] = []
    kept: list[int] = []
    for decision in decisions:
        sighting = _locked_by_id(session, Sighting, [decision.target_id]).get(decision.target_id)  # type: ignore[list-item,arg-type]
        if sighting is None or sighting.decided_individual_id != target_id:
            continue
        photo = _lock_photos(session, [sighting.photo_id])[sighting.photo_id]
        if photo.individual_id != target_id:
            continue
        sides = {_side_after_undo(session, named, source_id) for named in _named(session, decision, target_id)}
        if sides == {"source"}:
            back.append((sighting, photo))
        elif len(sides) > 1:
            kept.append(sighting.id)  # type: ignore[arg-type]
    return back, kept


def _named(session: Session, decision: AuditLog, target_id: int) -> list[int]:
    """The individuals a decision into ``target_id`` named: the admin's choice, or the deciding votes'."""
    payload = decision.payload or {}
    if payload.get("how") == "admin":
        named = payload.get("named_individual_id")
        return [named] if isinstance(named, int) else [target_id]
    votes = session.exec(
        select(AuditLog.payload).where(
            AuditLog.action == "sighting.vote",
            AuditLog.target_id == decision.target_id,
            AuditLog.id < decision.id,
        )
    ).all()
    named_ids = [(vote or {}).get("after", {}).get("individual_id") for vote in votes]
    return [
        ident
        for ident in named_ids
        if isinstance(ident, int) and get_individual(session, ident, follow_merged=True).id == target_id
    ]


def _side_after_undo(session: Session, individual_id: int, source_id: int) -> str:
    """``"source"`` when ``individual_id``'s merge chain passes through ``source_id`` (it leads there once the
    merge is undone), else ``"target"``."""
    current = session.get(Individual, individual_id)
    seen: set[int] = set()
    while current is not None and current.id not in seen:
        if current.id == source_id:
            return "source"
        seen.add(current.id)  # type: ignore[arg-type]
        if current.status != "merged" or current.merged_into_id is None:
            break
        current = session.get(Individual, current.merged_into_id)
    return "target"


def _undo_split(session: Session, entry: AuditLog) -> tuple[dict[str, Any], dict[str, Any], list[int | None]]:
    payload = entry.payload
    source, target = _lock_individuals(session, payload["source_id"], payload["target_id"])
    if source.status != "active":
        raise CurationError(f"{source.code} is {source.status} now; make it active before undoing the split.")
    photos = _lock_photos(session, payload["photo_ids"])
    moved = [ident for ident, photo in photos.items() if photo.individual_id != target.id]
    if moved:
        raise _changed_since(f"Photo {', '.join(map(str, moved))} of that split")
    sightings = [s for s in _sightings_by_id(session, payload["sighting_ids"]) if s.decided_individual_id == target.id]
    _reassign(session, photos.values(), sightings, source.id)
    after: dict[str, Any] = {"individual_id": source.id}
    if payload["created"] and target.status == "active" and not _photo_ids_of(session, target.id):  # type: ignore[arg-type]
        target.status = "retired"  # codes are never reused, so the emptied new individual is retired
        session.add(target)
        session.flush()
        after["retired_id"] = target.id
    return payload["after"], after, [source.id, target.id]


def _undo_move(session: Session, entry: AuditLog) -> tuple[dict[str, Any], dict[str, Any], list[int | None]]:
    payload = entry.payload
    photo = _lock_photos(session, [entry.target_id])[entry.target_id]  # type: ignore[index,list-item]
    origin_id, destination_id = payload["before"]["individual_id"], payload["after"]["individual_id"]
    if photo.individual_id != destination_id:
        raise _changed_since(f"Photo {photo.id}")
    if origin_id is None:
        decided = session.exec(
            select(Sighting.id).where(Sighting.photo_id == photo.id, Sighting.status == "decided")
        ).first()
        if decided is not None:
            raise CurationError(
                f"Photo {photo.id} was decided since (sighting {decided}); move it to another individual instead."
            )
    if origin_id is not None:
        (origin,) = _lock_individuals(session, origin_id)
        if origin.status == "merged":
            raise CurationError(f"{origin.code} was merged since; undo that merge first.")
    sightings = [
        s for s in _sightings_by_id(session, payload["sighting_ids"]) if s.decided_individual_id == destination_id
    ]
    _reassign(session, [photo], sightings, origin_id)
    return payload["after"], payload["before"], [origin_id, destination_id]


def _undo_remove(session: Session, entry: AuditLog) -> tuple[dict[str, Any], dict[str, Any], list[int | None]]:
    photo = _lock_photos(session, [entry.target_id])[entry.target_id]  # type: ignore[index,list-item]
    if photo.in_gallery:
        raise _changed_since(f"Photo {photo.id}")
    photo.in_gallery = True
    session.add(photo)
    session.flush()
    return entry.payload["after"], entry.payload["before"], [photo.individual_id]


def _undo_individual_fields(
    fields: tuple[str, ...],
) -> Callable[..., tuple[dict[str, Any], dict[str, Any], list[int | None]]]:
    def undo_fields(session: Session, entry: AuditLog) -> tuple[dict[str, Any], dict[str, Any], list[int | None]]:
        (individual,) = _lock_individuals(session, entry.target_id)  # type: ignore[arg-type]
        current = {name: getattr(individual, name) for name in fields}
        if current != {name: entry.payload["after"][name] for name in fields}:
            raise _changed_since(f"{individual.code}")
        restored = {name: entry.payload["before"][name] for name in fields}
        if "code" in restored:
            clash = session.exec(
                select(Individual.id).where(Individual.code == restored["code"], Individual.id != individual.id)
            ).first()
            if clash is not None:
                raise CurationError(f"The code {restored['code']} is used by another individual now.")
        for name, value in restored.items():
            setattr(individual, name, value)
        session.add(individual)
        session.flush()
        return current, restored, [individual.id]

    return undo_fields


def _sightings_by_id(session: Session, ids: Sequence[int]) -> list[Sighting]:
    return list(_locked_by_id(session, Sighting, ids).values())


_UNDO = {
    "individual.merge": _undo_merge,
    "individual.split": _undo_split,
    "photo.move": _undo_move,
    "photo.remove": _undo_remove,
    "individual.retire": _undo_individual_fields(("status",)),
    "individual.rename": _undo_individual_fields(("name", "code")),
    "individual.notes": _undo_individual_fields(("notes",)),
    "individual.species": _undo_individual_fields(("species",)),
}
UNDOABLE: tuple[str, ...] = tuple(_UNDO)
"""Audit actions :func:`undo` can revert."""


def undo(session: Session, user: User, entry_id: int) -> AuditLog:
    """Revert the curation action recorded as audit entry ``entry_id``; returns the new undo entry."""
    actor = _admin(session, user, "undo curation actions")
    entry = session.get(AuditLog, entry_id)
    if entry is None:
        raise CurationError(f"There is no audit entry {entry_id}.")
    handler = _UNDO.get(entry.action)
    if handler is None:
        raise CurationError(
            f"Audit entry {entry_id} ({entry.action}) cannot be undone; only {', '.join(UNDOABLE)} can."
        )
    already = session.exec(select(AuditLog.id).where(AuditLog.reverts_id == entry_id)).first()
    if already is not None:
        raise CurationError(f"Audit entry {entry_id} was already undone (by entry {already}).")
    before, after, concerned = handler(session, entry)
    log.info("%s undid audit entry %s (%s)", actor.username, entry_id, entry.action)
    return record(
        session,
        actor,
        f"{entry.action}.undo",
        (entry.target_type, entry.target_id),
        before=before,
        after=after,
        individuals=concerned,
        reverts=entry,
    )
