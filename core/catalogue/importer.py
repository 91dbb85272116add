"""Importing an existing catalogue (CSV manifest + photo folder) into the gallery.

Each row is its own transaction, so a crash loses at most the row in flight and a re-run resumes
where it stopped; photos are content-addressed, so a second run adds nothing. Bad rows are
reported with a reason and skipped; the rest are imported. Tag columns (``flipper_tags``, ``pit_tags``,
``alternate_ids``) are checked for every row first: a bad tag, or one that would name two individuals, refuses
the whole import with its line before anything is written. An import made by an admin (the app's
imports) is recorded in the audit log, also when it added nothing or was stopped part-way: who brought
which catalogue in, and what was left out, is part of the gallery's history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, select

from core.catalogue.format import unescape_cell
from core.catalogue.manifest import ManifestRow
from core.engine.images import load_image
from core.engine.search import Engine
from core.errors import ManifestError, ScuteError
from core.indexing.gallery import record_photo_features
from core.io import sha256_hex
from core.progress import Progress
from core.review import tags
from core.review.users import acting_user
from core.store.audit import lock_for_write, record
from core.store.db import session_scope
from core.store.gallery import add_photo, get_or_create_individual, resolve_merged
from core.store.models import SIDES, Individual, User
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
    created_ids: list[int] = field(default_factory=list)  # the individuals this import created
    tags_added: int = 0  # flipper tags, PIT tags and alternate ids from the manifest's tag columns

    def summary(self) -> str:
        tags = f", {self.tags_added} tags added" if self.tags_added else ""
        return (
            f"{self.added} photos added, {self.already_present} already in the gallery, "
            f"{self.individuals_created} new individuals, {len(self.problems)} rows skipped{tags}"
        )


def manifest_date(text: str) -> datetime:
    """A manifest's ``date``: ``2024-06-01`` (taken at noon UTC, as the Identify page dates a day) or an ISO 8601
    date and time; anything else skips the row with a reason rather than guessing between day and month."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ScuteError(f"the date {text[:40]!r} is not a date like 2024-06-01 or 2024-06-01T09:30") from None
    if len(text) == 10:
        value = value.replace(hour=12)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    *,
    lines: Sequence[int] | None = None,
    original_names: Sequence[str] | None = None,
    actor: User | int | None = None,
    source: str = "",
    skipped: Sequence[RowProblem] = (),
) -> ImportReport:
    """Import ``rows`` (paths relative to ``root``), one transaction each.

    ``lines``: each row's line in its CSV (default: the rows are the CSV's, from line 2).
    ``original_names``: each photo's own file name where the row's path is not it (uploads kept under
    safe names). ``actor``: an active admin, checked first; the import is then audited as ``source``.
    ``skipped``: rows the caller already left out (reported, and counted in the audit entry).
    """
    if actor is not None:
        with session_scope(db) as session:
            actor = acting_user(session, actor, "admin", action="import a catalogue").id
    wanted = [
        (f"line {lines[i] if lines is not None else i + 2}", row.identity, kind, value)
        for i, row in enumerate(rows)
        for kind, value in row.tags
    ]
    if wanted:
        with session_scope(db) as session:
            problem = tag_problem(session, wanted)
        if problem is not None:
            raise ManifestError(f"{problem}. Nothing was imported.")
    report = ImportReport(problems=list(skipped))
    try:
        for i, row in enumerate(rows):
            line = lines[i] if lines is not None else i + 2
            name = original_names[i] if original_names is not None else Path(row.path).name
            try:
                _import_row(db, store, engine, row, root, report, name)
            except ScuteError as exc:
                report.problems.append(RowProblem(line, row.path, str(exc)))
                log.info("manifest line %d (%s) skipped: %s", line, row.path, exc)
            if progress:
                progress(i + 1, len(rows))
    except BaseException:
        if actor is not None:
            audit_import(db, actor, _import_summary(source, report, stopped=True), report.created_ids)
        raise
    if actor is not None:
        audit_import(db, actor, _import_summary(source, report), report.created_ids)
    return report


def tag_problem(session: Session, wanted: Sequence[tuple[str, str, str, str]]) -> str | None:
    """The first problem with an import's tags, ``(where, identity, kind, value)`` each, as "where: why", or None.

    A tag must be valid (:func:`core.review.tags.check_tag`) and name one individual: not two in the import, not
    another individual in the gallery (a merged code counts as its survivor, where its photos will go).
    """
    checked = []
    for where, identity, kind, value in wanted:
        try:
            kind, value = tags.check_tag(kind, value)
        except ScuteError as exc:
            return f"{where}: {str(exc).rstrip('.')}"
        checked.append((kind, value, _target_code(session, identity)))
    clash = tags.duplicate_in(session, checked)
    return f"{wanted[clash[0]][0]}: {clash[1]}" if clash is not None else None


def _target_code(session: Session, identity: str) -> str:
    """The code an imported row's photo will be filed under (a merged code's survivor)."""
    code = unescape_cell(identity.strip()).strip()
    individual = session.exec(select(Individual).where(Individual.code == code)).first()
    return resolve_merged(session, individual).code if individual is not None else code


def _import_summary(source: str, report: ImportReport, *, stopped: bool = False) -> dict[str, Any]:
    return {
        "source": source,
        "added": report.added,
        "already_present": report.already_present,
        "individuals_created": report.individuals_created,
        **({"tags_added": report.tags_added} if report.tags_added else {}),
        "skipped": len(report.problems),
        "stopped": stopped,
    }


def audit_import(db: SqlEngine, actor_id: int, after: Mapping[str, Any], individuals: Iterable[int]) -> None:
    """One ``catalogue.import`` entry by ``actor_id``, in its own transaction.

    A failure to write it (the database went away mid-import) is logged, never raised over the import's own
    outcome or error.
    """
    try:
        with session_scope(db) as session:
            lock_for_write(session)
            user = session.get(User, actor_id)
            record(session, user, "catalogue.import", ("catalogue", None), None, dict(after), individuals=individuals)
    except Exception:
        log.exception("The import by user %s could not be recorded in the audit log", actor_id)


def _import_row(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    row: ManifestRow,
    root: Path,
    report: ImportReport,
    original_name: str,
) -> None:
    identity = unescape_cell(row.identity.strip()).strip()  # an exported manifest quotes formula-like codes
    if not identity:
        raise ScuteError("the identity is empty")
    side = (row.side or "unknown").strip().lower()
    if side not in SIDES:
        raise ScuteError(f"unknown side {row.side!r} (use {', '.join(SIDES)})")
    taken_at = manifest_date(row.date) if row.date.strip() else None
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
            original_name=original_name,
            width=image.info.width,
            height=image.info.height,
            taken_at=taken_at or image.info.taken_at,  # the catalogue's date wins over the camera's clock
            latitude=image.info.latitude,
            longitude=image.info.longitude,
        )
        for kind, value in row.tags:  # checked before the first row (import_rows); a second run adds none
            report.tags_added += int(tags.attach_imported(session, individual.id, *tags.check_tag(kind, value)))  # type: ignore[arg-type]
        if not added:
            owner = photo.individual_id
            if owner is not None and owner != individual.id:
                raise ScuteError("the same photo is already in the gallery under another identity")
            report.already_present += 1
            return
        record_photo_features(session, engine, photo, features)
        report.added += 1
        if created:
            report.individuals_created += 1
            report.created_ids.append(individual.id)  # type: ignore[arg-type]
