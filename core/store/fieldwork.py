"""Field records: encounters (one outing's photos of one animal), the sites and species they refer to, and the
tag numbers and alternate ids an individual is known by elsewhere (flipper tags, PIT tags, other catalogues).

Capture–recapture counts encounters, not photos: a volunteer photographs the left and right profile of one
turtle at one place and time, and that is one observation. Each ``Sighting`` (one photo under review) belongs
to exactly one ``Encounter``; sightings created before encounters existed became one-photo encounters.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.store.columns import UTCDateTime, utc_now

LATITUDE_OK = "latitude IS NULL OR (latitude >= -90 AND latitude <= 90)"
LONGITUDE_OK = "longitude IS NULL OR (longitude >= -180 AND longitude <= 180)"


class Site(SQLModel, table=True):
    """A named place where animals are photographed; ``radius_km`` says which coordinates belong to it."""

    __tablename__ = "site"
    __table_args__ = (
        CheckConstraint(LATITUDE_OK, name="ck_site_latitude"),
        CheckConstraint(LONGITUDE_OK, name="ck_site_longitude"),
        CheckConstraint("radius_km IS NULL OR radius_km > 0", name="ck_site_radius_km"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True, index=True)
    region: str = Field(default="", max_length=120, index=True)
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float | None = None
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Species(SQLModel, table=True):
    """A species the project identifies; individuals and encounters name it by ``name``."""

    __tablename__ = "species"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True, index=True)
    scientific_name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Encounter(SQLModel, table=True):
    """One animal seen once: when, where, by whom, and (through its sightings) one or more photos, each with a side."""

    __tablename__ = "encounter"
    __table_args__ = (
        CheckConstraint(LATITUDE_OK, name="ck_encounter_latitude"),
        CheckConstraint(LONGITUDE_OK, name="ck_encounter_longitude"),
    )

    id: int | None = Field(default=None, primary_key=True)
    submitted_by: int = Field(
        index=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_encounter_submitted_by_user_account")],
    )
    observer: str = Field(default="", max_length=200)
    taken_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    site_id: int | None = Field(
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("site.id", name="fk_encounter_site_id_site")],
    )
    latitude: float | None = None
    longitude: float | None = None
    species: str = Field(default="", max_length=120)
    notes: str = Field(default="")
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)

    @property
    def tag_list(self) -> list[str]:
        """``tags`` as strings whatever the backend handed back (JSON may be None on old rows)."""
        value: Any = self.tags
        return [str(t) for t in value] if isinstance(value, list) else []


TAG_KINDS: tuple[str, ...] = ("flipper", "pit", "alternate")
"""Flipper and PIT tags are physical tags; ``alternate`` is another catalogue's id for the same animal."""


class IndividualTag(SQLModel, table=True):
    """A tag number or alternate id; unique per kind, so one tag can never name two individuals."""

    __tablename__ = "individual_tag"
    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_individual_tag_kind_value"),
        CheckConstraint("kind IN ('flipper', 'pit', 'alternate')", name="ck_individual_tag_kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    individual_id: int = Field(
        index=True,
        sa_column_args=[
            ForeignKey("individual.id", name="fk_individual_tag_individual_id_individual", ondelete="CASCADE")
        ],
    )
    kind: str = Field(max_length=32)
    value: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
