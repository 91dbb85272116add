"""Alembic environment for Scute's gallery schema.

``core.store.db.init_db`` passes an open connection in ``config.attributes["connection"]`` so that the
migration runs inside its transaction (and under its lock on SQLite). The alembic command line has no
connection; then the URL comes from ``sqlalchemy.url`` or ``-x url=...``.
No ``fileConfig`` here: the application owns logging.
"""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import core.store.models  # noqa: F401  (registers the tables on SQLModel.metadata for autogenerate)
from core.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    """The alembic command line names its database: ``sqlalchemy.url`` in alembic.ini or ``-x url=…``."""
    url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("Name the database: alembic -c core/store/migrations/alembic.ini -x url=sqlite:///… …")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the SQL instead of running it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
