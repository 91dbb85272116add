"""Bringing a backup back (``core.store.backup`` writes them): the database, migrated to this Scute's
schema, then the photos and features; row counts and checksums are checked against the backup's manifest.

Refuses a database that already holds data unless ``force``, in which case everything in it is replaced.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    LargeBinary,
    Numeric,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url

from core.io import sha256_file
from core.store.backup import (
    FEATURES_DIR,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PG_DUMP_FILE,
    PHOTOS_DIR,
    SQLITE_FILE,
    TABLES_DIR,
    VERSION_TABLE,
    BackupError,
    BackupManifest,
    copy_tree,
    database_facts,
    libpq,
    reflect,
    run_tool,
    sqlite_path,
)
from core.store.db import alembic_config, make_engine, upgrade_schema

log = logging.getLogger(__name__)

__all__ = ["read_manifest", "restore"]

#: Rows inserted per statement when loading an exported table.
_BATCH = 500


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
    db_url: str,
    *,
    home: Path,
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
        if not path.is_file() or sha256_file(path) != expected:
            raise BackupError(f"The backup file {path} is missing or damaged (checksum mismatch).")
    url, home = db_url, Path(home)
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
            restored = database_facts(connection, reflect(connection)).tables
        if restored != manifest.tables:
            diff = {k: (manifest.tables.get(k), restored.get(k)) for k in set(restored) | set(manifest.tables)}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise BackupError(f"The restored database does not match the backup (rows expected, found): {diff}")
        upgrade_schema(engine)
    finally:
        engine.dispose()
    photos = copy_tree(source / PHOTOS_DIR, home / "photos", verify_names=True)
    copy_tree(source / FEATURES_DIR, home / "features")
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
        metadata = reflect(connection)
        rows = {
            name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in metadata.tables.items()
            if name != VERSION_TABLE
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
    target_path = sqlite_path(url)
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
    uri, env = libpq(url)
    pg_restore = shutil.which("pg_restore") or "pg_restore"
    options = ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    run_tool([pg_restore, *options, f"--dbname={uri}", str(dump)], env, "pg_restore")


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
            metadata = reflect(connection)
            for table in metadata.sorted_tables:
                if table.name == VERSION_TABLE:
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
    """Stored times are UTC (core.store.models.UTCDateTime): naive text is UTC, aware values become UTC."""
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
