"""Feedback tables: an inbox per user, individuals a user follows, and answers given in practice mode.

Volunteers stay when they hear back ("your encounter was confirmed as T-0042", "T-0042 was seen again"), and
learn faster when practice tells them the right answer; these rows are what makes both possible.
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Index
from sqlmodel import Field, SQLModel

from core.store.columns import UTCDateTime, utc_now


class Notification(SQLModel, table=True):
    """One inbox message; ``read_at`` is set when the user marks it read."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_id_read_at", "user_id", "read_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column_args=[ForeignKey("user_account.id", name="fk_notification_user_id_user_account", ondelete="CASCADE")],
    )
    kind: str = Field(max_length=32)
    message: str
    encounter_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[ForeignKey("encounter.id", name="fk_notification_encounter_id_encounter", ondelete="SET NULL")],
    )
    individual_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[
            ForeignKey("individual.id", name="fk_notification_individual_id_individual", ondelete="SET NULL")
        ],
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, index=True)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Follow(SQLModel, table=True):
    """A user follows an individual: every new confirmed encounter of it reaches their inbox."""

    __tablename__ = "follow"

    user_id: int = Field(
        primary_key=True,
        sa_column_args=[ForeignKey("user_account.id", name="fk_follow_user_id_user_account", ondelete="CASCADE")],
    )
    individual_id: int = Field(
        primary_key=True,
        index=True,
        sa_column_args=[ForeignKey("individual.id", name="fk_follow_individual_id_individual", ondelete="CASCADE")],
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class PracticeAnswer(SQLModel, table=True):
    """A volunteer's answer to a practice question (a decided sighting whose answer is known)."""

    __tablename__ = "practice_answer"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        index=True,
        sa_column_args=[
            ForeignKey("user_account.id", name="fk_practice_answer_user_id_user_account", ondelete="CASCADE")
        ],
    )
    sighting_id: int = Field(
        sa_column_args=[ForeignKey("sighting.id", name="fk_practice_answer_sighting_id_sighting", ondelete="CASCADE")],
    )
    answer_individual_id: int | None = Field(
        default=None,
        nullable=True,
        sa_column_args=[
            ForeignKey("individual.id", name="fk_practice_answer_answer_individual_id_individual", ondelete="SET NULL")
        ],
    )
    answered_new: bool = Field(default=False)
    correct: bool
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
