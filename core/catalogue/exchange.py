"""Moving catalogues in and out of Scute: import from a ZIP, export as CSV files and photo ZIPs.

**Export** (:func:`export_catalogue`) writes one folder from a single consistent read of the database:

- ``individuals.csv``: code, name, species, status, merged_into, notes, photos, first_seen, last_seen;
- ``photos.csv``: every stored photo, including removed ones and photos of pending sightings;
- ``encounters.csv``: one row per identified gallery photo (individual code, date, time, GPS, side,
  source), the table capture–recapture software starts from; merged codes are replaced by the survivor;
- ``sightings.csv``, ``candidates.csv``, ``votes.csv``, ``decisions.csv`` and ``audit.csv``: the full
  review history;
- with ``photos=True``, ``catalogue.zip``: ``manifest.csv`` (``path,identity,side`` plus the photo's
  checksum, date, GPS, crop and rotation), ``individuals.csv`` and ``photos/<folder>/<sha256>.<ext>``
  (the folder is the code made safe as a file name);
  with ``per_individual=True``, ``individuals/<code>.zip`` in the same form for each individual.
  Every ZIP written here is a catalogue that :func:`import_zip` reads back: export followed by import
  into an empty database gives the same individuals (codes, names, species, notes, status) and photos
  (content, side, date, GPS, crop, rotation).

Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage
return) are written with a leading apostrophe, and so is text that starts with an apostrophe, so that
import can strip exactly one again. Only ``manifest.csv`` is written verbatim: unzipped, it is also a
plain manifest for ``python -m core import --manifest``.

**Import** (:func:`import_zip`) accepts any ZIP with a ``manifest.csv`` (``path,identity[,side]``) at
its top or inside one top folder, the photos at the paths it names (relative to the manifest), and
optionally ``individuals.csv`` beside it. The archive is checked before anything is written: its
size, the number of members, their total uncompressed size and compression ratios (zip bombs) are
limited (:class:`ZipLimits`). Members with absolute paths or ``..``, symbolic links, special files,
encrypted and duplicate members are never extracted; rows naming them are reported and skipped.
Photos are extracted a few at a time into a private temporary folder, by their checked names only,
and each row goes through :func:`core.catalogue.importer.import_rows` (its own transaction), so an interrupted
import resumes where it stopped and a second run adds nothing. Date, GPS, crop and rotation from
the manifest only fill in what the photo lacks; existing individuals only get missing names, species
and notes filled in, never a changed status.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import posixpath
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.engine.images import MAX_BYTES
from core.errors import ManifestError, ScuteError
from core.review.users import acting_user
from core.safe_text import TextError, check_text, upload_label
from core.store.audit import ROW_LOCK, lock_for_write, record
from core.store.db import session_scope
from core.store.gallery import normalize_code, record_features
from core.store.models import (
    INDIVIDUAL_STATUSES,
    AuditLog,
    Candidate,
    Individual,
    Photo,
    Sighting,
    User,
    Vote,
    validate_crop,
)
from core.store.photos import PhotoStore, sha256_hex

if TYPE_CHECKING:
    from core.engine.search import Engine
    from core.evaluation.protocol import ManifestRow

log = logging.getLogger(__name__)

__all__ = [
    "ArchiveError",
    "CatalogueArchive",
    "ExportError",
    "ExportReport",
    "ImportProblem",
    "ZipImportReport",
    "ZipLimits",
    "export_catalogue",
    "import_archive",
    "import_zip",
    "open_archive",
    "write_individual_zip",
]

Progress = Callable[[int, int], None]

MANIFEST_NAME = "manifest.csv"
INDIVIDUALS_NAME = "individuals.csv"
CATALOGUE_ZIP = "catalogue.zip"
MANIFEST_COLUMNS = (
    "path",
    "identity",
    "side",
    "sha256",
    "taken_at",
    "latitude",
    "longitude",
    "crop",
    "rotation",
    "original_name",
)
INDIVIDUAL_COLUMNS = (
    "code",
    "name",
    "species",
    "status",
    "merged_into",
    "notes",
    "photos",
    "first_seen",
    "last_seen",
    "created_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same catalogue gives the same ZIP bytes
_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 20  # members smaller than this cannot do harm whatever their ratio
_MAX_NAME = 200  # as core.curation.MAX_NAME_LENGTH
_MAX_NOTES = 10_000  # as core.curation.MAX_NOTES_LENGTH


class ArchiveError(ScuteError):
    """The ZIP cannot be imported at all (not a ZIP, too large, a zip bomb, no manifest)."""


class ExportError(ScuteError):
    """The export could not be written (folder not writable, disk full)."""


# --- CSV cells ---------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Neutralise spreadsheet formulas: ``=1+1`` is written ``'=1+1``; see the module docstring."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unescape(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _cell(value: Any, escape: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return _escape(text) if escape else text


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="seconds")


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]], *, escape: bool = True) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value, escape) for value in row])
    return buffer.getvalue().encode("utf-8")


def _crop_text(crop: tuple[float, float, float, float] | None) -> str:
    return "" if crop is None else " ".join(repr(float(v)) for v in crop)


# --- ZIP limits and the archive ----------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLimits:
    """What an imported ZIP may hold; the defaults admit a catalogue of some ten thousand field photos."""

    max_archive_bytes: int = 16 << 30
    max_members: int = 50_000
    max_total_bytes: int = 16 << 30  # sum of the members' uncompressed sizes
    max_member_bytes: int = MAX_BYTES  # the largest photo Scute accepts anyway
    max_csv_bytes: int = 64 << 20
    max_ratio: float = 100.0  # uncompressed / compressed, for members above 1 MiB

    def __post_init__(self) -> None:
        for name in ("max_archive_bytes", "max_members", "max_total_bytes", "max_member_bytes", "max_csv_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive")
        if not self.max_ratio >= 1:
            raise ValueError("max_ratio must be at least 1")


@dataclass(frozen=True)
class ImportProblem:
    """Something left out: ``where`` is e.g. ``manifest.csv line 7`` or ``archive member '../x.jpg'``.

    ``kind``: ``row`` (a manifest or individuals.csv row skipped), ``member`` (an archive entry never
    extracted) or ``warning`` (the row was imported, but not all of it).
    """

    where: str
    reason: str
    kind: str = "row"

    def __str__(self) -> str:
        return f"{'warning: ' if self.kind == 'warning' else ''}{self.where}: {self.reason}"


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _member_name(raw: str) -> tuple[str | None, str]:
    """The normalised member name, or None and why it is unsafe (absolute, leaves the archive, …)."""
    if "\x00" in raw:
        return None, "its name contains a NUL character"
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None, "it has an absolute path"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None, "its path leads out of the archive (..)"
    return "/".join(parts), ""


def _member_kind_problem(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "it is a symbolic link"
    if mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "it is not a regular file"
    if info.flag_bits & 0x1:
        return "it is encrypted"
    return ""


class CatalogueArchive:
    """An opened, checked catalogue ZIP. Use :func:`open_archive`; members are read only by checked names."""

    def __init__(self, path: Path, limits: ZipLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ZipLimits()
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.unsafe: dict[str, str] = {}  # normalised (or raw) name -> why it is not extracted
        self.problems: list[ImportProblem] = []
        self._zip = self._open()
        try:
            self._check()
            self.base, self.manifest_name = self._find_manifest()
        except BaseException:
            self._zip.close()
            raise
        individuals = posixpath.join(self.base, INDIVIDUALS_NAME) if self.base else INDIVIDUALS_NAME
        self.individuals_name: str | None = individuals if individuals in self.members else None

    def _open(self) -> zipfile.ZipFile:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise ArchiveError(f"The archive {self.path} does not exist.") from None
        except OSError as exc:
            raise ArchiveError(f"Cannot read {self.path}: {exc.strerror or exc}.") from None
        if not self.path.is_file():
            raise ArchiveError(f"{self.path} is not a file.")
        if size > self.limits.max_archive_bytes:
            raise ArchiveError(
                f"The archive {self.path.name} is {_human(size)}, more than the "
                f"{_human(self.limits.max_archive_bytes)} Scute imports in one go; split it."
            )
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError):
            raise ArchiveError(f"{self.path.name} is not a ZIP archive (or it is damaged).") from None
        except OSError as exc:
            raise ArchiveError(f"Cannot read {self.path}: {exc.strerror or exc}.") from None

    def _check(self) -> None:
        infos = self._zip.infolist()
        limits = self.limits
        if len(infos) > limits.max_members:
            raise ArchiveError(
                f"The archive holds {len(infos)} entries, more than the {limits.max_members} allowed; split it."
            )
        total = sum(info.file_size for info in infos)
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"The archive would unpack to {_human(total)}, more than the "
                f"{_human(limits.max_total_bytes)} allowed; split it."
            )
        for info in infos:
            if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise ArchiveError(
                    f"The archive member {info.filename[:80]!r} expands {ratio:.0f} times (more than "
                    f"{limits.max_ratio:.0f}); this looks like a zip bomb and nothing was imported."
                )
        for info in infos:
            name, reason = _member_name(info.filename)
            if name is None:
                self._skip(info.filename, reason)
                continue
            if info.is_dir() or not name:
                continue
            reason = _member_kind_problem(info)
            if not reason and name in self.members:
                reason = "it appears twice in the archive"
            if not reason and info.file_size > max(limits.max_member_bytes, limits.max_csv_bytes):
                reason = f"it is larger than {_human(max(limits.max_member_bytes, limits.max_csv_bytes))}"
            if reason:
                self._skip(name, reason)
                continue
            self.members[name] = info

    def _skip(self, name: str, reason: str) -> None:
        self.unsafe.setdefault(name, reason)
        self.problems.append(ImportProblem(f"archive member {name[:200]!r}", f"not extracted: {reason}", "member"))
        log.warning("Archive member %r not extracted: %s", name[:200], reason)

    def _find_manifest(self) -> tuple[str, str]:
        if MANIFEST_NAME in self.members:
            return "", MANIFEST_NAME
        nested = sorted(n for n in self.members if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME))
        if len(nested) == 1:
            return nested[0].rsplit("/", 1)[0], nested[0]
        if nested:
            raise ArchiveError(
                f"The archive holds several manifests ({', '.join(nested[:5])}); import them one at a time."
            )
        raise ArchiveError(
            f"The archive has no {MANIFEST_NAME} (columns path,identity[,side]) at its top or in one top folder."
        )

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> CatalogueArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, manifest_path: str) -> tuple[str | None, str]:
        """The member a manifest path names (relative to the manifest), or None and why not."""
        if not manifest_path.strip():
            return None, "the path is empty"
        name, reason = _member_name(posixpath.join(self.base, manifest_path) if self.base else manifest_path)
        if name is None:
            return None, f"the path is not allowed: {reason}"
        if name in self.members:
            return name, ""
        if name in self.unsafe:
            return None, f"the file was not extracted: {self.unsafe[name]}"
        return None, "the file is not in the archive"

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, never more than ``limit`` and never more than its header declares."""
        info = self.members[name]
        if info.file_size > limit:
            raise ScuteError(f"it is larger than {_human(limit)}")
        buffer = bytearray()
        try:
            with self._zip.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    buffer += chunk
                    if len(buffer) > min(limit, info.file_size):
                        raise ScuteError("it holds more data than the archive declares")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
            raise ScuteError(f"it is damaged in the archive ({exc})") from None
        except OSError as exc:
            raise ScuteError(f"it cannot be read from the archive ({exc.strerror or exc})") from None
        return bytes(buffer)

    def extract(self, name: str, root: Path, limit: int) -> Path:
        """Write one checked member under ``root`` (a private, fresh folder) by its checked name."""
        data = self.read(name, limit)
        dest = root.joinpath(*name.split("/"))
        if not dest.resolve().is_relative_to(root.resolve()):  # pragma: no cover - names are checked
            raise ScuteError("the path leads out of the archive")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            pass  # named twice in this chunk of the manifest: already there
        except OSError as exc:
            raise ScuteError(f"it cannot be unpacked ({exc.strerror or exc})") from None
        return dest


@contextlib.contextmanager
def open_archive(path: Path, limits: ZipLimits | None = None) -> Iterator[CatalogueArchive]:
    """Open and check a catalogue ZIP; raises :class:`ArchiveError` before anything is written."""
    archive = CatalogueArchive(path, limits)
    try:
        yield archive
    finally:
        archive.close()


# --- import ------------------------------------------------------------------------------------------


@dataclass
class ZipImportReport:
    """What an import did. A second run of the same archive reports 0 added and 0 created."""

    added: int = 0
    already_present: int = 0
    individuals_created: int = 0
    individuals_updated: int = 0  # existing individuals whose missing name, species or notes were filled in
    photos_updated: int = 0  # photos whose missing date, GPS, crop or rotation were filled in
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.individuals_created or self.individuals_updated or self.photos_updated)

    def count(self, kind: str) -> int:
        return sum(problem.kind == kind for problem in self.problems)

    def summary(self) -> str:
        """One line, the same as :meth:`core.catalogue.importer.ImportReport.summary` plus what only a ZIP can bring."""
        extra = {
            "individuals completed": self.individuals_updated,
            "photos completed": self.photos_updated,
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


@dataclass(frozen=True)
class _PhotoExtras:
    sha256: str | None = None
    taken_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    crop: tuple[float, float, float, float] | None = None
    rotation: int = 0
    original_name: str | None = None  # None: the manifest has no such column


def _csv_rows(data: bytes, what: str, *, keep: frozenset[str] = frozenset()) -> tuple[list[str], list[dict[str, str]]]:
    """Header (lower case) and rows; values are stripped except in the ``keep`` columns (free text)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{what} is not UTF-8 text.") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
        rows = []
        for raw in reader:
            row = {(k or "").strip().lower(): v or "" for k, v in raw.items() if k is not None}
            rows.append({k: v if k in keep else v.strip() for k, v in row.items()})
    except csv.Error as exc:
        raise ManifestError(f"{what} is not a readable CSV file ({exc}).") from None
    return fields, rows


def _read_manifest(data: bytes) -> tuple[list[ManifestRow], list[dict[str, str]]]:
    """Rows as :func:`core.evaluation.protocol.read_manifest` reads them, plus every column for the extras."""
    from core.evaluation.protocol import ManifestRow

    what = f"The archive's {MANIFEST_NAME}"
    fields, raw = _csv_rows(data, what)
    if not {"path", "identity"} <= set(fields):
        raise ManifestError(f"{what} needs the columns path and identity (found: {', '.join(fields) or 'none'}).")
    rows = [ManifestRow(r.get("path", ""), r.get("identity", ""), r.get("side") or "unknown") for r in raw]
    return rows, raw


def _read_individuals(data: bytes, problems: list[ImportProblem]) -> list[_IndividualSpec]:
    what = f"The archive's {INDIVIDUALS_NAME}"
    fields, rows = _csv_rows(data, what, keep=frozenset({"notes"}))
    if "code" not in fields:
        raise ManifestError(f"{what} needs a column code (found: {', '.join(fields) or 'none'}).")
    specs: list[_IndividualSpec] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{INDIVIDUALS_NAME} line {line}"
        try:
            code = normalize_code(_unescape(row.get("code", "")))
        except ValueError as exc:
            problems.append(ImportProblem(where, str(exc)))
            continue
        status = row.get("status", "").lower() or "active"
        merged_into = _unescape(row.get("merged_into", "")).strip() or None
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
            name = check_text(_unescape(row.get("name", "")), "name", max_length=_MAX_NAME).strip() or None
            species = check_text(_unescape(row.get("species", "")), "species", max_length=_MAX_NAME).strip()
            notes = check_text(_unescape(row.get("notes", "")), "notes", max_length=_MAX_NOTES, multiline=True)
        except TextError as exc:
            problems.append(ImportProblem(where, str(exc)))
            continue
        seen.add(code)
        specs.append(_IndividualSpec(line, code, name, species, status, merged_into, notes))
    return specs


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


def _parse_extras(row: dict[str, str]) -> _PhotoExtras:
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
    name = upload_label(row["original_name"]) if "original_name" in row else None
    return _PhotoExtras(sha, taken_at, coordinates[0], coordinates[1], crop, rotation % 360, name)


def _fill_photo(db: SqlEngine, store: PhotoStore, engine: Engine, sha: str, extras: _PhotoExtras, member: str) -> bool:
    """Give an imported photo what the manifest knows and the image did not say; never overwrite.

    Returns whether the date, GPS or framing was completed (a restored file name alone does not count).
    """
    from core.engine.features import photo_key

    with session_scope(db) as session:
        photo = session.exec(select(Photo).where(Photo.sha256 == sha)).first()
        if photo is None:
            return False
        framing = (extras.crop is not None or extras.rotation) and photo.crop is None and photo.rotation == 0
    # Features of the new framing are computed outside the transaction; failing leaves the photo as is.
    features = engine.features(store.path(photo.path), sha, extras.crop, extras.rotation) if framing else None
    with session_scope(db) as session:
        lock_for_write(session)
        photo = session.get(Photo, photo.id, with_for_update=ROW_LOCK, populate_existing=True)
        if photo is None:  # pragma: no cover - photos are never deleted
            return False
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
        if features is not None and photo.crop is None and photo.rotation == 0:
            photo.set_crop(extras.crop)
            photo.rotation = extras.rotation
            key = photo_key(sha, extras.crop, extras.rotation)
            relpath = engine.feature_cache.path(features.version, key).relative_to(engine.feature_cache.root)
            session.add(photo)
            session.flush()
            record_features(
                session,
                photo.id,
                engine.extractor.name,
                engine.extractor.version,
                str(relpath),
                len(features),  # type: ignore[arg-type]
            )
            changed = True
        if changed:
            session.add(photo)
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

    ``actor``, when given, must be an active admin; the import is then recorded in the audit log
    (only when it changed something). The command line imports without one.
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
    rows, raw_rows = _read_manifest(manifest_data)
    specs = _read_individuals(individuals_data, report.problems) if individuals_data is not None else []
    if actor is not None:
        with session_scope(db) as session:
            actor = acting_user(session, actor, "admin", action="import a catalogue").id

    created_ids: list[int] = []
    if specs:
        with session_scope(db) as session:
            lock_for_write(session)
            created_ids = _apply_individuals(session, specs, report)
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

    if actor is not None and report.changed:
        with session_scope(db) as session:
            lock_for_write(session)
            user = session.get(User, actor)
            record(
                session,
                user,
                "catalogue.import",
                ("catalogue", None),
                before=None,
                after={
                    "archive": archive.path.name,
                    "added": report.added,
                    "individuals_created": report.individuals_created,
                    "individuals_updated": report.individuals_updated,
                    "photos_updated": report.photos_updated,
                    "skipped": len(report.problems),
                },
                individuals=created_ids,
            )
    log.info("Imported %s: %s", archive.path.name, report.summary())
    return report


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
    from core.catalogue.importer import import_rows
    from core.evaluation.protocol import ManifestRow

    limit = archive.limits.max_member_bytes
    ready: list[tuple[int, ManifestRow, str, _PhotoExtras, str]] = []  # line, row, member, extras, sha
    for index in range(start, stop):
        line, row = index + 2, rows[index]
        where = f"{MANIFEST_NAME} line {line}"
        member, reason = archive.resolve(row.path)
        if member is None:
            report.problems.append(ImportProblem(where, f"{row.path[:200]}: {reason}"))
            continue
        try:
            extras = _parse_extras(raw_rows[index])
            path = archive.extract(member, photos_dir, limit)
            sha = sha256_hex(path.read_bytes())
            if extras.sha256 is not None and extras.sha256 != sha:
                raise ScuteError("the file does not match its sha256 checksum (damaged or replaced)")
        except ScuteError as exc:
            report.problems.append(ImportProblem(where, f"{row.path[:200]}: {exc}"))
            continue
        ready.append((line, ManifestRow(member, row.identity, row.side), member, extras, sha))
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
        for line, _, member, extras, sha in ready:
            if line in failed or extras == _PhotoExtras(sha256=extras.sha256):
                continue
            try:
                report.photos_updated += int(_fill_photo(db, store, engine, sha, extras, member))
            except ScuteError as exc:
                report.problems.append(
                    ImportProblem(
                        f"{MANIFEST_NAME} line {line}",
                        f"{rows[line - 2].path[:200]}: imported, but its crop or rotation was not applied: {exc}",
                        "warning",
                    )
                )
    finally:
        for item in photos_dir.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)


# --- export ------------------------------------------------------------------------------------------


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
        )
        session.expunge_all()  # detached rows keep their values; ending the transaction would expire them
        session.rollback()
    return snapshot


def _atomic_write(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
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
                        _iso(_photo_date(photo, sighting)),
                        photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None),
                        photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None),
                        _crop_text(photo.crop),
                        photo.rotation,
                        photo.original_name,
                    ]
                )
            manifest_csv = _csv_bytes(MANIFEST_COLUMNS, manifest, escape=False)
            zf.writestr(_zip_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED), manifest_csv)
            zf.writestr(_zip_info(INDIVIDUALS_NAME, zipfile.ZIP_DEFLATED), _csv_bytes(INDIVIDUAL_COLUMNS, individuals))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(manifest)


def export_catalogue(
    db: SqlEngine,
    store: PhotoStore,
    out_dir: Path,
    *,
    photos: bool = False,
    per_individual: bool = False,
) -> ExportReport:
    """Write the CSV files (and with ``photos`` the catalogue ZIP) into ``out_dir``; see the module docstring.

    Files are replaced atomically, so an interrupted export never leaves a half-written file behind.
    Raises :class:`ExportError` when the folder cannot be written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(f"{out_dir} exists and is not a folder.") from None
    except OSError as exc:
        raise ExportError(f"Cannot create the folder {out_dir}: {exc.strerror or exc}.") from None
    snap = _read_snapshot(db)
    report = ExportReport(out_dir=out_dir)
    try:
        _export_files(snap, store, out_dir, report, photos=photos, per_individual=per_individual)
    except OSError as exc:
        raise ExportError(f"Cannot write the export into {out_dir}: {exc.strerror or exc}.") from None
    log.info("%s", report.summary())
    return report


def _export_files(
    snap: _Snapshot, store: PhotoStore, out_dir: Path, report: ExportReport, *, photos: bool, per_individual: bool
) -> None:
    def write(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        dest = out_dir / name
        _atomic_write(dest, _csv_bytes(header, rows))
        report.files.append(dest)

    by_photo = {s.photo_id: s for s in snap.sightings}
    photo_by_id = {p.id: p for p in snap.photos}
    individuals = _individual_rows(snap)
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
                _crop_text(p.crop),
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
    for photo, owner in _gallery_photos(snap):
        sighting = by_photo.get(photo.id)  # type: ignore[arg-type]
        when = _photo_date(photo, sighting)
        latitude = photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None)
        longitude = photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None)
        observer = snap.user(sighting.submitted_by if sighting is not None else photo.uploaded_by)
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
        entries = _gallery_photos(snap)
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
