"""Column helpers shared by every table module: aware UTC timestamps and CHECK constraints on enumerations."""

from datetime import UTC, datetime

from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator


def utc_now() -> datetime:
    """Aware UTC now; the default of every ``created_at``."""
    return datetime.now(UTC)


def sql_in(column: str, values: tuple[str, ...]) -> str:
    """``column IN (...)`` for a CHECK constraint that keeps an enumeration honest on every backend."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware UTC datetimes, also on SQLite (which keeps no zone).

    Naive values are taken to be UTC already: callers holding a local EXIF time without an offset must
    convert it before storing, or accept that it is treated as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's DATETIME formatter drops the zone anyway; strip it explicitly so the text is UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
