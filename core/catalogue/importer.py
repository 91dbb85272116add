"""Importing an existing catalogue (CSV manifest + photo folder) into the gallery.

Each row is its own transaction, so a crash loses at most the row in flight and a re-run resumes
where it stopped; photos are content-addressed, so a second run adds nothing. Bad rows are
reported with a reason and skipped; the rest are imported. Tag columns (``flipper_tags``, ``pit_tags``,
``alternate_ids``) are checked for every row first: a bad tag, or one that would name two individuals, refuses
the whole import with its line before anything is written. An import made by an admin (the app's
imports) is recorded in the audit log, also when it added nothing or was stopped part-way: who brought
which catalogue in, and what was left out, is part of the gallery's history.

Photos go through the bulk pipeline (:func:`core.engine.bulk.cached_stream`): decoded and extracted ahead of
the writing on other threads, a bounded number at a time, so that a GPU stays busy; rows are written here, as
their features come, except that a row never overtakes an earlier row of the same photo or individual.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, select

from core.catalogue.format import unescape_cell
from core.catalogue.manifest import ManifestRow
from core.engine.bulk import DecodedPhoto, cached_stream
from core.engine.exif import PhotoInfo
from core.engine.features import Features
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
        _RowImport(db, store, engine, rows, root, report, progress, lines, original_names).run()
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


@dataclass(frozen=True)
class _Decoded:
    """A row whose checks passed and whose photo decoded: what writing it takes besides the features and the
    file's bytes (read again then rather than held: on a GPU a thousand photos may be on their way)."""

    identity: str
    side: str
    taken_at: datetime | None  # the manifest's date
    path: Path
    sha256: str
    info: PhotoInfo


@dataclass(frozen=True)
class _Extracted:
    """What the database notes of a photo's features (their file is already cached): not the arrays, so that
    rows waiting for an earlier row of their photo hold next to nothing."""

    version: str
    keypoints: int

    def __len__(self) -> int:
        return self.keypoints


def _decode_row(row: ManifestRow, root: Path) -> tuple[_Decoded, np.ndarray]:
    """Every check of a row up to its features, and its photo's pixels; runs on a decoding thread."""
    identity = unescape_cell(row.identity.strip()).strip()  # an exported manifest quotes formula-like codes
    if not identity:
        raise ScuteError("the identity is empty")
    side = (row.side or "unknown").strip().lower()
    if side not in SIDES:
        raise ScuteError(f"unknown side {row.side!r} (use {', '.join(SIDES)})")
    taken_at = manifest_date(row.date) if row.date.strip() else None
    path = _resolve_inside(root, row.path)
    data = _read(path)
    image = load_image(data)  # raises ImageError with a volunteer-readable reason
    return _Decoded(identity, side, taken_at, path, sha256_hex(data), image.info), image.pixels


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # unreadable (permissions, I/O error): skip the row, keep importing
        raise ScuteError(f"the file cannot be read ({exc.strerror or exc})") from None


T = TypeVar("T")
_Key = tuple[str, str]  # ("photo", sha256) or ("individual", code)


class _WriteOrder(Generic[T]):
    """Which finished rows may be written now: rows are written as their features come (on a GPU, long after
    rows behind them when their batch fills late), but never before an earlier row of the same photo or the
    same individual, so the first line still decides whose photo it is, and which spelling of a tag and which
    photo an individual gets first, as when rows went one at a time. Rows only meet through these two.

    A row that an earlier unfinished row might share a photo with (that row's photo not yet decoded) waits
    too. Decoding threads report each row's photo (:meth:`photo`); everything else runs on the writing thread.
    """

    def __init__(self, individuals: Sequence[str]) -> None:
        self._individual = list(individuals)  # row -> the code its photo goes to
        self._sha: dict[int, str] = {}  # row -> its photo, from the decoding threads
        self._done: set[int] = set()  # rows written or reported
        self._waiting: dict[int, T] = {}  # rows whose features came, not written yet
        self._known = 0  # every row below this one is done or has a known photo
        self._open: dict[_Key, deque[int]] = {}  # rows below _known not done yet, per photo and individual

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def photo(self, row: int, sha256: str) -> None:
        self._sha[row] = sha256

    def arrive(self, row: int, value: T | None) -> Iterator[tuple[int, T]]:
        """``row`` came with ``value`` to write, or None (reported, nothing to write); yields the rows that may
        be written now, each counted written when the next is asked for."""
        candidates = [row]
        if value is None:
            candidates += self._finish(row)
        else:
            self._waiting[row] = value
        before = self._advance()
        candidates += range(before, self._known)
        heapq.heapify(candidates)
        while candidates:
            row = heapq.heappop(candidates)
            if self._writable(row):
                yield row, self._waiting.pop(row)
                for following in self._finish(row):
                    heapq.heappush(candidates, following)

    def _keys(self, row: int) -> list[_Key]:
        sha = self._sha.get(row)
        return [("individual", self._individual[row])] + ([("photo", sha)] if sha is not None else [])

    def _advance(self) -> int:
        """Move past the rows whose photo is known; returns where it started."""
        before = self._known
        while self._known < len(self._individual):
            row = self._known
            if row not in self._done:
                if row not in self._sha:
                    break
                for key in self._keys(row):
                    self._open.setdefault(key, deque()).append(row)
            self._known += 1
        return before

    def _writable(self, row: int) -> bool:
        return row in self._waiting and row < self._known and all(self._open[k][0] == row for k in self._keys(row))

    def _finish(self, row: int) -> list[int]:
        """Count ``row`` done; returns the rows that are now first in line for one of its keys."""
        self._done.add(row)
        following = []
        for key in self._keys(row):
            queue = self._open.get(key)
            if queue and row in queue:
                first = queue[0] == row
                queue.remove(row)
                if first and queue:
                    following.append(queue[0])
        return following


def _merged_codes(db: SqlEngine) -> dict[str, str]:
    """Each merged individual's code and its survivor's: rows of either add photos to the survivor."""
    with session_scope(db) as session:
        merged = session.exec(select(Individual).where(Individual.status == "merged")).all()
        return {individual.code: resolve_merged(session, individual).code for individual in merged}


def _individual_key(identity: str, merged: Mapping[str, str]) -> str:
    """The code a row's photo goes to, as far as the order of writes needs it (a bad code fails the row)."""
    code = unescape_cell(identity.strip()).strip()
    return merged.get(code, code)


class _RowImport:
    """One :func:`import_rows` run: photos decoded and extracted through the bulk pipeline, each row written
    on this thread in its own transaction as its features come, and ``progress`` told as rows finish."""

    def __init__(
        self,
        db: SqlEngine,
        store: PhotoStore,
        engine: Engine,
        rows: Sequence[ManifestRow],
        root: Path,
        report: ImportReport,
        progress: Progress | None,
        lines: Sequence[int] | None,
        original_names: Sequence[str] | None,
    ) -> None:
        merged = _merged_codes(db)
        self.db, self.store, self.engine, self.rows, self.root = db, store, engine, rows, root
        self.report, self.progress = report, progress
        self.lines = list(lines) if lines is not None else [i + 2 for i in range(len(rows))]
        self.names = list(original_names) if original_names is not None else [Path(r.path).name for r in rows]
        self.decoded: dict[int, _Decoded] = {}  # rows on their way, from the decoding threads
        self.order: _WriteOrder[_Extracted] = _WriteOrder([_individual_key(r.identity, merged) for r in rows])
        self.problems: list[RowProblem] = []
        self.finished = 0

    def run(self) -> None:
        try:
            cached_stream(self.engine.extractor, self.engine.feature_cache, len(self.rows), self.load, self.arrived)
            assert not self.order.waiting, "every row is written once its features came"
        finally:  # the rows' problems in line order, whatever order their features came in
            self.report.problems += sorted(self.problems, key=lambda problem: problem.line)

    def load(self, i: int) -> DecodedPhoto:
        decoded, pixels = _decode_row(self.rows[i], self.root)
        self.decoded[i] = decoded
        self.order.photo(i, decoded.sha256)
        return DecodedPhoto(pixels, decoded.sha256)

    def arrived(self, i: int, result: Features | ScuteError) -> None:
        """A row's features (already cached) or why it has none: write what may be written now."""
        if isinstance(result, ScuteError):
            self.decoded.pop(i, None)
            self.finish(i, result)
        extracted = None if isinstance(result, ScuteError) else _Extracted(result.version, len(result))
        for row, features in self.order.arrive(i, extracted):
            try:
                self.write(row, features)
            except ScuteError as exc:
                self.finish(row, exc)
            else:
                self.finish(row, None)

    def write(self, i: int, features: _Extracted) -> None:
        decoded = self.decoded.pop(i)
        _write_row(self.db, self.store, self.engine, self.rows[i], decoded, features, self.report, self.names[i])

    def finish(self, i: int, problem: ScuteError | None) -> None:
        if problem is not None:
            line, path = self.lines[i], self.rows[i].path
            self.problems.append(RowProblem(line, path, str(problem)))
            log.info("manifest line %d (%s) skipped: %s", line, path, problem)
        self.finished += 1
        if self.progress:
            self.progress(self.finished, len(self.rows))


def _write_row(
    db: SqlEngine,
    store: PhotoStore,
    engine: Engine,
    row: ManifestRow,
    decoded: _Decoded,
    features: _Extracted,
    report: ImportReport,
    original_name: str,
) -> None:
    """Add a decoded row's photo (with its features, already cached) in one transaction."""
    data = _read(decoded.path)
    if sha256_hex(data) != decoded.sha256:
        raise ScuteError("the file changed while it was being imported")
    info, taken_at = decoded.info, decoded.taken_at
    with session_scope(db) as session:
        try:
            individual, created = get_or_create_individual(session, decoded.identity)
        except ValueError as exc:
            raise ScuteError(str(exc)) from None
        photo, added = add_photo(
            session,
            store,
            data,
            suffix=SUFFIX_FOR_FORMAT[info.format],
            individual=individual,
            side=decoded.side,
            original_name=original_name,
            width=info.width,
            height=info.height,
            taken_at=taken_at or info.taken_at,  # the catalogue's date wins over the camera's clock
            latitude=info.latitude,
            longitude=info.longitude,
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
