"""Online backups of a gallery (database + photo store + feature cache) and restoring them.

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
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url

from core import __version__
from core.config import database_url, feature_cache_dir, photo_store_dir, scute_home
from core.errors import ScuteError
from core.store.db import alembic_config, make_engine, upgrade_schema
from core.store.integrity import TEMP_PREFIX

log = logging.getLogger(__name__)

__all__ = ["METHODS", "BackupError", "BackupManifest", "backup", "read_manifest", "restore"]

FORMAT_VERSION = 1
MANIFEST_FILE = "backup.json"
SQLITE_FILE = "database.sqlite"
PG_DUMP_FILE = "database.pgdump"
TABLES_DIR = "tables"
PHOTOS_DIR = "photos"
FEATURES_DIR = "features"
METHODS: tuple[str, ...] = ("auto", "sqlite", "pg_dump", "export")
_VERSION_TABLE = "alembic_version"
_BATCH = 500
_CHUNK = 1 << 20


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
    db_url: str | None,
    out: Path,
    *,
    home: Path | None = None,
    method: str = "auto",
    include_features: bool = True,
) -> BackupManifest:
    """Copy the database (one consistent snapshot), then the photo store and feature cache, into ``out``.

    ``home`` is the data directory holding ``photos/`` and ``features/`` (default ``$SCUTE_HOME``).
    Safe while the app and imports are writing.
    """
    if method not in METHODS:
        raise BackupError(f"Unknown backup method {method!r}; choose one of {', '.join(METHODS)}.")
    url = database_url(db_url, home)
    home = Path(home) if home is not None else scute_home()
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
    photos = _copy_tree(photo_store_dir(home), out / PHOTOS_DIR, verify_names=True)
    missing = sorted(p for p in facts.photo_paths if not (out / PHOTOS_DIR / p).is_file())
    if missing:
        log.warning("%d photos of the database are missing from the photo store: %s", len(missing), missing[:5])
    features = _copy_tree(feature_cache_dir(home), out / FEATURES_DIR) if include_features else 0
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
    _write_atomic(out / MANIFEST_FILE, json.dumps(asdict(manifest), indent=2, sort_keys=True).encode())
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
class _Facts:
    """What the snapshot holds, read inside the snapshot itself."""

    revision: str | None
    tables: dict[str, int]
    photo_paths: list[str]
    checksums: dict[str, str] = field(default_factory=dict)


def _reflect(connection: Connection) -> MetaData:
    metadata = MetaData()
    metadata.reflect(connection)
    return metadata


def _facts(connection: Connection, metadata: MetaData) -> _Facts:
    tables = {
        name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in sorted(metadata.tables.items())
    }
    photo = metadata.tables.get("photo")
    paths = list(connection.execute(select(photo.c.path)).scalars()) if photo is not None else []
    revision = MigrationContext.configure(connection).get_current_revision()
    return _Facts(revision, tables, paths)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in database or database.startswith("file:"):
        raise BackupError("Only a SQLite database in a file can be backed up or restored this way.")
    return Path(database).expanduser().resolve()


def _backup_sqlite(url: str, out: Path) -> _Facts:
    """SQLite's online backup API in one step: one read transaction, a consistent copy, writers unblocked."""
    source_path = _sqlite_path(url)
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
            facts = _facts(connection, _reflect(connection))
    finally:
        engine.dispose()
    _fsync(part)
    os.replace(part, out / SQLITE_FILE)
    facts.checksums = {SQLITE_FILE: _sha256_file(out / SQLITE_FILE)}
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


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment that carries it (not the process list)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        completed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"Could not run {args[0]}: {exc}") from exc
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise BackupError(f"{what} failed ({args[0]} exited with {completed.returncode}): {' | '.join(detail)}")


def _backup_pg_dump(engine: Engine, url: str, out: Path) -> _Facts:
    """pg_dump joins our snapshot (``--snapshot``), so the dump and the facts we record agree exactly."""
    part = out / f"{PG_DUMP_FILE}.part"
    part.unlink(missing_ok=True)
    uri, env = _libpq(url)
    with _snapshot(engine) as connection:
        snapshot_id = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        facts = _facts(connection, _reflect(connection))
        pg_dump = shutil.which("pg_dump") or "pg_dump"
        _run(
            [pg_dump, "--format=custom", f"--snapshot={snapshot_id}", f"--file={part}", f"--dbname={uri}"],
            env,
            "pg_dump",
        )
    _fsync(part)
    os.replace(part, out / PG_DUMP_FILE)
    facts.checksums = {PG_DUMP_FILE: _sha256_file(out / PG_DUMP_FILE)}
    return facts


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _backup_export(engine: Engine, out: Path) -> _Facts:
    """Every table as JSON lines, read in one snapshot; restorable into SQLite or PostgreSQL."""
    tables_dir = out / TABLES_DIR
    part_dir = out / f"{TABLES_DIR}.part"
    shutil.rmtree(part_dir, ignore_errors=True)
    part_dir.mkdir(parents=True)
    with _snapshot(engine) as connection:
        metadata = _reflect(connection)
        facts = _facts(connection, metadata)
        for name, table in sorted(metadata.tables.items()):
            order = [table.c[c.name] for c in table.primary_key.columns] or list(table.c)
            with (part_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                for row in connection.execute(select(table).order_by(*order)).mappings():
                    handle.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    facts.checksums = {f"{TABLES_DIR}/{p.name}": _sha256_file(p) for p in sorted(part_dir.iterdir())}
    shutil.rmtree(tables_dir, ignore_errors=True)
    os.replace(part_dir, tables_dir)
    return facts


# --- restore -------------------------------------------------------------------------------------------


def read_manifest(source: Path) -> BackupManifest:
    """The manifest of a complete backup folder; :class:`BackupError` for anything else."""
    path = Path(source) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{source} is not a complete Scute backup (no {MANIFEST_FILE}); was the backup interrupted?"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"The backup manifest {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise BackupError(f"{path} is not a backup format this version of Scute can restore.")
    try:
        return BackupManifest.from_dict(data)
    except TypeError as exc:
        raise BackupError(f"The backup manifest {path} is incomplete: {exc}") from exc


def restore(
    source: Path,
    db_url: str | None,
    *,
    home: Path | None = None,
    force: bool = False,
) -> BackupManifest:
    """Bring a backup back: the database (then migrated to this Scute's schema), photos and features.

    Refuses a database that already holds data unless ``force``, in which case everything in it is
    replaced. Row counts and file checksums are checked against the manifest.
    """
    source = Path(source).expanduser().resolve()
    manifest = read_manifest(source)
    for relpath, expected in manifest.checksums.items():
        path = source / relpath
        if not path.is_file() or _sha256_file(path) != expected:
            raise BackupError(f"The backup file {path} is missing or damaged (checksum mismatch).")
    url = database_url(db_url, home)
    home = Path(home) if home is not None else scute_home()
    engine = make_engine(url)
    try:
        _check_target(manifest, engine)
        _refuse_unless_empty(engine, force)
        if manifest.method == "sqlite":
            _restore_sqlite(source / SQLITE_FILE, url, engine)
        elif manifest.method == "pg_dump":
            _restore_pg_dump(source / PG_DUMP_FILE, url)
        else:
            _restore_export(source / TABLES_DIR, engine, manifest)
        engine.dispose()  # SQLite: the file was replaced underneath the pool
        with engine.connect() as connection:
            restored = _facts(connection, _reflect(connection)).tables
        if restored != manifest.tables:
            diff = {k: (manifest.tables.get(k), restored.get(k)) for k in set(restored) | set(manifest.tables)}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise BackupError(f"The restored database does not match the backup (rows expected, found): {diff}")
        upgrade_schema(engine)
    finally:
        engine.dispose()
    photos = _copy_tree(source / PHOTOS_DIR, photo_store_dir(home), verify_names=True)
    _copy_tree(source / FEATURES_DIR, feature_cache_dir(home))
    log.info("Restored %s into %s (%d photos)", source, make_url(url).render_as_string(hide_password=True), photos)
    return manifest


def _check_target(manifest: BackupManifest, engine: Engine) -> None:
    """Refuse an impossible restore before anything in the target is touched."""
    backend = engine.dialect.name
    if manifest.method == "sqlite" and backend != "sqlite":
        raise BackupError(
            "This backup is a SQLite file; restore it into a SQLite database (or make an 'export' backup)."
        )
    if manifest.method == "pg_dump":
        if backend != "postgresql":
            raise BackupError("This backup is a pg_dump archive; restore it into a PostgreSQL database.")
        if not shutil.which("pg_restore"):
            raise BackupError("pg_restore is not installed; install the PostgreSQL client to restore this backup.")


def _refuse_unless_empty(engine: Engine, force: bool) -> None:
    with engine.connect() as connection:
        metadata = _reflect(connection)
        rows = {
            name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in metadata.tables.items()
            if name != _VERSION_TABLE
        }
    if not force and any(rows.values()):
        where = engine.url.render_as_string(hide_password=True)
        raise BackupError(
            f"The database {where} already holds data; restoring would replace it. "
            "Restore into a new database, or pass --force to replace everything in it."
        )
    if metadata.tables:
        with engine.begin() as connection:
            metadata.drop_all(connection)


def _restore_sqlite(backup_file: Path, url: str, engine: Engine) -> None:
    target_path = _sqlite_path(url)
    engine.dispose()
    target_path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    target = sqlite3.connect(target_path, timeout=30)
    try:
        result = [row[0] for row in source.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            raise BackupError(f"The backed-up database fails SQLite's integrity check: {result[:3]}")
        source.backup(target)  # replaces the whole content, under the target's write lock
    finally:
        target.close()
        source.close()


def _restore_pg_dump(dump: Path, url: str) -> None:
    uri, env = _libpq(url)
    pg_restore = shutil.which("pg_restore") or "pg_restore"
    options = ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    _run([pg_restore, *options, f"--dbname={uri}", str(dump)], env, "pg_restore")


def _restore_export(tables_dir: Path, engine: Engine, manifest: BackupManifest) -> None:
    """Schema at the backup's revision, then the rows, all in one transaction."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.begin()
        try:
            if manifest.revision is not None:
                command.upgrade(alembic_config(connection), manifest.revision)
            metadata = _reflect(connection)
            for table in metadata.sorted_tables:
                if table.name == _VERSION_TABLE:
                    continue
                path = tables_dir / f"{table.name}.jsonl"
                if not path.is_file():
                    raise BackupError(f"The backup has no data file for the table {table.name}.")
                _load_table(connection, table, path)
            extra = set(manifest.tables) - set(metadata.tables)
            if extra:
                raise BackupError(f"The backup holds tables this schema does not have: {sorted(extra)}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def _decoder(column: Any) -> Any:
    kind = column.type
    if isinstance(kind, DateTime):
        return lambda v: _datetime(v, getattr(kind, "timezone", False))
    if isinstance(kind, Date):
        return dt.date.fromisoformat
    if isinstance(kind, LargeBinary):
        return base64.b64decode
    if isinstance(kind, Numeric) and getattr(kind, "asdecimal", False):
        return decimal.Decimal
    if isinstance(kind, JSON):
        return lambda v: v
    return None


def _datetime(value: str, timezone: bool) -> dt.datetime:
    """Stored times are UTC (core.models.UTCDateTime): naive text is UTC, aware values become UTC."""
    parsed = dt.datetime.fromisoformat(value)
    parsed = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    return parsed if timezone else parsed.replace(tzinfo=None)


def _load_table(connection: Connection, table: Table, path: Path) -> None:
    """Insert the rows; columns referring to the same table are filled in afterwards (any order works)."""
    decoders = {c.name: d for c in table.columns if (d := _decoder(c)) is not None}
    self_refs = sorted({fk.parent.name for fk in table.foreign_keys if fk.column.table is table})
    pk = [c.name for c in table.primary_key.columns]
    deferred: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            row = {}
            for column in table.columns:
                value = raw.get(column.name)
                decode = decoders.get(column.name)
                row[column.name] = decode(value) if value is not None and decode is not None else value
            if self_refs and any(row[name] is not None for name in self_refs):
                deferred.append({**{f"pk_{k}": row[k] for k in pk}, **{f"v_{n}": row[n] for n in self_refs}})
                row.update({name: None for name in self_refs})
            batch.append(row)
            if len(batch) >= _BATCH:
                connection.execute(table.insert(), batch)
                batch = []
    if batch:
        connection.execute(table.insert(), batch)
    if deferred:
        statement = (
            update(table)
            .where(*(table.c[k] == bindparam(f"pk_{k}") for k in pk))
            .values({n: bindparam(f"v_{n}") for n in self_refs})
        )
        connection.execute(statement, deferred)
    if connection.dialect.name == "postgresql" and len(pk) == 1:
        _reset_sequence(connection, table, pk[0])


def _reset_sequence(connection: Connection, table: Table, column: str) -> None:
    """After explicit ids, the next generated id must come after the largest restored one."""
    sequence = connection.execute(
        text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": column}
    ).scalar()
    if sequence is None:
        return
    highest = connection.execute(select(func.max(table.c[column]))).scalar()
    if highest is None:
        connection.execute(text("SELECT setval(CAST(:seq AS regclass), 1, false)"), {"seq": sequence})
    else:
        connection.execute(
            text("SELECT setval(CAST(:seq AS regclass), :value, true)"), {"seq": sequence, "value": highest}
        )


# --- files ---------------------------------------------------------------------------------------------


def _copy_tree(source: Path, dest: Path, *, verify_names: bool = False) -> int:
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
        if verify_names and _sha256_file(path) != path.name.split(".")[0]:
            log.warning("Skipping %s: its content does not match its name (damaged)", path)
            continue
        count += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp_name)
            os.chmod(tmp_name, 0o644)
            _fsync(Path(tmp_name))
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return count


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with Path(path).open("rb") as handle:
        os.fsync(handle.fileno())


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
