"""Gallery: individuals, photos and cached feature records.

Revision ID: 0001_gallery
Revises:
Create Date: 2025-01-01

Written by hand. A migration is a frozen snapshot: it spells out its own values and never imports
``core.store.models``, whose constants may change later.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_gallery"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "individual",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("species", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'retired', 'merged')", name="ck_individual_status"),
        sa.ForeignKeyConstraint(["merged_into_id"], ["individual.id"], name="fk_individual_merged_into_id_individual"),
    )
    op.create_index("ix_individual_code", "individual", ["code"], unique=True)

    op.create_table(
        "photo",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("original_name", sa.String(), nullable=False),
        sa.Column("individual_id", sa.Integer(), nullable=True),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("crop_x0", sa.Float(), nullable=True),
        sa.Column("crop_y0", sa.Float(), nullable=True),
        sa.Column("crop_x1", sa.Float(), nullable=True),
        sa.Column("crop_y1", sa.Float(), nullable=True),
        sa.Column("rotation", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("in_gallery", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('left', 'right', 'top', 'other', 'unknown')", name="ck_photo_side"),
        sa.ForeignKeyConstraint(["individual_id"], ["individual.id"], name="fk_photo_individual_id_individual"),
    )
    op.create_index("ix_photo_sha256", "photo", ["sha256"], unique=True)
    op.create_index("ix_photo_individual_id", "photo", ["individual_id"], unique=False)

    op.create_table(
        "feature_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("extractor", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("n_keypoints", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photo.id"], name="fk_feature_record_photo_id_photo", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("photo_id", "extractor", "version", name="uq_feature_record_photo_extractor_version"),
    )


def downgrade() -> None:
    op.drop_table("feature_record")
    op.drop_index("ix_photo_individual_id", table_name="photo")
    op.drop_index("ix_photo_sha256", table_name="photo")
    op.drop_table("photo")
    op.drop_index("ix_individual_code", table_name="individual")
    op.drop_table("individual")
