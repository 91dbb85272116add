"""Engines, schema migration and sessions for the gallery database (SQLite by default, any SQLAlchemy URL).

The schema is only ever changed by the Alembic revisions in ``core/migrations`` (never by
``create_all``), so an existing catalogue survives upgrades of Scute.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from core.errors import ScuteError
from core.io import PRIVATE_FILE_MODE, make_private_dir

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE_REVISION = "0001_gallery"
"""The revision whose tables a pre-migration database (made by ``create_all``) already has."""
BASELINE_TABLES = frozenset({"individual", "photo", "feature_record"})
SQLITE_BUSY_TIMEOUT_S = 30
HIDE_PARAMETERS = True
"""Keep bound values (password hashes, notes) out of SQL logs and out of the text of database errors."""
_PG_MIGRATION_LOCK_KEY = 0x5C07E  # any constant shared by every Scute process migrating this database


class SchemaError(ScuteError):
    """The database holds a schema Scute cannot bring up to date by itself."""


def _is_sqlite_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or "mode=memory" in database


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: SQLite gets WAL, a busy timeout and enforced foreign keys.

    SQLite enforces foreign keys only when asked, per connection, hence the connect hook. WAL lets the
    app read while an import writes; the busy timeout makes writers wait instead of failing at once.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS)

    database = parsed.database
    memory = _is_sqlite_memory(database)
    file_path = Path(database).expanduser() if not memory and database and not database.startswith("file:") else None
    if file_path is not None:
        make_private_dir(file_path.parent)
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        "hide_parameters": HIDE_PARAMETERS,
    }
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection, else every checkout is a new empty database
    engine = create_engine(url, **kwargs)

    if file_path is not None:

        @event.listens_for(engine, "do_connect")
        def _create_owner_only(*_args: Any) -> None:
            _create_private_file(file_path)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            if not memory:
                mode = _switch_to_wal(cursor)
                if str(mode).lower() != "wal":
                    log.warning("SQLite refused WAL journal mode (got %r) for %s", mode, database)
        finally:
            cursor.close()

    return engine


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does: SQLite makes it 0644 (less the umask) and gives
    its -wal and -shm files the database file's mode; the gallery holds password hashes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)  # exactly 0600, whatever the umask


def _switch_to_wal(cursor: Any) -> str:
    """Set WAL journal mode, waiting out other connections that hold the file.

    Switching a fresh file into WAL needs an exclusive lock, and SQLite reports "database is locked"
    at once, without its busy handler, when several processes open a new gallery together; so retry
    for as long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            return cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            locked = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not locked or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration built in code: works from any working directory and from an installed wheel."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Scute."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("Scute's migration scripts are missing; reinstall Scute.")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """One connection in a transaction that holds off other processes migrating the same database."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # Take the write lock now, so a second process waits (busy timeout) and then sees the new
            # revision instead of racing to create the same tables.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK_KEY})")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest revision; adopt a pre-migration database by stamping it first."""
    head = head_revision()
    with _migration_lock(engine) as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head:
            return
        config = alembic_config(connection)
        if current is None:
            present = BASELINE_TABLES & set(inspect(connection).get_table_names())
            if present == BASELINE_TABLES:
                # Tables made before migrations existed (create_all) match the baseline revision;
                # record that, and let the later revisions run as usual.
                log.info("Gallery tables without migration history; stamping %s", BASELINE_REVISION)
                command.stamp(config, BASELINE_REVISION)
            elif present:
                where = engine.url.render_as_string(hide_password=True)
                raise SchemaError(
                    f"The database {where} has only some of Scute's tables ({', '.join(sorted(present))}) "
                    "and no migration history. Restore it from a backup or point DATABASE_URL at a new "
                    "database."
                )
        log.info("Migrating database from %s to %s", current or "empty", head)
        command.upgrade(config, "head")


def init_db(url: str) -> Engine:
    """An engine for ``url`` whose schema is at head; nothing left open when the migration fails."""
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
    except BaseException:
        engine.dispose()  # else its pooled connection lingers until garbage collection
        raise
    return engine


@functools.lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    return init_db(url)


def get_engine(url: str) -> Engine:
    """One migrated engine per URL per process: the pool is shared, migration runs once."""
    return _cached_engine(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error.

    Objects stay readable after the block (``expire_on_commit=False``) so callers can return them.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
