"""What a manifest that Scute itself exported adds to an imported photo: its checksum, date, GPS, crop, rotation
and file name, filled in only where the photo lacks them (never overwritten).

A crop or rotation needs the features of the new framing: those of a chunk's rows are extracted together through
the bulk pipeline (:func:`core.engine.bulk.cached_stream`), outside any transaction, before each photo is
completed in its own transaction in line order.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine as SqlEngine
from sqlmodel import select

from core.catalogue.archive import ImportProblem
from core.catalogue.format import MANIFEST_NAME, unescape_cell
from core.engine.bulk import DecodedPhoto, cached_stream
from core.engine.features import Features
from core.engine.images import load_image
from core.engine.search import Engine
from core.errors import ScuteError
from core.indexing.gallery import record_photo_features
from core.safe_text import upload_label
from core.store.audit import ROW_LOCK, lock_for_write
from core.store.db import session_scope
from core.store.models import Photo, validate_crop
from core.store.photos import PhotoStore

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PhotoExtras:
    """The optional columns of a manifest row Scute itself exported (None or 0: the row does not say)."""

    sha256: str | None = None
    taken_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    crop: tuple[float, float, float, float] | None = None
    rotation: int = 0
    original_name: str | None = None  # None: the manifest has no such column


def parse_extras(row: dict[str, str]) -> PhotoExtras:
    """The optional columns of a manifest row Scute itself exported; raises ScuteError with the reason."""
    sha = row.get("sha256", "").lower() or None
    if sha is not None and not _SHA256_RE.fullmatch(sha):
        raise ScuteError(f"sha256 is not a SHA-256 checksum: {sha[:70]!r}")
    taken_at = None
    if row.get("taken_at"):
        try:
            taken_at = datetime.fromisoformat(row["taken_at"])
        except ValueError:
            raise ScuteError(f"taken_at is not an ISO 8601 date: {row['taken_at'][:40]!r}") from None
        taken_at = taken_at.replace(tzinfo=UTC) if taken_at.tzinfo is None else taken_at.astimezone(UTC)
    coordinates: list[float | None] = []
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        text = row.get(key, "")
        try:
            value = float(text) if text else None
        except ValueError:
            raise ScuteError(f"{key} is not a number: {text[:40]!r}") from None
        if value is not None and not (math.isfinite(value) and -bound <= value <= bound):
            raise ScuteError(f"{key} must be between -{bound:g} and {bound:g}, got {text[:40]!r}")
        coordinates.append(value)
    if (coordinates[0] is None) != (coordinates[1] is None):
        raise ScuteError("latitude and longitude must be given together")
    crop = None
    if row.get("crop"):
        try:
            crop = validate_crop(row["crop"].replace(",", " ").split())
        except ValueError as exc:
            raise ScuteError(str(exc)) from None
    rotation_text = row.get("rotation", "") or "0"
    try:
        rotation = int(rotation_text)
    except ValueError:
        raise ScuteError(f"rotation is not a whole number: {rotation_text[:40]!r}") from None
    if rotation % 90:
        raise ScuteError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    name = upload_label(unescape_cell(row["original_name"])) if "original_name" in row else None
    return PhotoExtras(sha, taken_at, coordinates[0], coordinates[1], crop, rotation % 360, name)


@dataclass(frozen=True)
class PhotoFill:
    """An imported row whose manifest says more than its photo: where it is, and what to fill in."""

    line: int
    path: str  # as the manifest gives it, for messages
    member: str
    extras: PhotoExtras
    sha256: str


def fill_photos(
    db: SqlEngine, store: PhotoStore, engine: Engine, fills: Sequence[PhotoFill]
) -> tuple[int, list[ImportProblem]]:
    """Give each row's photo what its manifest row adds (:func:`_fill_photo`), in line order; returns how many
    photos were completed, and a warning for each framing that could not be applied.

    The features of new framings are extracted first, together, through the bulk pipeline
    (:func:`core.engine.bulk.cached_stream`) and outside any transaction; a framing whose features cannot be
    made leaves its photo as it is.
    """
    targets = [_photo_to_fill(db, store, fill) for fill in fills]
    framings = _framing_features(engine, fills, targets)
    completed, warnings = 0, []
    for i, (fill, target) in enumerate(zip(fills, targets, strict=True)):
        if target is None:
            continue
        try:
            completed += int(_fill_photo(db, engine, target[0], fill.extras, fill.member, framings.get(i)))
        except ScuteError as exc:
            warnings.append(
                ImportProblem(
                    f"{MANIFEST_NAME} line {fill.line}",
                    f"{fill.path[:200]}: imported, but its crop or rotation was not applied: {exc}",
                    "warning",
                )
            )
    return completed, warnings


def _photo_to_fill(db: SqlEngine, store: PhotoStore, fill: PhotoFill) -> tuple[int, Path | None] | None:
    """The photo's id, and its file when the row brings a framing the photo lacks; None: no such photo."""
    with session_scope(db) as session:
        photo = session.exec(select(Photo).where(Photo.sha256 == fill.sha256)).first()
        if photo is None or photo.id is None:
            return None
        extras = fill.extras
        framing = (extras.crop is not None or extras.rotation) and photo.crop is None and photo.rotation == 0
        return photo.id, store.path(photo.path) if framing else None


def _framing_features(
    engine: Engine, fills: Sequence[PhotoFill], targets: Sequence[tuple[int, Path | None] | None]
) -> dict[int, Features | ScuteError]:
    """The features of each new framing (by the fill's index), or why there are none; as many as a chunk has."""
    todo = [(i, target[1]) for i, target in enumerate(targets) if target is not None and target[1] is not None]
    found: dict[int, Features | ScuteError] = {}

    def load(j: int) -> DecodedPhoto:
        i, path = todo[j]
        extras = fills[i].extras
        return DecodedPhoto(load_image(path).pixels, fills[i].sha256, extras.crop, extras.rotation)

    def keep(j: int, result: Features | ScuteError) -> None:
        found[todo[j][0]] = result

    if todo:
        cached_stream(engine.extractor, engine.feature_cache, len(todo), load, keep)
    return found


def _fill_photo(
    db: SqlEngine,
    engine: Engine,
    photo_id: int,
    extras: PhotoExtras,
    member: str,
    framing: Features | ScuteError | None,
) -> bool:
    """Give an imported photo what the manifest knows and the image did not say; never overwrite.

    ``framing``: the features of the row's crop and rotation (None: the photo had its own framing). Failed
    features raise, leaving the photo as it is, unless the photo has a framing by now (from an earlier row).
    Returns whether the date, GPS or framing was completed (a restored file name alone does not count).
    """
    with session_scope(db) as session:
        lock_for_write(session)
        photo = session.get(Photo, photo_id, with_for_update=ROW_LOCK, populate_existing=True)
        if photo is None:  # pragma: no cover - photos are never deleted
            return False
        unframed = photo.crop is None and photo.rotation == 0
        if isinstance(framing, ScuteError) and unframed:
            raise framing
        features = framing if isinstance(framing, Features) else None
        changed = False
        if extras.taken_at is not None and photo.taken_at is None:
            photo.taken_at, changed = extras.taken_at, True
        if extras.latitude is not None and photo.latitude is None and photo.longitude is None:
            photo.latitude, photo.longitude, changed = extras.latitude, extras.longitude, True
        if (
            extras.original_name is not None
            and photo.original_name == posixpath.basename(member) != extras.original_name
        ):
            # The name import gave it is the archive's, not the photographer's: restore the exported label.
            photo.original_name = extras.original_name
            session.add(photo)
        if features is not None and unframed:
            photo.set_crop(extras.crop)
            photo.rotation = extras.rotation
            session.add(photo)
            session.flush()
            record_photo_features(session, engine, photo, features)
            changed = True
        if changed:
            session.add(photo)
        return changed
