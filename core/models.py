"""The gallery's tables: individuals, their photos, and the feature files cached for each photo.

The schema is owned by the Alembic migrations in ``core/migrations``; these classes must describe the
same tables (``tests/test_db.py`` compares them). Constraint and index names are spelled out so that
later migrations can refer to them on every backend, SQLite's batch mode included.
"""

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

SIDES: tuple[str, ...] = ("left", "right", "top", "other", "unknown")
"""Which side of the head a photo shows; turtle heads are asymmetric, so left never matches right."""

INDIVIDUAL_STATUSES: tuple[str, ...] = ("active", "retired", "merged")
"""Only ``active`` individuals are searched; ``merged`` ones point at the survivor via ``merged_into_id``."""

Crop = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` as fractions of the oriented image (after EXIF orientation and ``rotation``)."""


def utc_now() -> datetime:
    """Aware UTC now; the default of every ``created_at``."""
    return datetime.now(UTC)


def _sql_in(column: str, values: tuple[str, ...]) -> str:
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


def validate_crop(crop: Any) -> Crop | None:
    """Return ``crop`` as four floats, or raise ValueError unless 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1."""
    if crop is None:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in crop)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"crop must be four numbers (x0, y0, x1, y1), got {crop!r}") from exc
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"crop must be finite, got {crop!r}")
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(f"crop must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {crop!r}")
    return (x0, y0, x1, y1)


class Individual(SQLModel, table=True):
    """One animal. Merging keeps the row (status ``merged``) so that a merge can be undone."""

    __tablename__ = "individual"
    __table_args__ = (CheckConstraint(_sql_in("status", INDIVIDUAL_STATUSES), name="ck_individual_status"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str | None = Field(default=None)
    species: str = Field(default="")
    status: str = Field(default="active")
    merged_into_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_individual_merged_into_id_individual")],
    )
    notes: str = Field(default="")
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Photo(SQLModel, table=True):
    """One stored image. ``sha256`` identifies the content; ``path`` is relative to the photo store."""

    __tablename__ = "photo"
    __table_args__ = (CheckConstraint(_sql_in("side", SIDES), name="ck_photo_side"),)

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True, index=True)
    path: str
    original_name: str = Field(default="")
    individual_id: int | None = Field(
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_photo_individual_id_individual")],
    )
    side: str = Field(default="unknown")
    crop_x0: float | None = None
    crop_y0: float | None = None
    crop_x1: float | None = None
    crop_y1: float | None = None
    rotation: int = Field(default=0)
    width: int
    height: int
    taken_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    latitude: float | None = None
    longitude: float | None = None
    uploaded_by: int | None = None
    in_gallery: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)

    @property
    def crop(self) -> Crop | None:
        """The head crop, or None when any corner is missing (the whole image is used)."""
        values = (self.crop_x0, self.crop_y0, self.crop_x1, self.crop_y1)
        if any(v is None for v in values):
            return None
        x0, y0, x1, y1 = values
        return (float(x0), float(y0), float(x1), float(y1))  # type: ignore[arg-type]

    def set_crop(self, crop: Crop | None) -> None:
        """Validate and store a crop (None clears it); keeps the four columns all set or all empty."""
        checked = validate_crop(crop)
        self.crop_x0, self.crop_y0, self.crop_x1, self.crop_y1 = checked or (None, None, None, None)


class FeatureRecord(SQLModel, table=True):
    """Where the cached features of one photo for one extractor configuration live on disk."""

    __tablename__ = "feature_record"
    __table_args__ = (
        UniqueConstraint(
            "photo_id", "extractor", "version", name="uq_feature_record_photo_extractor_version"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    photo_id: int = Field(
        sa_column_args=[ForeignKey("photo.id", name="fk_feature_record_photo_id_photo", ondelete="CASCADE")],
    )
    extractor: str
    version: str
    path: str
    n_keypoints: int
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
