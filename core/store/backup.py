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

A backup is written into a temporary folder beside ``out`` (``.tmp-<name>.<pid>.…``) and put in place in
one step (Linux: the two folders are exchanged atomically; elsewhere two renames), so a backup killed at
any moment leaves the previous backup in ``out`` as it was, and restorable. ``backup.json`` is
written last, so a folder without it is an incomplete backup, which :func:`restore` refuses. Running
:func:`backup` again into the same folder hard-links the previous backup's photos and features into the
new one and copies only new ones. The SQLite copy is a plain rollback-journal file (not WAL), so it
restores from read-only media. Files are 0600 and folders 0700: a backup holds password hashes.
:func:`restore` (``core.store.restore``) checks row counts and checksums against the manifest.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import decimal
import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    MetaData,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url

from core import __version__
from core.errors import ScuteError
from core.io import (
    PRIVATE_FILE_MODE,
    TEMP_PREFIX,
    atomic_copy,
    atomic_write,
    fsync_dir,
    make_private_dir,
    publish,
    sha256_file,
)
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
#: What a backup folder may hold; anything else means ``out`` is not a backup, and it is left alone.
_BACKUP_ENTRIES = frozenset(
    {MANIFEST_FILE, SQLITE_FILE, PG_DUMP_FILE, TABLES_DIR, PHOTOS_DIR, FEATURES_DIR}
    | {f"{name}{suffix}" for name in (SQLITE_FILE, PG_DUMP_FILE, TABLES_DIR) for suffix in (".part", "-wal", "-shm")}
)


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
    _refuse_foreign_folder(out)
    make_private_dir(out.parent)
    _remove_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{out.name}.{os.getpid()}.", dir=out.parent))  # 0700
    try:
        if out.is_dir():
            for name in (PHOTOS_DIR, FEATURES_DIR):
                _link_tree(out / name, stage / name)
        manifest = _write_backup(url, stage, home=home, method=method, include_features=include_features)
        try:
            _put_in_place(stage, out)
        except OSError as exc:
            raise BackupError(
                f"The backup could not be put in place at {out} ({exc.strerror or exc}); {out} was left as it "
                "was. A backup folder must be an ordinary folder (not a mount point) in a writable folder."
            ) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # after the switch: the previous backup
    log.info("Backup of %s written to %s (%s, %d photos)", manifest.backend, out, manifest.method, manifest.photos)
    return manifest


def _write_backup(url: str, out: Path, *, home: Path, method: str, include_features: bool) -> BackupManifest:
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
    data = json.dumps(asdict(manifest), indent=2, sort_keys=True).encode()
    atomic_write(out / MANIFEST_FILE, data, mode=PRIVATE_FILE_MODE)
    return manifest


def _refuse_foreign_folder(out: Path) -> None:
    """A backup replaces the whole folder: never one that holds anything but a backup."""
    if out.exists() and not out.is_dir():
        raise BackupError(f"{out} is a file, not a folder; choose a folder for the backup.")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _BACKUP_ENTRIES)
        foreign = [name for name in foreign if not name.startswith(TEMP_PREFIX)]
        if foreign:
            raise BackupError(
                f"{out} holds files that are not part of a Scute backup ({', '.join(foreign[:3])}); a backup "
                "replaces the whole folder, so choose an empty or new folder."
            )


def _remove_stale_stages(out: Path) -> None:
    """Temporary folders of backups into ``out`` that were killed (their process is gone)."""
    for stage in out.parent.glob(f"{TEMP_PREFIX}{out.name}.*"):
        pid = stage.name[len(f"{TEMP_PREFIX}{out.name}.") :].split(".")[0]
        if stage.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether a process still runs: temporaries of a running backup or restore are not leftovers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_tree(source: Path, dest: Path) -> None:
    """Hard-link the previous backup's files into the new one: stored files never change, so sharing them
    is safe, and a refresh then copies only what is new. Where links are impossible, copying does it."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name.startswith(TEMP_PREFIX):
            continue
        target = dest / path.relative_to(source)
        make_private_dir(target.parent)
        try:
            os.link(path, target)
        except OSError:
            return


def _put_in_place(stage: Path, out: Path) -> None:
    """Make the finished backup ``out`` in one step; ``stage`` then holds the previous backup (if any)."""
    if not out.exists():
        os.rename(stage, out)
    elif not _exchange(stage, out):  # no atomic exchange here: two renames, a moment without ``out``
        previous = stage.with_name(stage.name + ".previous")
        os.rename(out, previous)
        try:
            os.rename(stage, out)
        except OSError:
            os.rename(previous, out)
            raise
        os.rename(previous, stage)
    fsync_dir(out.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


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
    os.chmod(part, PRIVATE_FILE_MODE)
    engine = create_engine(f"sqlite:///{part}")  # not make_engine: that would switch the copy to WAL
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
    os.chmod(part, PRIVATE_FILE_MODE)
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
    make_private_dir(part_dir)
    with _snapshot(engine) as connection:
        metadata = reflect(connection)
        facts = database_facts(connection, metadata)
        for name, table in sorted(metadata.tables.items()):
            order = [table.c[c.name] for c in table.primary_key.columns] or list(table.c)
            fd = os.open(part_dir / f"{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
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
    bytes: a damaged one is reported and skipped rather than spread into the copy. Copies are owner-only
    (0600 files, 0700 folders): backups and the restored store hold volunteers' photos.
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
        make_private_dir(target.parent)
        atomic_copy(path, target, mode=PRIVATE_FILE_MODE)
    return count
