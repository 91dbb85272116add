"""Review: user accounts, sightings with their candidates and votes, and the audit log.

Revision ID: 0002_review
Revises: 0001_gallery
Create Date: 2025-01-15

Written by hand, like 0001: a frozen snapshot that spells out its own values and never imports
``core.store.models``. Only new tables; the gallery tables of 0001 are left exactly as they were, so a
catalogue made by the previous version keeps every row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_review"
down_revision: str | Sequence[str] | None = "0001_gallery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIDES = "side IN ('left', 'right', 'top', 'other', 'unknown')"


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('volunteer', 'reviewer', 'admin')", name="ck_user_account_role"),
    )
    op.create_index("ix_user_account_username", "user_account", ["username"], unique=True)

    op.create_table(
        "sighting",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("new_individual_probability", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("decided_individual_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'decided', 'conflict')", name="ck_sighting_status"),
        sa.CheckConstraint(_SIDES, name="ck_sighting_side"),
        sa.CheckConstraint("decision IS NULL OR decision IN ('same', 'new')", name="ck_sighting_decision"),
        sa.ForeignKeyConstraint(["photo_id"], ["photo.id"], name="fk_sighting_photo_id_photo"),
        sa.ForeignKeyConstraint(["submitted_by"], ["user_account.id"], name="fk_sighting_submitted_by_user_account"),
        sa.ForeignKeyConstraint(
            ["decided_individual_id"],
            ["individual.id"],
            name="fk_sighting_decided_individual_id_individual",
        ),
        sa.ForeignKeyConstraint(["decided_by"], ["user_account.id"], name="fk_sighting_decided_by_user_account"),
    )
    op.create_index("ix_sighting_photo_id", "sighting", ["photo_id"], unique=True)
    op.create_index("ix_sighting_submitted_by", "sighting", ["submitted_by"], unique=False)
    op.create_index("ix_sighting_status", "sighting", ["status"], unique=False)
    op.create_index("ix_sighting_decided_individual_id", "sighting", ["decided_individual_id"], unique=False)

    op.create_table(
        "candidate",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("individual_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("n_matches", sa.Integer(), nullable=False),
        sa.UniqueConstraint("sighting_id", "rank", name="uq_candidate_sighting_rank"),
        sa.CheckConstraint("rank >= 1", name="ck_candidate_rank"),
        sa.ForeignKeyConstraint(
            ["sighting_id"], ["sighting.id"], name="fk_candidate_sighting_id_sighting", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["individual_id"], ["individual.id"], name="fk_candidate_individual_id_individual"),
    )

    op.create_table(
        "vote",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("individual_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sighting_id", "user_id", name="uq_vote_sighting_user"),
        sa.CheckConstraint("decision IN ('same', 'new', 'unsure')", name="ck_vote_decision"),
        sa.CheckConstraint(
            "(decision = 'same' AND individual_id IS NOT NULL) OR (decision <> 'same' AND individual_id IS NULL)",
            name="ck_vote_individual",
        ),
        sa.ForeignKeyConstraint(
            ["sighting_id"], ["sighting.id"], name="fk_vote_sighting_id_sighting", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], name="fk_vote_user_id_user_account"),
        sa.ForeignKeyConstraint(["individual_id"], ["individual.id"], name="fk_vote_individual_id_individual"),
    )
    op.create_index("ix_vote_sighting_id", "vote", ["sighting_id"], unique=False)
    op.create_index("ix_vote_user_id", "vote", ["user_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("reverts_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("reverts_id", name="uq_audit_log_reverts_id"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], name="fk_audit_log_user_id_user_account"),
        sa.ForeignKeyConstraint(["reverts_id"], ["audit_log.id"], name="fk_audit_log_reverts_id_audit_log"),
    )
    op.create_index("ix_audit_log_user_id", "audit_log", ["user_id"], unique=False)
    op.create_index("ix_audit_log_action", "audit_log", ["action"], unique=False)
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"], unique=False)
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id"], unique=False)

    op.create_table(
        "audit_individual",
        sa.Column("audit_log_id", sa.Integer(), nullable=False),
        sa.Column("individual_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("audit_log_id", "individual_id"),
        sa.ForeignKeyConstraint(
            ["audit_log_id"],
            ["audit_log.id"],
            name="fk_audit_individual_audit_log_id_audit_log",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["individual_id"], ["individual.id"], name="fk_audit_individual_individual_id_individual"
        ),
    )
    op.create_index("ix_audit_individual_individual_id", "audit_individual", ["individual_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_individual_individual_id", table_name="audit_individual")
    op.drop_table("audit_individual")
    for name in (
        "ix_audit_log_target",
        "ix_audit_log_created_at",
        "ix_audit_log_action",
        "ix_audit_log_user_id",
    ):
        op.drop_index(name, table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_vote_user_id", table_name="vote")
    op.drop_index("ix_vote_sighting_id", table_name="vote")
    op.drop_table("vote")
    op.drop_table("candidate")
    for name in (
        "ix_sighting_decided_individual_id",
        "ix_sighting_status",
        "ix_sighting_submitted_by",
        "ix_sighting_photo_id",
    ):
        op.drop_index(name, table_name="sighting")
    op.drop_table("sighting")
    op.drop_index("ix_user_account_username", table_name="user_account")
    op.drop_table("user_account")
