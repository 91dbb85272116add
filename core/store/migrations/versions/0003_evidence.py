"""Evidence: what a volunteer saw when they submitted a sighting, so that Review shows it without matching again.

Revision ID: 0003_evidence
Revises: 0002_review
Create Date: 2026-12-01

A frozen snapshot like 0001 and 0002: one new table, nothing else changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_evidence"
down_revision: str | Sequence[str] | None = "0002_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sighting_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("engine_version", sa.String(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sighting_id"], ["sighting.id"], name="fk_sighting_evidence_sighting_id_sighting", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sighting_evidence_sighting_id", "sighting_evidence", ["sighting_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_sighting_evidence_sighting_id", table_name="sighting_evidence")
    op.drop_table("sighting_evidence")
