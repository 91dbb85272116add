"""Online backups of a gallery: database, photo store and feature cache (restoring them: ``core.store.restore``).

Why online: the app and imports keep writing; a backup must be a consistent copy without stopping
them. How each part stays consistent:

* **Database**, one snapshot: SQLite through its online backup API (one step, so one read transaction
  of a WAL database, which never blocks writers); PostgreSQL through ``pg_dump`` when it is on PATH,
  else a table-by-table export; both inside one ``REPEATABLE READ`` read-only transaction (``pg_dump``
  joins it with ``--snapshot``), so every table is read at the same instant. The export format
  (``method="export"``) works on SQLite too and can be restored into either backend.
* **Photos**, after the database snapshot: stored files never change (named by SHA-256, written
  atomically, never deleted), and a photo's file is written before its row is committed; so every
  photo of the snapshot is already on disk when the copy starts. Each copied photo is re-hashed.
* **Features** are copied as they are (they can be recomputed; copying saves hours on large galleries).

``backup.json`` is written last and removed first, so a folder without it is an incomplete backup,
which :func:`restore` refuses. Running :func:`backup` again into the same folder refreshes it and
copies only new photos. :func:`restore` refuses a database that already holds data unless ``force``
(then everything in it is replaced), and checks row counts and checksums against the manifest.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    MetaData,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url

from core import __version__
from core.errors import ScuteError
from core.io import TEMP_PREFIX, atomic_copy, atomic_write, publish, sha256_file
from core.store.db import make_engine

log = logging.getLogger(__name__)

__all__ = ["METHODS", "BackupError", "BackupManifest", "backup"]

FORMAT_VERSION = 1
MANIFEST_FILE = "backup.json"
SQLITE_FILE = "database.sqlite"
PG_DUMP_FILE = "database.pgdump"
TABLES_DIR = "tables"
PHOTOS_DIR = "photos"
FEATURES_DIR = "features"
METHODS: tuple[str, ...] = ("auto", "sqlite", "pg_dump", "export")
VERSION_TABLE = "alembic_version"


class BackupError(ScuteError):
    """A backup cannot be made or restored as asked; the message says why and what to do."""


@dataclass
class BackupManifest:
    """What a backup folder holds; written as ``backup.json`` when the backup is complete."""

    format: int
    created_at: str
    scute_version: str
    backend: str  # of the database that was backed up
    method: str  # "sqlite", "pg_dump" or "export"
    revision: str | None  # Alembic revision of the snapshot
    tables: dict[str, int]  # rows per table in the snapshot
    photos: int  # photo files in the backup
    features: int  # feature files in the backup
    checksums: dict[str, str] = field(default_factory=dict)  # SHA-256 of the database file(s)
    missing_photos: list[str] = field(default_factory=list)  # in the snapshot, absent from the live store

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupManifest:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


# --- backup --------------------------------------------------------------------------------------------


def backup(
    db_url: str,
    out: Path,
    *,
    home: Path,
    method: str = "auto",
    include_features: bool = True,
) -> BackupManifest:
    """Copy the database (one consistent snapshot), then the photo store and feature cache, into ``out``.

    ``home`` is the data directory holding ``photos/`` and ``features/``.
    Safe while the app and imports are writing.
    """
    if method not in METHODS:
        raise BackupError(f"Unknown backup method {method!r}; choose one of {', '.join(METHODS)}.")
    url, home = db_url, Path(home)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # incomplete until the new manifest is written
    engine = make_engine(url)
    try:
        backend = engine.dialect.name
        method = _choose_method(backend, method)
        if method == "sqlite":
            facts = _backup_sqlite(url, out)
        elif method == "pg_dump":
            facts = _backup_pg_dump(engine, url, out)
        else:
            facts = _backup_export(engine, out)
    finally:
        engine.dispose()
    photos = copy_tree(home / "photos", out / PHOTOS_DIR, verify_names=True)
    missing = sorted(p for p in facts.photo_paths if not (out / PHOTOS_DIR / p).is_file())
    if missing:
        log.warning("%d photos of the database are missing from the photo store: %s", len(missing), missing[:5])
    features = copy_tree(home / "features", out / FEATURES_DIR) if include_features else 0
    manifest = BackupManifest(
        format=FORMAT_VERSION,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        scute_version=__version__,
        backend=backend,
        method=method,
        revision=facts.revision,
        tables=facts.tables,
        photos=photos,
        features=features,
        checksums=facts.checksums,
        missing_photos=missing,
    )
    atomic_write(out / MANIFEST_FILE, json.dumps(asdict(manifest), indent=2, sort_keys=True).encode())
    log.info("Backup of %s written to %s (%s, %d photos)", backend, out, method, photos)
    return manifest


def _choose_method(backend: str, method: str) -> str:
    if method == "auto":
        if backend == "sqlite":
            return "sqlite"
        if backend == "postgresql" and shutil.which("pg_dump"):
            return "pg_dump"
        return "export"
    if method == "sqlite" and backend != "sqlite":
        raise BackupError("The 'sqlite' backup method only works on a SQLite database.")
    if method == "pg_dump":
        if backend != "postgresql":
            raise BackupError("The 'pg_dump' backup method only works on a PostgreSQL database.")
        if not shutil.which("pg_dump"):
            raise BackupError("pg_dump is not installed; use the 'export' method or install the PostgreSQL client.")
    return method


@dataclass
class DatabaseFacts:
    """What the snapshot holds, read inside the snapshot itself."""

    revision: str | None
    tables: dict[str, int]
    photo_paths: list[str]
    checksums: dict[str, str] = field(default_factory=dict)


def reflect(connection: Connection) -> MetaData:
    metadata = MetaData()
    metadata.reflect(connection)
    return metadata


def database_facts(connection: Connection, metadata: MetaData) -> DatabaseFacts:
    tables = {
        name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in sorted(metadata.tables.items())
    }
    photo = metadata.tables.get("photo")
    paths = list(connection.execute(select(photo.c.path)).scalars()) if photo is not None else []
    revision = MigrationContext.configure(connection).get_current_revision()
    return DatabaseFacts(revision, tables, paths)


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in database or database.startswith("file:"):
        raise BackupError("Only a SQLite database in a file can be backed up or restored this way.")
    return Path(database).expanduser().resolve()


def _backup_sqlite(url: str, out: Path) -> DatabaseFacts:
    """SQLite's online backup API in one step: one read transaction, a consistent copy, writers unblocked."""
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"The database {source_path} does not exist.")
    part = out / f"{SQLITE_FILE}.part"
    part.unlink(missing_ok=True)
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(part)
    try:
        source.backup(target)  # pages=-1: everything in one step
        target.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        result = [row[0] for row in target.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            raise BackupError(f"The copy of the database failed SQLite's integrity check: {result[:3]}")
    finally:
        target.close()
        source.close()
    engine = make_engine(f"sqlite:///{part}")
    try:
        with engine.connect() as connection:
            facts = database_facts(connection, reflect(connection))
    finally:
        engine.dispose()
    publish(part, out / SQLITE_FILE)
    facts.checksums = {SQLITE_FILE: sha256_file(out / SQLITE_FILE)}
    return facts


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction that sees every table at the same instant."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():
                yield connection
        else:
            # pysqlite starts transactions only before writes; BEGIN makes the reads one WAL snapshot.
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment that carries it (not the process list)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        completed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"Could not run {args[0]}: {exc}") from exc
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise BackupError(f"{what} failed ({args[0]} exited with {completed.returncode}): {' | '.join(detail)}")


def _backup_pg_dump(engine: Engine, url: str, out: Path) -> DatabaseFacts:
    """pg_dump joins our snapshot (``--snapshot``), so the dump and the facts we record agree exactly."""
    part = out / f"{PG_DUMP_FILE}.part"
    part.unlink(missing_ok=True)
    uri, env = libpq(url)
    with _snapshot(engine) as connection:
        snapshot_id = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        facts = database_facts(connection, reflect(connection))
        pg_dump = shutil.which("pg_dump") or "pg_dump"
        run_tool(
            [pg_dump, "--format=custom", f"--snapshot={snapshot_id}", f"--file={part}", f"--dbname={uri}"],
            env,
            "pg_dump",
        )
    publish(part, out / PG_DUMP_FILE)
    facts.checksums = {PG_DUMP_FILE: sha256_file(out / PG_DUMP_FILE)}
    return facts


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _backup_export(engine: Engine, out: Path) -> DatabaseFacts:
    """Every table as JSON lines, read in one snapshot; restorable into SQLite or PostgreSQL."""
    tables_dir = out / TABLES_DIR
    part_dir = out / f"{TABLES_DIR}.part"
    shutil.rmtree(part_dir, ignore_errors=True)
    part_dir.mkdir(parents=True)
    with _snapshot(engine) as connection:
        metadata = reflect(connection)
        facts = database_facts(connection, metadata)
        for name, table in sorted(metadata.tables.items()):
            order = [table.c[c.name] for c in table.primary_key.columns] or list(table.c)
            with (part_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                for row in connection.execute(select(table).order_by(*order)).mappings():
                    handle.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    facts.checksums = {f"{TABLES_DIR}/{p.name}": sha256_file(p) for p in sorted(part_dir.iterdir())}
    shutil.rmtree(tables_dir, ignore_errors=True)
    os.replace(part_dir, tables_dir)
    return facts


# --- files ---------------------------------------------------------------------------------------------


def copy_tree(source: Path, dest: Path, *, verify_names: bool = False) -> int:
    """Copy regular files (not temporaries, not links) that are missing or differ in size; count them all.

    With ``verify_names`` each file is a content-addressed photo whose name must be the SHA-256 of its
    bytes: a damaged one is reported and skipped rather than spread into the copy.
    """
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        return 0
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name.startswith(TEMP_PREFIX):
            continue
        target = dest / path.relative_to(source)
        if target.is_file() and target.stat().st_size == path.stat().st_size:
            count += 1  # names are content (photos) or content keys (features): same size, same file
            continue
        if verify_names and sha256_file(path) != path.name.split(".")[0]:
            log.warning("Skipping %s: its content does not match its name (damaged)", path)
            continue
        count += 1
        atomic_copy(path, target)
    return count
