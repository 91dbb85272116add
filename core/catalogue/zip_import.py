"""Import a catalogue ZIP: any ZIP with a ``manifest.csv`` (``path,identity[,side]``) at its top or inside
one top folder, the photos at the paths it names (relative to the manifest), and optionally
``individuals.csv`` beside it (with optional ``flipper_tags``, ``pit_tags`` and ``alternate_ids``, each
``;``-separated: a bad tag, or one that would name two individuals, refuses the whole import with its line
before anything is written).

The archive is checked first (:mod:`core.catalogue.archive`). Photos are extracted a few at a time into
a private temporary folder, by their checked names only, and each row goes through
:func:`core.catalogue.importer.import_rows` (its own transaction), so an interrupted import resumes where
it stopped and a second run adds nothing. Date, GPS, crop and rotation from the manifest only fill in
what the photo lacks (:mod:`core.catalogue.photo_extras`); existing individuals only get missing names,
species and notes filled in, never a changed status.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.catalogue.archive import ArchiveError, CatalogueArchive, ImportProblem, ZipLimits, open_archive
from core.catalogue.format import (
    INDIVIDUALS_NAME,
    MANIFEST_NAME,
    TAG_COLUMNS,
    unescape_cell,
)
from core.catalogue.importer import audit_import, import_rows, tag_problem
from core.catalogue.manifest import ManifestRow, csv_rows, parse_manifest
from core.catalogue.photo_extras import PhotoExtras, PhotoFill, fill_photos, parse_extras
from core.engine.search import Engine
from core.errors import ManifestError, ScuteError
from core.io import sha256_hex
from core.progress import Progress
from core.review import tags
from core.review.rules import MAX_NAME_LENGTH, MAX_NOTES_LENGTH
from core.review.users import acting_user
from core.safe_text import TextError, check_text
from core.store.audit import lock_for_write
from core.store.db import session_scope
from core.store.gallery import normalize_code
from core.store.models import (
    INDIVIDUAL_STATUSES,
    Individual,
    User,
)
from core.store.photos import PhotoStore

log = logging.getLogger(__name__)


@dataclass
class ZipImportReport:
    """What an import did. A second run of the same archive reports 0 added and 0 created."""

    added: int = 0
    already_present: int = 0
    individuals_created: int = 0
    individuals_updated: int = 0  # existing individuals whose missing name, species or notes were filled in
    photos_updated: int = 0  # photos whose missing date, GPS, crop or rotation were filled in
    tags_added: int = 0  # flipper tags, PIT tags and alternate ids from individuals.csv and manifest.csv
    problems: list[ImportProblem] = field(default_factory=list)
    created_ids: list[int] = field(default_factory=list)  # the individuals this import created

    @property
    def changed(self) -> bool:
        return bool(
            self.added or self.individuals_created or self.individuals_updated or self.photos_updated or self.tags_added
        )

    def count(self, kind: str) -> int:
        return sum(problem.kind == kind for problem in self.problems)

    def summary(self) -> str:
        """One line, the same as :meth:`core.catalogue.importer.ImportReport.summary` plus what only a ZIP can bring."""
        extra = {
            "individuals completed": self.individuals_updated,
            "photos completed": self.photos_updated,
            "tags added": self.tags_added,
            "archive entries ignored": self.count("member"),
            "warnings": self.count("warning"),
        }
        return (
            f"{self.added} photos added, {self.already_present} already in the gallery, "
            f"{self.individuals_created} new individuals, {self.count('row')} rows skipped"
            + "".join(f", {n} {what}" for what, n in extra.items() if n)
        )


@dataclass(frozen=True)
class _IndividualSpec:
    line: int
    code: str
    name: str | None
    species: str
    status: str
    merged_into: str | None
    notes: str
    tags: tuple[tuple[str, str], ...] = ()  # (kind, value), checked


def _read_individuals(data: bytes, problems: list[ImportProblem]) -> list[_IndividualSpec]:
    what = f"The archive's {INDIVIDUALS_NAME}"
    fields, rows = csv_rows(data, what, keep=frozenset({"notes"}))
    if "code" not in fields:
        raise ManifestError(f"{what} needs a column code (found: {', '.join(fields) or 'none'}).")
    specs: list[_IndividualSpec] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{INDIVIDUALS_NAME} line {line}"
        try:
            code = normalize_code(unescape_cell(row.get("code", "")))
        except ValueError as exc:
            problems.append(ImportProblem(where, str(exc)))
            continue
        status = row.get("status", "").lower() or "active"
        merged_into = unescape_cell(row.get("merged_into", "")).strip() or None
        reason = ""
        if code in seen:
            reason = f"the code {code} appears twice"
        elif status not in INDIVIDUAL_STATUSES:
            reason = f"unknown status {status!r} (use {', '.join(INDIVIDUAL_STATUSES)})"
        elif status == "merged" and merged_into is None:
            reason = f"{code} is marked merged but merged_into is empty"
        elif status == "merged" and merged_into == code:
            reason = f"{code} cannot be merged into itself"
        if reason:
            problems.append(ImportProblem(where, reason))
            continue
        try:
            name = check_text(unescape_cell(row.get("name", "")), "name", max_length=MAX_NAME_LENGTH).strip() or None
            species = check_text(unescape_cell(row.get("species", "")), "species", max_length=MAX_NAME_LENGTH).strip()
            notes = check_text(
                unescape_cell(row.get("notes", "")), "notes", max_length=MAX_NOTES_LENGTH, multiline=True
            )
        except TextError as exc:
            problems.append(ImportProblem(where, str(exc)))
            continue
        seen.add(code)
        specs.append(_IndividualSpec(line, code, name, species, status, merged_into, notes, _row_tags(row, where)))
    return specs


def _row_tags(row: dict[str, str], where: str) -> tuple[tuple[str, str], ...]:
    """The ``flipper_tags``, ``pit_tags`` and ``alternate_ids`` of a row; a bad tag refuses the whole import."""
    found = []
    for column, kind in TAG_COLUMNS.items():
        for value in tags.split_cell(unescape_cell(row.get(column, ""))):
            try:
                found.append(tags.check_tag(kind, value))
            except ScuteError as exc:
                raise ManifestError(f"{where}: {exc} Nothing was imported.") from None
    return tuple(found)


def _check_tags(session: Session, specs: Sequence[_IndividualSpec], rows: Sequence[ManifestRow]) -> None:
    """Refuse the import (before anything is written) if a tag of either file is bad or would name two
    individuals."""
    wanted = [(f"{INDIVIDUALS_NAME} line {s.line}", s.code, kind, value) for s in specs for kind, value in s.tags]
    wanted += [
        (f"{MANIFEST_NAME} line {i + 2}", r.identity, kind, value) for i, r in enumerate(rows) for kind, value in r.tags
    ]
    problem = tag_problem(session, wanted) if wanted else None
    if problem is not None:
        raise ManifestError(f"{problem}. Nothing was imported.")


def _attach_tags(session: Session, individual_id: int, spec: _IndividualSpec, report: ZipImportReport) -> None:
    for kind, value in spec.tags:
        report.tags_added += int(tags.attach_imported(session, individual_id, kind, value))


def _apply_individuals(session: Session, specs: Sequence[_IndividualSpec], report: ZipImportReport) -> list[int]:
    """Create the individuals that are new (survivors before the ones merged into them); returns their ids."""
    created: list[int] = []
    pending = list(specs)
    while pending:
        deferred: list[_IndividualSpec] = []
        for spec in pending:
            existing = session.exec(select(Individual).where(Individual.code == spec.code)).first()
            if existing is not None:
                if _fill_individual(session, existing, spec):
                    report.individuals_updated += 1
                _attach_tags(session, existing.id, spec, report)  # type: ignore[arg-type]
                continue
            target_id = None
            if spec.merged_into is not None:
                target = session.exec(select(Individual).where(Individual.code == spec.merged_into)).first()
                if target is None:
                    deferred.append(spec)
                    continue
                target_id = target.id
            individual = Individual(
                code=spec.code,
                name=spec.name,
                species=spec.species,
                status=spec.status,
                merged_into_id=target_id,
                notes=spec.notes,
            )
            try:
                with session.begin_nested():
                    session.add(individual)
                    session.flush()
            except IntegrityError:
                report.problems.append(
                    ImportProblem(f"{INDIVIDUALS_NAME} line {spec.line}", f"{spec.code} could not be created")
                )
                continue
            created.append(individual.id)  # type: ignore[arg-type]
            report.individuals_created += 1
            _attach_tags(session, individual.id, spec, report)  # type: ignore[arg-type]
        if len(deferred) == len(pending):
            for spec in deferred:
                report.problems.append(
                    ImportProblem(
                        f"{INDIVIDUALS_NAME} line {spec.line}",
                        f"{spec.code} is merged into {spec.merged_into}, which is neither in the file nor "
                        "in the gallery",
                    )
                )
            break
        pending = deferred
    return created


def _fill_individual(session: Session, individual: Individual, spec: _IndividualSpec) -> bool:
    """Fill in what an existing individual lacks; curated values and the status are never overwritten."""
    changed = False
    if spec.name and not individual.name:
        individual.name, changed = spec.name, True
    if spec.species and not individual.species:
        individual.species, changed = spec.species, True
    if spec.notes and not individual.notes:
        individual.notes, changed = spec.notes, True
    if changed:
        session.add(individual)
        session.flush()
    return changed


def import_zip(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    path: Path,
    *,
    limits: ZipLimits | None = None,
    actor: User | int | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> ZipImportReport:
    """Import the catalogue ZIP at ``path``; see the module docstring. Raises :class:`ArchiveError`."""
    with open_archive(path, limits) as archive:
        return import_archive(db, store, engine, archive, actor=actor, progress=progress, work_dir=work_dir)


def import_archive(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    archive: CatalogueArchive,
    *,
    actor: User | int | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
    chunk_size: int = 32,
) -> ZipImportReport:
    """Import an opened archive: individuals first, then the manifest's rows a chunk at a time.

    ``actor``, when given, must be an active admin; the import is then recorded in the audit log, also
    when it changed nothing or was stopped part-way. The command line imports without one.
    """
    report = ZipImportReport(problems=list(archive.problems))
    limits = archive.limits
    try:
        manifest_data = archive.read(archive.manifest_name, limits.max_csv_bytes)
        individuals_data = (
            archive.read(archive.individuals_name, limits.max_csv_bytes) if archive.individuals_name else None
        )
    except ScuteError as exc:
        raise ArchiveError(f"The archive's {MANIFEST_NAME} or {INDIVIDUALS_NAME} cannot be read: {exc}.") from None
    rows, raw_rows = parse_manifest(manifest_data, f"The archive's {MANIFEST_NAME}")
    specs = _read_individuals(individuals_data, report.problems) if individuals_data is not None else []
    if actor is not None:
        with session_scope(db) as session:
            actor = acting_user(session, actor, "admin", action="import a catalogue").id

    with session_scope(db) as session:
        lock_for_write(session)
        _check_tags(session, specs, rows)
        report.created_ids += _apply_individuals(session, specs, report) if specs else []
    try:
        with tempfile.TemporaryDirectory(prefix="scute-import-", dir=work_dir) as tmp:
            photos_dir = Path(tmp)
            for start in range(0, len(rows), chunk_size):
                _import_chunk(
                    db,
                    store,
                    engine,
                    archive,
                    rows,
                    raw_rows,
                    start,
                    min(start + chunk_size, len(rows)),
                    photos_dir,
                    report,
                )
                if progress:
                    progress(min(start + chunk_size, len(rows)), len(rows))
            if not rows and progress:
                progress(0, 0)
    except BaseException:
        if actor is not None:
            audit_import(db, actor, _audit_payload(archive, report, stopped=True), report.created_ids)
        raise
    if actor is not None:
        audit_import(db, actor, _audit_payload(archive, report), report.created_ids)
    log.info("Imported %s: %s", archive.path.name, report.summary())
    return report


def _audit_payload(archive: CatalogueArchive, report: ZipImportReport, *, stopped: bool = False) -> dict[str, Any]:
    return {
        "archive": archive.path.name,
        "added": report.added,
        "already_present": report.already_present,
        "individuals_created": report.individuals_created,
        "individuals_updated": report.individuals_updated,
        "photos_updated": report.photos_updated,
        "tags_added": report.tags_added,
        "skipped": len(report.problems),
        "stopped": stopped,
    }


def _import_chunk(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    archive: CatalogueArchive,
    rows: Sequence[ManifestRow],
    raw_rows: Sequence[dict[str, str]],
    start: int,
    stop: int,
    photos_dir: Path,
    report: ZipImportReport,
) -> None:
    """Unpack the photos of rows ``start:stop``, import them, fill in their extras, delete the files."""
    limit = archive.limits.max_member_bytes
    ready: list[tuple[int, ManifestRow, str, PhotoExtras, str]] = []  # line, row, member, extras, sha
    for index in range(start, stop):
        line, row = index + 2, rows[index]
        where = f"{MANIFEST_NAME} line {line}"
        member, reason = archive.resolve(row.path)
        if member is None:
            report.problems.append(ImportProblem(where, f"{row.path[:200]}: {reason}"))
            continue
        try:
            extras = parse_extras(raw_rows[index])
            path = archive.extract(member, photos_dir, limit)
            sha = sha256_hex(path.read_bytes())
            if extras.sha256 is not None and extras.sha256 != sha:
                raise ScuteError("the file does not match its sha256 checksum (damaged or replaced)")
        except ScuteError as exc:
            report.problems.append(ImportProblem(where, f"{row.path[:200]}: {exc}"))
            continue
        ready.append((line, ManifestRow(member, row.identity, row.side, tags=row.tags), member, extras, sha))
    try:
        if not ready:
            return
        result = import_rows(db, store, engine, [item[1] for item in ready], photos_dir)
        failed: set[int] = set()
        for problem in result.problems:
            line, _, _, _, _ = ready[problem.line - 2]
            failed.add(line)
            report.problems.append(
                ImportProblem(f"{MANIFEST_NAME} line {line}", f"{rows[line - 2].path[:200]}: {problem.reason}")
            )
        report.added += result.added
        report.already_present += result.already_present
        report.individuals_created += result.individuals_created
        report.created_ids += result.created_ids
        report.tags_added += result.tags_added
        fills = [
            PhotoFill(line, rows[line - 2].path, member, extras, sha)
            for line, _, member, extras, sha in ready
            if line not in failed and extras != PhotoExtras(sha256=extras.sha256)
        ]
        completed, warnings = fill_photos(db, store, engine, fills)
        report.photos_updated += completed
        report.problems += warnings
    finally:
        for item in photos_dir.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
