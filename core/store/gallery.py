"""Gallery operations shared by the catalogue import, the search and curation.

"The gallery" is every photo with ``in_gallery`` set whose individual is active, or was merged into
an individual that is active (a merge may leave photos on the merged row so that it can be undone).
"""

from __future__ import annotations

import hashlib
import logging
import math
import operator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from core.io import sha256_hex
from core.safe_text import check_text, upload_label
from core.store.models import (
    SIDES,
    Crop,
    FeatureRecord,
    Individual,
    Photo,
    utc_now,
    validate_crop,
)
from core.store.photos import PhotoStore, check_suffix

log = logging.getLogger(__name__)

MAX_CODE_LENGTH = 64


@dataclass(frozen=True)
class GalleryEntry:
    """One searchable photo, labelled with the active individual it counts for."""

    photo_id: int
    sha256: str
    path: Path
    individual_id: int
    individual_code: str
    individual_name: str | None
    side: str
    crop: Crop | None
    rotation: int


def normalize_code(code: str) -> str:
    """Strip and check an individual's code; raises ValueError for empty or over-long codes."""
    if not isinstance(code, str):
        raise ValueError(f"individual code must be text, got {type(code).__name__}")
    code = check_text(code, "individual code").strip()  # TextError is a ValueError
    if not code:
        raise ValueError("individual code is empty")
    if len(code) > MAX_CODE_LENGTH:
        raise ValueError(f"individual code is longer than {MAX_CODE_LENGTH} characters: {code[:20]!r}…")
    return code


def resolve_merged(session: Session, individual: Individual) -> Individual:
    """Follow ``merged_into_id`` to the surviving individual (the same one if it was never merged)."""
    seen: set[int | None] = {individual.id}
    current = individual
    while current.status == "merged" and current.merged_into_id is not None:
        target = session.get(Individual, current.merged_into_id)
        if target is None or target.id in seen:
            log.warning(
                "Merge chain of individual %s is broken or circular; stopping at %s",
                individual.code,
                current.code,
            )
            break
        seen.add(target.id)
        current = target
    return current


def get_or_create_individual(
    session: Session, code: str, name: str | None = None, *, follow_merged: bool = True
) -> tuple[Individual, bool]:
    """The individual with ``code`` (created when new), and whether it was created.

    An existing individual keeps its name unless it had none. With ``follow_merged`` a code that was
    merged away returns the survivor, so imported photos land where the search will see them.
    """
    code = normalize_code(code)
    name = (check_text(name, "name").strip() or None) if name is not None else None
    existing = session.exec(select(Individual).where(Individual.code == code)).first()
    if existing is None:
        individual = Individual(code=code, name=name)
        session.add(individual)
        session.flush()
        log.info("Created individual %s", code)
        return individual, True
    if name and not existing.name:
        existing.name = name
        session.add(existing)
    elif name and existing.name != name:
        log.warning("Individual %s is named %r, not %r; keeping the stored name", code, existing.name, name)
    if follow_merged and existing.status == "merged":
        survivor = resolve_merged(session, existing)
        if survivor.id != existing.id:
            log.info("Individual %s was merged into %s; using the latter", code, survivor.code)
        return survivor, False
    return existing, False


def _as_int(value: Any, what: str) -> int:
    """Whole numbers only (numpy integers too); silently truncating 90.5 degrees would hide a bug."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError as exc:
        raise ValueError(f"{what} must be an integer, got {value!r}") from exc


def _check_optional_range(value: float | None, low: float, high: float, what: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{what} must be between {low} and {high}, got {value!r}")
    return value


def add_photo(
    session: Session,
    store: PhotoStore,
    data: bytes,
    *,
    suffix: str,
    individual: Individual | None,
    side: str = "unknown",
    original_name: str = "",
    width: int,
    height: int,
    taken_at: datetime | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    crop: Crop | None = None,
    rotation: int = 0,
    in_gallery: bool = True,
    uploaded_by: int | None = None,
) -> tuple[Photo, bool]:
    """Store the bytes and record the photo; returns ``(photo, created)``.

    The same content already stored returns ``(existing, False)`` unchanged: assigning it to another
    individual is a curation decision, not a side effect of uploading it twice. The file is written
    before the row, so a failed transaction leaves at worst an unreferenced file, never a dangling row.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")
    width, height = _as_int(width, "width"), _as_int(height, "height")
    rotation = _as_int(rotation, "rotation")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    if taken_at is not None and not isinstance(taken_at, datetime):
        raise ValueError(f"taken_at must be a datetime, got {type(taken_at).__name__}")
    checked_crop = validate_crop(crop)
    latitude = _check_optional_range(latitude, -90.0, 90.0, "latitude")
    longitude = _check_optional_range(longitude, -180.0, 180.0, "longitude")
    check_suffix(suffix)
    original_name = upload_label(original_name)  # a label only: never a path, never control characters

    sha = sha256_hex(data)
    existing = session.exec(select(Photo).where(Photo.sha256 == sha)).first()
    if existing is not None:
        if individual is not None and individual.id != existing.individual_id:
            log.warning(
                "Photo %s (%s) is already stored as photo %s of individual id %s; not reassigning it",
                sha[:12],
                original_name,
                existing.id,
                existing.individual_id,
            )
        if not store.exists(existing.path):
            stored = store.put(data, suffix)
            log.warning("Photo file %s was missing; restored it as %s", existing.path, stored.relpath)
            existing.path = stored.relpath
            session.add(existing)
        return existing, False

    if individual is not None and individual.id is None:
        session.add(individual)
        session.flush()
    stored = store.put(data, suffix)
    photo = Photo(
        sha256=stored.sha256,
        path=stored.relpath,
        original_name=original_name,
        individual_id=individual.id if individual is not None else None,
        side=side,
        rotation=rotation % 360,
        width=width,
        height=height,
        taken_at=taken_at,
        latitude=latitude,
        longitude=longitude,
        uploaded_by=uploaded_by,
        in_gallery=bool(in_gallery),
    )
    photo.set_crop(checked_crop)
    session.add(photo)
    session.flush()
    return photo, True


def _sides_for_query(side: str | None) -> tuple[str, ...] | None:
    """Gallery sides a query of ``side`` may match; None means all.

    Photos of unknown side are always included: they may show either side, and leaving them out
    would hide an individual whose only photos were never labelled. A query of unknown side may
    match anything.
    """
    if side is None or side == "unknown":
        return None
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")
    return (side, "unknown")


def _gallery_rows(session: Session, side: str | None) -> list[tuple[Any, Individual]]:
    """Gallery photos (as column rows) with the active individual each one counts for."""
    individuals = {ind.id: ind for ind in session.exec(select(Individual)).all()}

    def survivor(individual_id: int) -> Individual | None:
        current = individuals.get(individual_id)
        for _ in range(len(individuals) + 1):  # bounded: a corrupt circular chain cannot hang us
            if current is None or current.status != "merged" or current.merged_into_id is None:
                break
            current = individuals.get(current.merged_into_id)
        return current if current is not None and current.status == "active" else None

    query = (
        select(
            Photo.id,
            Photo.sha256,
            Photo.path,
            Photo.individual_id,
            Photo.side,
            Photo.crop_x0,
            Photo.crop_y0,
            Photo.crop_x1,
            Photo.crop_y1,
            Photo.rotation,
        )
        .where(col(Photo.in_gallery).is_(True), col(Photo.individual_id).is_not(None))
        .order_by(col(Photo.id))
    )
    sides = _sides_for_query(side)
    if sides is not None:
        query = query.where(col(Photo.side).in_(sides))
    rows = []
    for row in session.exec(query).all():
        owner = survivor(row.individual_id)
        if owner is not None:
            rows.append((row, owner))
    return rows


def _row_crop(row: Any) -> Crop | None:
    values = (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1)
    return None if any(v is None for v in values) else tuple(float(v) for v in values)  # type: ignore[return-value]


def gallery_entries(session: Session, store: PhotoStore, side: str | None = None) -> list[GalleryEntry]:
    """The photos a search compares against, ordered by photo id.

    ``side`` ("left", "right", ...) keeps photos of that side plus those of unknown side; None or
    "unknown" keeps every side.
    """
    return [
        GalleryEntry(
            photo_id=row.id,
            sha256=row.sha256,
            path=store.path(row.path),
            individual_id=owner.id,  # type: ignore[arg-type]
            individual_code=owner.code,
            individual_name=owner.name,
            side=row.side,
            crop=_row_crop(row),
            rotation=row.rotation,
        )
        for row, owner in _gallery_rows(session, side)
    ]


def gallery_fingerprint(session: Session) -> str:
    """A hash that changes whenever what the search sees changes, to invalidate caches built on it.

    Covers which photos are in the gallery, the individual each counts for (so moves, merges and
    retirements count) and what their features depend on (side, crop, rotation). Names and codes are
    left out: renaming must not throw away a fitted null model.
    """
    digest = hashlib.sha256()
    for row, owner in _gallery_rows(session, side=None):
        digest.update(f"{row.id}|{row.sha256}|{owner.id}|{row.side}|{_row_crop(row)!r}|{row.rotation}\n".encode())
    return digest.hexdigest()


def record_features(
    session: Session, photo_id: int, extractor: str, version: str, relpath: str, n_keypoints: int
) -> FeatureRecord:
    """Insert or update the feature record of (photo, extractor, version); returns it flushed."""
    if n_keypoints < 0:
        raise ValueError(f"n_keypoints must be >= 0, got {n_keypoints}")
    record = session.exec(
        select(FeatureRecord).where(
            FeatureRecord.photo_id == photo_id,
            FeatureRecord.extractor == extractor,
            FeatureRecord.version == version,
        )
    ).first()
    if record is None:
        record = FeatureRecord(
            photo_id=photo_id, extractor=extractor, version=version, path=relpath, n_keypoints=n_keypoints
        )
    else:
        record.path = relpath
        record.n_keypoints = n_keypoints
        record.created_at = utc_now()
    session.add(record)
    session.flush()
    return record
