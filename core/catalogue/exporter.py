"""Export the catalogue: CSV files and photo ZIPs from one consistent read of the database.

:func:`export_catalogue` writes one folder:

- ``individuals.csv``: code, name, species, status, merged_into, notes, photos, first_seen, last_seen, and the
  tags (``flipper_tags``, ``pit_tags``, ``alternate_ids``, each ``;``-separated);
- ``photos.csv``: every stored photo, including removed ones and photos of pending sightings;
- ``encounters.csv``: one row per identified gallery photo (individual code, date, time, GPS, side,
  source), the table capture–recapture software starts from; merged codes are replaced by the survivor;
- ``README.txt``: which positions the export holds (exact, or rounded for volunteers: :mod:`core.catalogue.locations`)
  and which individuals (all, or a species / region filter, which applies to the individuals, encounters,
  occurrences and histories tables);
- ``occurrences_dwc.csv``: the encounters as Darwin Core occurrences (:mod:`core.catalogue.analysis`); with
  sampling ``occasions``, ``encounter_histories.csv`` and MARK's ``encounter_histories.inp``;
- ``sightings.csv``, ``candidates.csv``, ``votes.csv``, ``decisions.csv`` and ``audit.csv``: the full
  review history;
- with ``photos=True``, ``catalogue.zip``: ``manifest.csv`` (``path,identity,side`` plus the photo's
  checksum, date, GPS, crop and rotation), ``individuals.csv`` and ``photos/<folder>/<sha256>.<ext>``
  (the folder is the code made safe as a file name);
  with ``per_individual=True``, ``individuals/<code>.zip`` in the same form for each individual.

Every ZIP written here is a catalogue that :func:`core.catalogue.zip_import.import_zip` reads back:
export followed by import into an empty database gives the same individuals (codes, names, species,
notes, status, tags) and photos (content, side, date, GPS, crop, rotation). Cells are written by
:mod:`core.catalogue.format`, spreadsheet-safe. Over 500 lines because the nine tables are read from
one snapshot, and splitting their writers apart would scatter the columns from the rows.
"""

from __future__ import annotations

import json
import logging
import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, col, select

from core.catalogue.analysis import (
    DARWIN_CORE_COLUMNS,
    Encounter,
    EncounterHistories,
    darwin_core_rows,
    encounter_histories,
)
from core.catalogue.format import (
    CATALOGUE_ZIP,
    INDIVIDUAL_COLUMNS,
    INDIVIDUALS_NAME,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    TAG_COLUMNS,
    crop_text,
    csv_bytes,
    iso,
)
from core.catalogue.locations import EXACT, README_NAME, Locations, Places, protect, read_places, readme
from core.errors import ScuteError
from core.io import atomic_output, atomic_write, sha256_hex
from core.review.tags import tags_by_individual
from core.store.models import (
    AuditLog,
    Candidate,
    Individual,
    Photo,
    Sighting,
    User,
    Vote,
)
from core.store.photos import PhotoStore

log = logging.getLogger(__name__)

DARWIN_CORE_NAME = "occurrences_dwc.csv"
HISTORIES_NAME = "encounter_histories.csv"
MARK_NAME = "encounter_histories.inp"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same catalogue gives the same ZIP bytes


class ExportError(ScuteError):
    """The export could not be written (folder not writable, disk full)."""


@dataclass
class ExportReport:
    """What was written where; ``problems`` lists photos whose file was missing or damaged (left out)."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    individuals: int = 0
    photos: int = 0
    encounters: int = 0
    sightings: int = 0
    votes: int = 0
    zipped_photos: int = 0
    problems: list[str] = field(default_factory=list)
    histories: EncounterHistories | None = None  # with sampling occasions

    def summary(self) -> str:
        text = (
            f"Exported {self.individuals} individuals, {self.photos} photos, {self.encounters} encounters, "
            f"{self.sightings} sightings and {self.votes} votes to {self.out_dir}"
        )
        if self.zipped_photos:
            text += f" ({self.zipped_photos} photos in {CATALOGUE_ZIP})"
        return text + "."


@dataclass(frozen=True)
class _Snapshot:
    """Everything an export needs, read in one transaction so that the files agree with each other."""

    individuals: dict[int, Individual]
    photos: list[Photo]
    sightings: list[Sighting]
    candidates: list[Candidate]
    votes: list[Vote]
    audit: list[AuditLog]
    users: dict[int, str]
    tags: dict[int, dict[str, list[str]]]  # individual id -> kind -> values

    def survivor(self, individual_id: int | None) -> Individual | None:
        """The individual a (possibly merged) individual now counts as; bounded against broken chains."""
        current = self.individuals.get(individual_id) if individual_id is not None else None
        for _ in range(len(self.individuals) + 1):
            if current is None or current.status != "merged" or current.merged_into_id is None:
                break
            current = self.individuals.get(current.merged_into_id)
        return current

    def code(self, individual_id: int | None) -> str:
        individual = self.individuals.get(individual_id) if individual_id is not None else None
        return individual.code if individual is not None else ""

    def current_code(self, individual_id: int | None) -> str:
        survivor = self.survivor(individual_id)
        return survivor.code if survivor is not None else ""

    def user(self, user_id: int | None) -> str:
        return self.users.get(user_id, f"#{user_id}") if user_id is not None else ""


def _begin_snapshot(session: Session) -> None:
    """Start a read transaction that sees one state of the database until it ends."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN")  # pysqlite would otherwise read in autocommit mode


def _read_snapshot(db: SqlEngine) -> _Snapshot:
    with Session(db, expire_on_commit=False) as session:
        if db.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        _begin_snapshot(session)
        snapshot = _Snapshot(
            individuals={i.id: i for i in session.exec(select(Individual).order_by(col(Individual.code))).all()},  # type: ignore[misc]
            photos=list(session.exec(select(Photo).order_by(col(Photo.id))).all()),
            sightings=list(session.exec(select(Sighting).order_by(col(Sighting.id))).all()),
            candidates=list(
                session.exec(select(Candidate).order_by(col(Candidate.sighting_id), col(Candidate.rank))).all()
            ),
            votes=list(session.exec(select(Vote).order_by(col(Vote.sighting_id), col(Vote.id))).all()),
            audit=list(session.exec(select(AuditLog).order_by(col(AuditLog.id))).all()),
            users={u.id: u.username for u in session.exec(select(User)).all()},  # type: ignore[misc]
            tags=tags_by_individual(session),
        )
        session.expunge_all()  # detached rows keep their values; ending the transaction would expire them
        session.rollback()
    return snapshot


def _photo_date(photo: Photo, sighting: Sighting | None) -> datetime | None:
    return photo.taken_at or (sighting.taken_at if sighting is not None else None)


def _gallery_photos(snap: _Snapshot) -> list[tuple[Photo, Individual]]:
    """Photos in the gallery with the individual they count for (retired ones included), by code."""
    pairs = []
    for photo in snap.photos:
        owner = snap.survivor(photo.individual_id)
        if photo.in_gallery and owner is not None and owner.status != "merged":
            pairs.append((photo, owner))
    return sorted(pairs, key=lambda pair: (pair[1].code, pair[0].id))


def _individual_rows(snap: _Snapshot) -> list[list[Any]]:
    by_photo = {s.photo_id: s for s in snap.sightings}
    counts: dict[int, int] = {}
    dates: dict[int, list[datetime]] = {}
    for photo, owner in _gallery_photos(snap):
        counts[owner.id] = counts.get(owner.id, 0) + 1  # type: ignore[index]
        when = _photo_date(photo, by_photo.get(photo.id))  # type: ignore[arg-type]
        if when is not None:
            dates.setdefault(owner.id, []).append(when)  # type: ignore[arg-type]
    rows = []
    for individual in snap.individuals.values():
        seen = dates.get(individual.id, [])  # type: ignore[arg-type]
        rows.append(
            [
                individual.code,
                individual.name or "",
                individual.species,
                individual.status,
                snap.code(individual.merged_into_id),
                individual.notes,
                counts.get(individual.id, 0),  # type: ignore[arg-type]
                min(seen).date().isoformat() if seen else "",
                max(seen).date().isoformat() if seen else "",
                individual.created_at,
                *(";".join(snap.tags.get(individual.id, {}).get(kind, [])) for kind in TAG_COLUMNS.values()),  # type: ignore[arg-type]
            ]
        )
    return rows


def _folder_names(individuals: Iterable[Individual]) -> dict[int, str]:
    """A file-system-safe, unique folder name per individual (codes may hold any character)."""
    names: dict[int, str] = {}
    used: set[str] = set()
    for individual in individuals:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", individual.code).strip("._") or "individual"
        name = base if base.lower() not in used else f"{base}-{individual.id}"
        used.add(name.lower())
        names[individual.id] = name  # type: ignore[index]
    return names


def _zip_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = compress
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def _write_catalogue_zip(
    dest: Path,
    store: PhotoStore,
    snap: _Snapshot,
    entries: Sequence[tuple[Photo, Individual]],
    individuals: Sequence[list[Any]],
    folders: dict[int, str],
    problems: list[str],
) -> int:
    """Write a ZIP that :func:`import_zip` reads back; returns how many photos went in."""
    by_photo = {s.photo_id: s for s in snap.sightings}
    manifest: list[list[Any]] = []
    with atomic_output(dest) as handle, zipfile.ZipFile(handle, "w", allowZip64=True) as zf:
        for photo, owner in entries:
            try:
                data = store.path(photo.path).read_bytes()
            except (OSError, ValueError) as exc:
                problems.append(f"photo {photo.id} ({owner.code}): its file cannot be read ({exc})")
                continue
            if sha256_hex(data) != photo.sha256:
                problems.append(f"photo {photo.id} ({owner.code}): its file is damaged (checksum differs)")
                continue
            member = f"photos/{folders[owner.id]}/{photo.sha256}{Path(photo.path).suffix}"  # type: ignore[index]
            zf.writestr(_zip_info(member, zipfile.ZIP_STORED), data)
            sighting = by_photo.get(photo.id)  # type: ignore[arg-type]
            manifest.append(
                [
                    member,
                    owner.code,
                    photo.side,
                    photo.sha256,
                    iso(_photo_date(photo, sighting)),
                    photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None),
                    photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None),
                    crop_text(photo.crop),
                    photo.rotation,
                    photo.original_name,
                ]
            )
        manifest_csv = csv_bytes(MANIFEST_COLUMNS, manifest)
        zf.writestr(_zip_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED), manifest_csv)
        zf.writestr(_zip_info(INDIVIDUALS_NAME, zipfile.ZIP_DEFLATED), csv_bytes(INDIVIDUAL_COLUMNS, individuals))
    return len(manifest)


def export_catalogue(
    db: SqlEngine,
    store: PhotoStore,
    out_dir: Path,
    *,
    photos: bool = False,
    per_individual: bool = False,
    occasions: Sequence[tuple[date, date]] = (),
    locations: Locations = EXACT,
    individuals: set[int] | None = None,
    scope: str = "",
) -> ExportReport:
    """Write the CSV files (and with ``photos`` the catalogue ZIP) into ``out_dir``; see the module docstring.

    ``locations``: positions exact or rounded (every table, and audit payloads); a rounded export holds no photo
    files, whose EXIF would give the position away. ``individuals``: only these in the analysis tables (None: all),
    ``scope`` says which in words for the README. Files are replaced atomically, so an interrupted export never
    leaves a half-written file behind. Raises :class:`ExportError` when the folder cannot be written.
    """
    if not locations.exact and (photos or per_individual):
        raise ExportError("An export with rounded positions cannot hold photo files: their EXIF has the exact one.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(f"{out_dir} exists and is not a folder.") from None
    except OSError as exc:
        raise ExportError(f"Cannot create the folder {out_dir}: {exc.strerror or exc}.") from None
    snap = _read_snapshot(db)
    places = read_places(db)
    protect(snap.photos, snap.sightings, snap.audit, locations)
    report = ExportReport(out_dir=out_dir)
    try:
        atomic_write(out_dir / README_NAME, readme(locations, scope if individuals is not None else "").encode())
        report.files.append(out_dir / README_NAME)
        _export_files(
            snap,
            store,
            out_dir,
            report,
            photos=photos,
            per_individual=per_individual,
            occasions=occasions,
            locations=locations,
            only=individuals,
            places=places,
        )
    except OSError as exc:
        raise ExportError(f"Cannot write the export into {out_dir}: {exc.strerror or exc}.") from None
    log.info("%s", report.summary())
    return report


def _export_files(
    snap: _Snapshot,
    store: PhotoStore,
    out_dir: Path,
    report: ExportReport,
    *,
    photos: bool,
    per_individual: bool,
    occasions: Sequence[tuple[date, date]] = (),
    locations: Locations = EXACT,
    only: set[int] | None = None,
    places: Places | None = None,
) -> None:
    def write(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        dest = out_dir / name
        atomic_write(dest, csv_bytes(header, rows))
        report.files.append(dest)

    by_photo = {s.photo_id: s for s in snap.sightings}
    photo_by_id = {p.id: p for p in snap.photos}
    individuals = _individual_rows(snap)
    if only is not None:
        individuals = [row for row in individuals if row[0] in {snap.code(i) for i in only}]
    write(INDIVIDUALS_NAME, INDIVIDUAL_COLUMNS, individuals)
    report.individuals = len(individuals)

    write(
        "photos.csv",
        (
            "photo_id",
            "sha256",
            "individual",
            "stored_under",
            "in_gallery",
            "side",
            "taken_at",
            "latitude",
            "longitude",
            "crop",
            "rotation",
            "width",
            "height",
            "original_name",
            "uploaded_by",
            "sighting_id",
            "created_at",
            "file",
        ),
        (
            [
                p.id,
                p.sha256,
                snap.current_code(p.individual_id),
                snap.code(p.individual_id),
                p.in_gallery,
                p.side,
                p.taken_at,
                p.latitude,
                p.longitude,
                crop_text(p.crop),
                p.rotation,
                p.width,
                p.height,
                p.original_name,
                snap.user(p.uploaded_by),
                by_photo[p.id].id if p.id in by_photo else None,
                p.created_at,
                p.path,
            ]
            for p in snap.photos
        ),
    )
    report.photos = len(snap.photos)

    encounters = []
    records: list[Encounter] = []
    for photo, owner in _gallery_photos(snap):
        if only is not None and owner.id not in only:
            continue
        sighting = by_photo.get(photo.id)  # type: ignore[arg-type]
        site_id, site_name = (places or Places()).site_of(photo, sighting)
        when = _photo_date(photo, sighting)
        latitude = photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None)
        longitude = photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None)
        observer = snap.user(sighting.submitted_by if sighting is not None else photo.uploaded_by)
        records.append(
            Encounter(
                photo.id,  # type: ignore[arg-type]
                owner.code,
                owner.name or "",
                owner.species,
                when,
                latitude,
                longitude,
                photo.side,
                observer,
                photo.sha256,
                site_name,
                site_id,
            )
        )
        encounters.append(
            [
                photo.id,
                owner.code,
                owner.name or "",
                owner.status,
                when.astimezone(UTC).date().isoformat() if when else "",
                when.astimezone(UTC).strftime("%H:%M:%S") if when else "",
                latitude,
                longitude,
                photo.side,
                "sighting" if sighting is not None else "catalogue",
                sighting.id if sighting is not None else None,
                observer,
                photo.sha256,
                photo.created_at,
            ]
        )
    write(
        "encounters.csv",
        (
            "encounter_id",
            "individual",
            "name",
            "individual_status",
            "date",
            "time_utc",
            "latitude",
            "longitude",
            "side",
            "source",
            "sighting_id",
            "observer",
            "photo_sha256",
            "recorded_at",
        ),
        encounters,
    )
    report.encounters = len(encounters)
    write(DARWIN_CORE_NAME, DARWIN_CORE_COLUMNS, darwin_core_rows(records, locations))
    if occasions:
        histories = encounter_histories(records, occasions)
        write(HISTORIES_NAME, *histories.csv_rows())
        atomic_write(out_dir / MARK_NAME, histories.mark_inp().encode())
        report.files.append(out_dir / MARK_NAME)
        report.histories = histories

    votes_per_sighting: dict[int, int] = {}
    for vote in snap.votes:
        votes_per_sighting[vote.sighting_id] = votes_per_sighting.get(vote.sighting_id, 0) + 1
    write(
        "sightings.csv",
        (
            "sighting_id",
            "status",
            "submitted_by",
            "submitted_at",
            "taken_at",
            "latitude",
            "longitude",
            "side",
            "notes",
            "photo_id",
            "photo_sha256",
            "new_individual_probability",
            "votes",
            "decision",
            "individual",
            "decided_individual",
            "decided_by",
            "decided_at",
        ),
        (
            [
                s.id,
                s.status,
                snap.user(s.submitted_by),
                s.created_at,
                s.taken_at,
                s.latitude,
                s.longitude,
                s.side,
                s.notes,
                s.photo_id,
                photo_by_id[s.photo_id].sha256 if s.photo_id in photo_by_id else "",
                s.new_individual_probability,
                votes_per_sighting.get(s.id, 0),
                s.decision,  # type: ignore[arg-type]
                snap.current_code(s.decided_individual_id),
                snap.code(s.decided_individual_id),
                snap.user(s.decided_by),
                s.decided_at,
            ]
            for s in snap.sightings
        ),
    )
    report.sightings = len(snap.sightings)

    write(
        "candidates.csv",
        ("sighting_id", "rank", "code_then", "individual_now", "score", "probability", "matches"),
        (
            [c.sighting_id, c.rank, c.code, snap.current_code(c.individual_id), c.score, c.probability, c.n_matches]
            for c in snap.candidates
        ),
    )
    write(
        "votes.csv",
        ("vote_id", "sighting_id", "user", "decision", "individual", "individual_now", "comment", "created_at"),
        (
            [
                v.id,
                v.sighting_id,
                snap.user(v.user_id),
                v.decision,
                snap.code(v.individual_id),
                snap.current_code(v.individual_id),
                v.comment,
                v.created_at,
            ]
            for v in snap.votes
        ),
    )
    report.votes = len(snap.votes)
    decided = {s.id: s.decided_individual_id for s in snap.sightings}
    write(
        "decisions.csv",
        (
            "audit_id",
            "sighting_id",
            "decided_at",
            "decided_by",
            "decision",
            "code_then",
            "individual_now",
            "how",
            "photo_id",
        ),
        (
            [
                e.id,
                e.target_id,
                e.created_at,
                snap.user(e.user_id),
                e.payload.get("decision"),
                e.payload.get("code"),
                snap.current_code(decided.get(e.target_id)),  # type: ignore[arg-type]
                e.payload.get("how"),
                e.payload.get("photo_id"),
            ]
            for e in snap.audit
            if e.action == "sighting.decide"
        ),
    )
    write(
        "audit.csv",
        ("audit_id", "created_at", "user", "action", "target_type", "target_id", "reverts_id", "payload"),
        (
            [
                e.id,
                e.created_at,
                snap.user(e.user_id) or "system",
                e.action,
                e.target_type,
                e.target_id,
                e.reverts_id,
                json.dumps(e.payload, sort_keys=True, ensure_ascii=False),
            ]
            for e in snap.audit
        ),
    )

    if photos or per_individual:
        entries = [(p, o) for p, o in _gallery_photos(snap) if only is None or o.id in only]
        folders = _folder_names(snap.individuals.values())
        if photos:
            dest = out_dir / CATALOGUE_ZIP
            report.zipped_photos = _write_catalogue_zip(
                dest, store, snap, entries, individuals, folders, report.problems
            )
            report.files.append(dest)
        if per_individual:
            (out_dir / "individuals").mkdir(exist_ok=True)
            rows_by_code = {row[0]: row for row in individuals}
            for individual in snap.individuals.values():
                own = [(p, o) for p, o in entries if o.id == individual.id]
                if not own:
                    continue
                dest = out_dir / "individuals" / f"{folders[individual.id]}.zip"  # type: ignore[index]
                problems = [] if photos else report.problems  # reported once when both are written
                _write_catalogue_zip(dest, store, snap, own, [rows_by_code[individual.code]], folders, problems)
                report.files.append(dest)


def write_individual_zip(db: SqlEngine, store: PhotoStore, code: str, dest: Path) -> int:
    """One individual's gallery photos as an importable ZIP (for a download button); returns the count."""
    snap = _read_snapshot(db)
    code = code.strip()
    individual = next((i for i in snap.individuals.values() if i.code == code), None)
    if individual is None:
        raise ExportError(f"There is no individual {code!r}.")
    entries = [(p, o) for p, o in _gallery_photos(snap) if o.id == individual.id]
    rows = [row for row in _individual_rows(snap) if row[0] == individual.code]
    problems: list[str] = []
    try:
        return _write_catalogue_zip(Path(dest), store, snap, entries, rows, _folder_names([individual]), problems)
    except OSError as exc:
        raise ExportError(f"Cannot write {dest}: {exc.strerror or exc}.") from None
