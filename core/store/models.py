"""The gallery's tables: individuals, their photos, and the feature files cached for each photo.

The schema is owned by the Alembic migrations in ``core/migrations``; these classes must describe the
same tables (``tests/store/test_db.py`` compares them). Constraint and index names are spelled out so that
later migrations can refer to them on every backend, SQLite's batch mode included.
"""

import math
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.store import feedback, fieldwork  # noqa: F401  (their tables are part of the same schema)
from core.store.columns import UTCDateTime, sql_in, utc_now

SIDES: tuple[str, ...] = ("left", "right", "top", "other", "unknown")
"""Which side of the head a photo shows; turtle heads are asymmetric, so left never matches right."""

INDIVIDUAL_STATUSES: tuple[str, ...] = ("active", "retired", "merged")
"""Only ``active`` individuals are searched; ``merged`` ones point at the survivor via ``merged_into_id``."""

Crop = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` as fractions of the oriented image (after EXIF orientation and ``rotation``)."""


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
    __table_args__ = (CheckConstraint(sql_in("status", INDIVIDUAL_STATUSES), name="ck_individual_status"),)

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
    __table_args__ = (CheckConstraint(sql_in("side", SIDES), name="ck_photo_side"),)

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
    site_id: int | None = Field(
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("site.id", name="fk_photo_site_id_site")],
    )
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
        UniqueConstraint("photo_id", "extractor", "version", name="uq_feature_record_photo_extractor_version"),
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


# --- review: users, sightings, candidates, votes, audit log (revision 0002_review) ----------------------

ROLES: tuple[str, ...] = ("volunteer", "reviewer", "admin")
"""Volunteers submit and vote, reviewers work the queue, admins also decide, curate and manage users."""

SIGHTING_STATUSES: tuple[str, ...] = ("pending", "decided", "conflict")
"""``conflict``: the votes disagree and an admin must decide; only ``decided`` has changed the gallery."""

SIGHTING_DECISIONS: tuple[str, ...] = ("same", "new")
"""What a decided sighting became: a photo of an existing individual, or the first of a new one."""

VOTE_DECISIONS: tuple[str, ...] = ("same", "new", "unsure")


class User(SQLModel, table=True):
    """An account. The table is not called ``user``: that is a reserved word in PostgreSQL."""

    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint(sql_in("role", ROLES), name="ck_user_account_role"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    password_hash: str = Field(repr=False)
    role: str = Field(default="volunteer")
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Sighting(SQLModel, table=True):
    """One submitted photo under review, part of one encounter; one per photo, so re-submissions link to it."""

    __tablename__ = "sighting"
    __table_args__ = (
        CheckConstraint(sql_in("status", SIGHTING_STATUSES), name="ck_sighting_status"),
        CheckConstraint(sql_in("side", SIDES), name="ck_sighting_side"),
        CheckConstraint(f"decision IS NULL OR {sql_in('decision', SIGHTING_DECISIONS)}", name="ck_sighting_decision"),
    )

    id: int | None = Field(default=None, primary_key=True)
    photo_id: int = Field(
        unique=True,
        index=True,
        sa_column_args=[ForeignKey("photo.id", name="fk_sighting_photo_id_photo")],
    )
    encounter_id: int | None = Field(  # set on every sighting; nullable only because SQLite adds it in place
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("encounter.id", name="fk_sighting_encounter_id_encounter")],
    )
    submitted_by: int = Field(
        index=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_sighting_submitted_by_user_account")],
    )
    status: str = Field(default="pending", index=True)
    side: str = Field(default="unknown")
    notes: str = Field(default="")
    taken_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    latitude: float | None = None
    longitude: float | None = None
    new_individual_probability: float | None = None
    decision: str | None = None
    decided_individual_id: int | None = Field(
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_sighting_decided_individual_id_individual")],
    )
    decided_by: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_sighting_decided_by_user_account")],
    )
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Candidate(SQLModel, table=True):
    """One ranked candidate as the submitter saw it; ``code`` is a snapshot that survives renames."""

    __tablename__ = "candidate"
    __table_args__ = (
        UniqueConstraint("sighting_id", "rank", name="uq_candidate_sighting_rank"),
        CheckConstraint("rank >= 1", name="ck_candidate_rank"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sighting_id: int = Field(
        sa_column_args=[ForeignKey("sighting.id", name="fk_candidate_sighting_id_sighting", ondelete="CASCADE")],
    )
    individual_id: int = Field(
        sa_column_args=[ForeignKey("individual.id", name="fk_candidate_individual_id_individual")],
    )
    code: str = Field(default="", max_length=64)
    rank: int
    score: float
    probability: float | None = None
    n_matches: int = Field(default=0)


class SightingEvidence(SQLModel, table=True):
    """What the submitter saw, kept with the sighting so that a reviewer sees it at once, never matched again:
    the matches of the top candidates and the null they were read against (``core.service.evidence``)."""

    __tablename__ = "sighting_evidence"

    id: int | None = Field(default=None, primary_key=True)
    sighting_id: int = Field(
        unique=True,
        index=True,
        sa_column_args=[
            ForeignKey("sighting.id", name="fk_sighting_evidence_sighting_id_sighting", ondelete="CASCADE")
        ],
    )
    engine_version: str = Field(default="")
    payload: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Vote(SQLModel, table=True):
    """One user's verdict on one sighting; the database refuses a second vote by the same user."""

    __tablename__ = "vote"
    __table_args__ = (
        UniqueConstraint("sighting_id", "user_id", name="uq_vote_sighting_user"),
        CheckConstraint(sql_in("decision", VOTE_DECISIONS), name="ck_vote_decision"),
        CheckConstraint(
            "(decision = 'same' AND individual_id IS NOT NULL) OR (decision <> 'same' AND individual_id IS NULL)",
            name="ck_vote_individual",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    sighting_id: int = Field(
        index=True,
        sa_column_args=[ForeignKey("sighting.id", name="fk_vote_sighting_id_sighting", ondelete="CASCADE")],
    )
    user_id: int = Field(
        index=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_vote_user_id_user_account")],
    )
    decision: str
    individual_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_vote_individual_id_individual")],
    )
    comment: str = Field(default="")
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class AuditLog(SQLModel, table=True):
    """One decision or curation action: who, when, on what, and the state before and after.

    ``reverts_id`` points at the entry an undo reverted; it is unique, so an action is undone at most once.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("reverts_id", name="uq_audit_log_reverts_id"),
        Index("ix_audit_log_target", "target_type", "target_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(
        default=None,
        nullable=True,
        index=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_audit_log_user_id_user_account")],
    )
    action: str = Field(max_length=64, index=True)
    target_type: str = Field(max_length=32)
    target_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    reverts_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[ForeignKey("audit_log.id", name="fk_audit_log_reverts_id_audit_log")],
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, index=True)


class AuditIndividual(SQLModel, table=True):
    """Which individuals an audit entry concerns (a merge concerns two), for the per-individual history."""

    __tablename__ = "audit_individual"

    audit_log_id: int = Field(
        primary_key=True,
        sa_column_args=[
            ForeignKey("audit_log.id", name="fk_audit_individual_audit_log_id_audit_log", ondelete="CASCADE")
        ],
    )
    individual_id: int = Field(
        primary_key=True,
        index=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_audit_individual_individual_id_individual")],
    )


class SignInSession(SQLModel, table=True):
    """A signed-in browser session. Its token carries a random key whose SHA-256 is stored here, so signing
    out (``revoked_at``) ends that token on every server even though the token itself is still well signed."""

    __tablename__ = "sign_in_session"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(
        index=True,
        sa_column_args=[
            ForeignKey("user_account.id", name="fk_sign_in_session_user_id_user_account", ondelete="CASCADE")
        ],
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignInThrottle(SQLModel, table=True):
    """Recent failed sign-ins per account name and per client (``account:alice``, ``client:10.0.0.7``), kept in
    the database so that every app process slows the same guesser."""

    __tablename__ = "sign_in_throttle"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = Field(default=0)
    last_failure_at: float = Field(default=0.0)
    blocked_until: float = Field(default=0.0)
