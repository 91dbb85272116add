"""Sign-in: server-side sessions (so that signing out ends a copied token) and failed-attempt counters.

Revision ID: 0004_sign_in
Revises: 0003_evidence
Create Date: 2026-12-02

A frozen snapshot like the others: two new tables, nothing else changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_sign_in"
down_revision: str | Sequence[str] | None = "0003_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_session",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name="fk_sign_in_session_user_id_user_account", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sign_in_session_key_hash", "sign_in_session", ["key_hash"], unique=True)
    op.create_index("ix_sign_in_session_user_id", "sign_in_session", ["user_id"], unique=False)
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sign_in_throttle")
    op.drop_index("ix_sign_in_session_user_id", table_name="sign_in_session")
    op.drop_index("ix_sign_in_session_key_hash", table_name="sign_in_session")
    op.drop_table("sign_in_session")
