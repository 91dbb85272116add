"""Bringing a backup back (``core.store.backup`` writes them), all or nothing.

Why all or nothing: a restore replaces years of field work, and a backup this Scute cannot read or a
restore killed half-way must leave the gallery as it was (issue 15). Nothing in the target changes
until the restored copy is complete and verified:

* **Checks first**, before anything is written: the manifest, the checksums of the backup's files, a
  schema revision this Scute knows, and a target that holds no data unless ``force``.
* **Photos and features next**: the store is content-addressed and add-only, so the old gallery's files
  never change; a restore killed here leaves only extra, unreferenced files.
* **SQLite**: the database is rebuilt in a temporary file beside the target (``.tmp-…``), migrated to
  this Scute's schema and verified (row counts against the manifest, SQLite's integrity and foreign-key
  checks); then SQLite's backup API copies it into the target in one write transaction, which a crash
  rolls back and which the app's open connections see as an ordinary change.
* **PostgreSQL**: the old tables are dropped and the backup loaded, counted and migrated in one
  transaction (``export``); a ``pg_dump`` archive goes through ``psql --single-transaction`` with the
  drop before it and the row-count check after it. A crash or any failure rolls it all back.

The backup folder is only read (SQLite files are copied or opened ``immutable``), so a backup on
read-only media restores.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
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

from core.io import PRIVATE_FILE_MODE, TEMP_PREFIX, make_private_dir, publish, sha256_file
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
    alive,
    copy_tree,
    database_facts,
    libpq,
    reflect,
    sqlite_path,
)
from core.store.db import SQLITE_BUSY_TIMEOUT_S, _migration_lock, alembic_config, make_engine, upgrade_schema

log = logging.getLogger(__name__)

__all__ = ["read_manifest", "restore"]

#: Rows inserted per statement when loading an exported table.
_BATCH = 500
#: Table names a backup may name (they end up quoted in a psql script).
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESTORE_SUFFIX = ".restore"


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
    """Bring a backup back: the database (migrated to this Scute's schema), photos and features.

    Refuses a database that already holds data unless ``force``, in which case everything in it is
    replaced, all at once and only after the restored copy was verified (see the module docstring).
    """
    source = Path(source).expanduser().resolve()
    manifest = read_manifest(source)
    for relpath, expected in manifest.checksums.items():
        path = source / relpath
        if not path.is_file() or sha256_file(path) != expected:
            raise BackupError(f"The backup file {path} is missing or damaged (checksum mismatch).")
    check_revision(manifest.revision)
    url, home = db_url, Path(home)
    engine = make_engine(url)
    try:
        _check_target(manifest, engine)
        _refuse_unless_empty(engine, url, force)
        backend = engine.dialect.name
    finally:
        engine.dispose()
    photos = copy_tree(source / PHOTOS_DIR, home / "photos", verify_names=True)
    copy_tree(source / FEATURES_DIR, home / "features")
    if backend == "sqlite":
        _restore_sqlite(source, manifest, sqlite_path(url))
    else:
        engine = make_engine(url)
        try:
            if manifest.method == "pg_dump":
                _restore_pg_dump(source / PG_DUMP_FILE, url, engine, manifest)
                upgrade_schema(engine)  # the restored revision is known; the app would do this on start
            else:
                with _migration_lock(engine) as connection:  # one transaction: drop, load, count, migrate
                    reflect(connection).drop_all(connection)
                    _load_export(connection, source / TABLES_DIR, manifest)
                    _compare(manifest, database_facts(connection, reflect(connection)).tables)
                    command.upgrade(alembic_config(connection), "head")
        finally:
            engine.dispose()
    log.info("Restored %s into %s (%d photos)", source, make_url(url).render_as_string(hide_password=True), photos)
    return manifest


def check_revision(revision: str | None) -> None:
    """Refuse a schema revision this Scute does not ship: it could neither read nor migrate it."""
    if revision is None:
        return
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        raise BackupError(
            f"The backup's database is at schema revision {revision!r}, which this version of Scute does not "
            "know (a backup from a newer Scute?). Nothing was changed; restore it with that version of Scute."
        ) from None


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
        missing = [tool for tool in ("pg_restore", "psql") if not shutil.which(tool)]
        if missing:
            raise BackupError(
                f"{' and '.join(missing)} not installed; install the PostgreSQL client to restore this backup."
            )
    bad = [name for name in manifest.tables if not _TABLE_NAME.fullmatch(name)]
    if bad:
        raise BackupError(f"The backup names tables Scute never makes: {bad[:3]}")


def _refuse_unless_empty(engine: Engine, url: str, force: bool) -> None:
    """Only looks: a missing SQLite file is an empty target, and is not created here."""
    if engine.dialect.name == "sqlite" and not sqlite_path(url).is_file():
        return
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


def _compare(manifest: BackupManifest, restored: dict[str, int]) -> None:
    if restored != manifest.tables:
        diff = {k: (manifest.tables.get(k), restored.get(k)) for k in set(restored) | set(manifest.tables)}
        diff = {k: v for k, v in diff.items() if v[0] != v[1]}
        raise BackupError(f"The restored database does not match the backup (rows expected, found): {diff}")


# --- SQLite: build beside, verify, switch --------------------------------------------------------------


def _restore_sqlite(source: Path, manifest: BackupManifest, target: Path) -> None:
    make_private_dir(target.parent)
    _remove_stale_copies(target)
    part = target.parent / f"{TEMP_PREFIX}{target.name}.{os.getpid()}{_RESTORE_SUFFIX}"
    try:
        if manifest.method == "sqlite":
            _copy_into(source / SQLITE_FILE, part)  # the backup itself is only read
        else:
            engine = make_engine(f"sqlite:///{part}")
            try:
                with engine.connect() as connection:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        _load_export(connection, source / TABLES_DIR, manifest)
                    except BaseException:
                        connection.rollback()
                        raise
                    connection.commit()
            finally:
                engine.dispose()
        _verify_and_migrate(part, manifest)
        _switch(part, target)
    finally:
        for path in _with_sidecars(part):
            path.unlink(missing_ok=True)


def _copy_into(source: Path, part: Path) -> None:
    """Straight into this restore's own temporary: a temporary of another name (``core.io.atomic_copy``'s) would
    outlive a restore killed mid-copy, with no process id to tell the next restore it is stale."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as copy, source.open("rb") as original:
        shutil.copyfileobj(original, copy)


def _with_sidecars(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def _remove_stale_copies(target: Path) -> None:
    """Temporary copies left by restores that were killed (their process is gone)."""
    for part in target.parent.glob(f"{TEMP_PREFIX}{target.name}.*{_RESTORE_SUFFIX}"):
        pid = part.name[len(f"{TEMP_PREFIX}{target.name}.") : -len(_RESTORE_SUFFIX)]
        if pid.isdigit() and not alive(int(pid)):
            for path in _with_sidecars(part):
                path.unlink(missing_ok=True)


def _verify_and_migrate(part: Path, manifest: BackupManifest) -> None:
    """The copy holds what the manifest says, passes SQLite's checks, and is brought to this schema."""
    engine = make_engine(f"sqlite:///{part}")
    try:
        with engine.connect() as connection:
            result = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                raise BackupError(f"The backed-up database fails SQLite's integrity check: {result[:3]}")
            facts = database_facts(connection, reflect(connection))
        if facts.revision != manifest.revision:
            raise BackupError(
                f"The backup's database is at revision {facts.revision!r}, its manifest says {manifest.revision!r}."
            )
        check_revision(facts.revision)
        _compare(manifest, facts.tables)
        upgrade_schema(engine)
        with engine.connect() as connection:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise BackupError(f"The restored database has {len(broken)} rows that refer to missing rows.")
    finally:
        engine.dispose()  # the last connection checkpoints: ``part`` is then one self-contained file


def _switch(part: Path, target: Path) -> None:
    """Make the verified copy the gallery, in one step that a crash either completes or never began."""
    if not target.exists():
        for stale in _with_sidecars(target)[1:]:  # a journal without its database belongs to nothing now
            stale.unlink(missing_ok=True)
        os.chmod(part, PRIVATE_FILE_MODE)
        publish(part, target)
        return
    copy = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
    live = sqlite3.connect(target, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        copy.backup(live)  # every page in one write transaction of the live database
    except sqlite3.Error as exc:
        raise BackupError(f"Could not replace the database {target}: {exc}; it was left as it was.") from exc
    finally:
        live.close()
        copy.close()


# --- PostgreSQL ----------------------------------------------------------------------------------------


def _restore_pg_dump(dump: Path, url: str, engine: Engine, manifest: BackupManifest) -> None:
    """pg_restore writes the archive as SQL; psql runs the drop, that SQL and a count check as one transaction."""
    with engine.connect() as connection:
        existing = sorted(reflect(connection).tables)
        schema = connection.dialect.default_schema_name or "public"
    quote = engine.dialect.identifier_preparer.quote
    drops = "".join(f"DROP TABLE IF EXISTS {quote(schema)}.{quote(name)} CASCADE;\n" for name in existing)
    checks = "".join(
        f"  IF (SELECT count(*) FROM {quote(schema)}.{quote(name)}) <> {int(rows)} THEN\n"
        f"    RAISE EXCEPTION 'The restored table {name} does not hold the {int(rows)} rows of the backup';\n"
        "  END IF;\n"
        for name, rows in sorted(manifest.tables.items())
    )
    check = f"DO $scute$\nBEGIN\n{checks}END\n$scute$;" if checks else "SELECT 1;"
    uri, env = libpq(url)
    pg_restore = shutil.which("pg_restore") or "pg_restore"
    psql = shutil.which("psql") or "psql"
    script = [pg_restore, "--no-owner", "--no-privileges", "--file=-", str(dump)]
    run = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", f"--dbname={uri}"]
    run += ["-c", drops] if drops else []
    run += ["-f", "-", "-c", check]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty pg_restore cannot block on it
        try:
            producer = subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=errors)
            consumer = subprocess.run(run, env=env, stdin=producer.stdout, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BackupError(f"Could not run the PostgreSQL client: {exc}") from exc
        assert producer.stdout is not None
        producer.stdout.close()
        producer.wait()
        errors.seek(0)
        produced = errors.read().decode(errors="replace")
    for name, code, message in (("psql", consumer.returncode, ""), ("pg_restore", producer.returncode, produced)):
        if code != 0:
            detail = (message or consumer.stderr or consumer.stdout).strip().splitlines()[-5:]
            raise BackupError(
                f"Restoring the pg_dump archive failed ({name} exited with {code}); the database was left as it "
                f"was: {' | '.join(detail)}"
            )


# --- the export format ---------------------------------------------------------------------------------


def _load_export(connection: Connection, tables_dir: Path, manifest: BackupManifest) -> None:
    """Schema at the backup's revision, then the rows, in the caller's transaction."""
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
