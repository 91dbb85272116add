"""Importing an existing catalogue (CSV manifest + photo folder) into the gallery.

Each row is its own transaction, so a crash loses at most the row in flight and a re-run resumes
where it stopped; photos are content-addressed, so a second run adds nothing. Bad rows are
reported with a reason and skipped; the rest are imported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from core.catalogue.manifest import ManifestRow
from core.engine.images import load_image
from core.engine.search import Engine
from core.errors import ScuteError
from core.indexing.gallery import record_photo_features
from core.io import sha256_hex
from core.progress import Progress
from core.store.db import session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import SIDES
from core.store.photos import SUFFIX_FOR_FORMAT, PhotoStore

log = logging.getLogger(__name__)


@dataclass
class RowProblem:
    line: int  # line in the CSV, header = 1
    path: str
    reason: str


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    individuals_created: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.added} photos added, {self.already_present} already in the gallery, "
            f"{self.individuals_created} new individuals, {len(self.problems)} rows skipped"
        )


def _resolve_inside(root: Path, relative: str) -> Path:
    """Manifest paths are relative to the catalogue folder and may not leave it."""
    if not relative:
        raise ScuteError("the path is empty")
    if "\x00" in relative:
        raise ScuteError("the path contains a NUL character")
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ScuteError("the path points outside the catalogue folder")
    if not path.is_file():
        raise ScuteError("the file does not exist")
    return path


def import_rows(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    rows: Sequence[ManifestRow],
    root: Path,
    progress: Progress | None = None,
) -> ImportReport:
    report = ImportReport()
    for i, row in enumerate(rows):
        line = i + 2
        try:
            _import_row(db, store, engine, row, root, report)
        except ScuteError as exc:
            report.problems.append(RowProblem(line, row.path, str(exc)))
            log.info("manifest line %d (%s) skipped: %s", line, row.path, exc)
        if progress:
            progress(i + 1, len(rows))
    return report


def _import_row(
    db: SqlEngine, store: PhotoStore, engine: Engine, row: ManifestRow, root: Path, report: ImportReport
) -> None:
    identity = row.identity.strip()
    if not identity:
        raise ScuteError("the identity is empty")
    side = (row.side or "unknown").strip().lower()
    if side not in SIDES:
        raise ScuteError(f"unknown side {row.side!r} (use {', '.join(SIDES)})")
    path = _resolve_inside(root, row.path)
    try:
        data = path.read_bytes()
    except OSError as exc:  # unreadable (permissions, I/O error): skip the row, keep importing
        raise ScuteError(f"the file cannot be read ({exc.strerror or exc})") from None
    image = load_image(data)  # raises ImageError with a volunteer-readable reason
    sha = sha256_hex(data)
    # Features first: a photo without usable keypoints is reported and never enters the gallery.
    features = engine.features(image.pixels, sha)
    with session_scope(db) as session:
        try:
            individual, created = get_or_create_individual(session, identity)
        except ValueError as exc:
            raise ScuteError(str(exc)) from None
        photo, added = add_photo(
            session,
            store,
            data,
            suffix=SUFFIX_FOR_FORMAT[image.info.format],
            individual=individual,
            side=side,
            original_name=Path(row.path).name,
            width=image.info.width,
            height=image.info.height,
            taken_at=image.info.taken_at,
            latitude=image.info.latitude,
            longitude=image.info.longitude,
        )
        if not added:
            owner = photo.individual_id
            if owner is not None and owner != individual.id:
                raise ScuteError("the same photo is already in the gallery under another identity")
            report.already_present += 1
            return
        record_photo_features(session, engine, photo, features)
        report.added += 1
        report.individuals_created += int(created)
