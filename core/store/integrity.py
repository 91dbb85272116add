"""Consistency checks of a gallery: the database's own integrity, the review rules, and the files on disk.

Why: after a crash, a restore or a night of many volunteers voting at once, "it still works" is not
enough; the gallery is years of field work. :func:`check_database` states what must always hold (one
decision per decided sighting and none for the others, every vote with its audit entry and every vote
audit entry with its vote, merge chains that end, and on SQLite ``PRAGMA integrity_check`` and
``foreign_key_check``); :func:`check_files` checks that every photo row has its file with the right
SHA-256 and every feature record a loadable file. Both return human-readable problems (empty = fine)
instead of raising, so the command line and the tests can show all of them at once.

``python -m core check`` runs them; the concurrency, crash and backup tests use them as their oracle.
:func:`missing_gallery` comes first there: a missing or empty database is an error to report, not a
new gallery to create (after a failed restore, creating empty tables would hide the loss, and the app
would offer its first-admin form to whoever came first).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from core.io import TEMP_PREFIX
from core.store.db import BASELINE_TABLES, make_engine
from core.store.models import AuditLog, FeatureRecord, Individual, Photo, Sighting, Vote
from core.store.photos import PhotoStore

log = logging.getLogger(__name__)

__all__ = [
    "check_database",
    "check_files",
    "leftover_temporary_files",
    "missing_gallery",
    "remove_leftover_temporary_files",
]

"""Files being written atomically start with this (``core.store.photos``, ``core.engine.features``); never data."""
_FEATURE_KEYS = frozenset({"keypoints", "descriptors", "scores", "image_size", "meta"})


def missing_gallery(url: str) -> str | None:
    """Why ``url`` holds no gallery at all (no SQLite file, or no tables), else None; creates nothing."""
    parsed = make_url(url)
    where = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" and "mode=memory" not in database:
        path = Path(database.removeprefix("file:").split("?")[0]).expanduser()
        if not path.is_file() or path.stat().st_size == 0:
            return f"there is no gallery database at {path}; restore a backup, or start the app to begin a new one"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    if not tables & BASELINE_TABLES:
        return (
            f"the database {where} holds no gallery tables (an empty or missing schema, e.g. after an "
            "interrupted restore); restore a backup, or start the app to begin a new gallery"
        )
    if not tables >= BASELINE_TABLES:
        missing = ", ".join(sorted(BASELINE_TABLES - tables))
        return f"the database {where} lacks the gallery tables {missing}; restore a backup"
    return None


def check_database(session: Session) -> list[str]:
    """Every broken rule in the database, as one sentence each; ``[]`` when all is well."""
    problems = _sqlite_checks(session)
    problems += _sighting_checks(session)
    problems += _vote_checks(session)
    problems += _individual_checks(session)
    problems += _owner_checks(session)
    return problems


def _sqlite_checks(session: Session) -> list[str]:
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return []  # PostgreSQL enforces its constraints itself and has no cheap whole-file check
    problems = []
    result = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        problems += [f"SQLite integrity check: {line}" for line in result]
    for table, rowid, parent, _fk in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
        problems.append(f"row {rowid} of {table} refers to a missing row of {parent}")
    return problems


def _sighting_checks(session: Session) -> list[str]:
    problems = []
    photos = {row.id: row for row in session.exec(select(Photo.id, Photo.individual_id, Photo.in_gallery)).all()}
    decisions = Counter(
        session.exec(
            select(AuditLog.target_id).where(AuditLog.action == "sighting.decide", AuditLog.target_type == "sighting")
        ).all()
    )
    for sighting in session.exec(select(Sighting).order_by(col(Sighting.id))).all():
        label = f"sighting {sighting.id} ({sighting.status})"
        applied = decisions.pop(sighting.id, 0)
        photo = photos.get(sighting.photo_id)
        if sighting.encounter_id is None:
            problems.append(f"{label} belongs to no encounter")
        if sighting.status == "decided":
            if applied != 1:
                problems.append(f"{label} has {applied} decision entries in the audit log instead of 1")
            if None in (sighting.decision, sighting.decided_individual_id, sighting.decided_by, sighting.decided_at):
                problems.append(f"{label} lacks its decision, individual, decider or time")
            if photo is not None and photo.individual_id != sighting.decided_individual_id:
                problems.append(
                    f"{label}: its photo {sighting.photo_id} belongs to individual {photo.individual_id}, "
                    f"not to the decided individual {sighting.decided_individual_id}"
                )
        else:
            if applied:
                problems.append(f"{label} was decided {applied} times according to the audit log")
            if sighting.decision is not None or sighting.decided_individual_id is not None:
                problems.append(f"{label} carries a decision although it is not decided")
            if photo is not None and photo.in_gallery:
                problems.append(f"{label}: its photo {sighting.photo_id} is in the gallery before a decision")
    for sighting_id, count in sorted(decisions.items(), key=lambda item: item[0] or 0):
        problems.append(f"the audit log records {count} decisions of sighting {sighting_id}, which does not exist")
    return problems


def _vote_checks(session: Session) -> list[str]:
    """Every vote row has exactly one audit entry and every vote audit entry its row: no vote lost or invented."""
    problems = []
    votes = {row.id: row for row in session.exec(select(Vote.id, Vote.sighting_id, Vote.user_id)).all()}
    audited: Counter[int] = Counter()
    entries = session.exec(
        select(AuditLog.id, AuditLog.target_id, AuditLog.user_id, AuditLog.payload).where(
            AuditLog.action == "sighting.vote"
        )
    ).all()
    for entry in entries:
        vote_id = (entry.payload or {}).get("vote_id")
        vote = votes.get(vote_id) if isinstance(vote_id, int) else None
        if vote is None:
            problems.append(f"audit entry {entry.id} records vote {vote_id!r}, which does not exist")
            continue
        audited[vote.id] += 1
        if (vote.sighting_id, vote.user_id) != (entry.target_id, entry.user_id):
            problems.append(f"audit entry {entry.id} and vote {vote.id} disagree on the sighting or the voter")
    for vote_id in sorted(votes):
        if audited[vote_id] != 1:
            problems.append(f"vote {vote_id} has {audited[vote_id]} audit entries instead of 1")
    return problems


def _individual_checks(session: Session) -> list[str]:
    problems = []
    individuals = {row.id: row for row in session.exec(select(Individual)).all()}
    for individual in individuals.values():
        merged = individual.status == "merged"
        if merged != (individual.merged_into_id is not None):
            problems.append(
                f"individual {individual.code} has status {individual.status} "
                f"but merged_into_id {individual.merged_into_id}"
            )
            continue
        seen = {individual.id}
        current = individual
        while current.status == "merged" and current.merged_into_id is not None:
            nxt = individuals.get(current.merged_into_id)
            if nxt is None or nxt.id in seen:
                problems.append(f"the merge chain of individual {individual.code} is broken or circular")
                break
            seen.add(nxt.id)
            current = nxt
    return problems


def _owner_checks(session: Session) -> list[str]:
    """No photo and no decided sighting stays on a merged individual: a merge moves them all to the survivor,
    and a photo decided while the merge stood goes back with an undo. (A retired individual keeps its photos
    and sightings on purpose.)"""
    merged = dict(session.exec(select(Individual.id, Individual.code).where(Individual.status == "merged")).all())
    if not merged:
        return []
    problems = []
    photos = session.exec(
        select(Photo.id, Photo.individual_id).where(col(Photo.individual_id).in_(list(merged))).order_by(col(Photo.id))
    ).all()
    for photo_id, owner in photos:
        problems.append(f"photo {photo_id} belongs to {merged[owner]}, which was merged into another individual")
    sightings = session.exec(
        select(Sighting.id, Sighting.decided_individual_id)
        .where(col(Sighting.decided_individual_id).in_(list(merged)))
        .order_by(col(Sighting.id))
    ).all()
    for sighting_id, owner in sightings:
        problems.append(
            f"sighting {sighting_id} is decided as {merged[owner]}, which was merged into another individual"
        )
    return problems


def check_files(
    session: Session, store: PhotoStore, feature_root: Path | None = None, *, verify_hashes: bool = True
) -> list[str]:
    """Every photo row has its file (with the right SHA-256 unless ``verify_hashes`` is off); with
    ``feature_root``, every feature record's file exists and holds the arrays a cache entry needs."""
    problems = []
    for photo_id, sha, relpath in session.exec(select(Photo.id, Photo.sha256, Photo.path).order_by(col(Photo.id))):
        try:
            ok = store.verify(relpath, sha) if verify_hashes else store.exists(relpath)
        except ValueError as exc:  # a path that escapes the store
            problems.append(f"photo {photo_id} has an invalid path: {exc}")
            continue
        if not ok:
            what = "missing" if not store.exists(relpath) else "damaged (its content no longer matches its hash)"
            problems.append(f"the file of photo {photo_id} ({relpath}) is {what}")
    if feature_root is not None:
        records = session.exec(select(FeatureRecord.id, FeatureRecord.photo_id, FeatureRecord.path)).all()
        for record_id, photo_id, relpath in records:
            reason = _feature_file_problem(Path(feature_root) / relpath)
            if reason:
                problems.append(f"the features of photo {photo_id} (record {record_id}, {relpath}) are {reason}")
    return problems


def _feature_file_problem(path: Path) -> str | None:
    if not path.is_file():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = _FEATURE_KEYS - set(data.files)
            if missing:
                return f"incomplete (no {', '.join(sorted(missing))})"
            for key in sorted(_FEATURE_KEYS):
                data[key]  # reads and CRC-checks every array
    except Exception as exc:  # anything np.load can raise on a damaged file
        return f"unreadable ({type(exc).__name__})"
    return None


def leftover_temporary_files(root: Path, older_than_s: float = 0.0) -> list[Path]:
    """Temporary files under ``root`` left by writers killed mid-write (``.tmp-*``), oldest first.

    They are never read as photos or features; ``older_than_s`` skips files a live writer may still own.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_s
    found = []
    for path in root.rglob(f"{TEMP_PREFIX}*"):
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:  # renamed into place meanwhile
            continue
        if path.is_file() and mtime <= cutoff:
            found.append((mtime, path))
    return [path for _, path in sorted(found)]


def remove_leftover_temporary_files(root: Path, older_than_s: float = 3600.0) -> int:
    """Delete what :func:`leftover_temporary_files` finds (default: older than an hour); returns how many."""
    removed = 0
    for path in leftover_temporary_files(root, older_than_s):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        log.info("Removed %d leftover temporary files under %s", removed, root)
    return removed
