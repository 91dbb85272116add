"""Encounters, sites, species, tags and feedback: the field workflow of turtle photo-ID programmes.

Revision ID: 0005_encounters
Revises: 0004_sign_in
Create Date: 2026-12-02

Every existing sighting becomes a one-photo encounter carrying its submitter, date, place and notes, so no
data is lost and every later query can rely on ``sighting.encounter_id``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_encounters"
down_revision: str | Sequence[str] | None = "0004_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATITUDE_OK = "latitude IS NULL OR (latitude >= -90 AND latitude <= 90)"
LONGITUDE_OK = "longitude IS NULL OR (longitude >= -180 AND longitude <= 180)"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


# Whole statements, so that no SQL is ever spliced together (tests/security/test_injection.py).
SQLITE_ADD_COLUMN = {
    ("sighting", "encounter_id"): "ALTER TABLE sighting ADD COLUMN encounter_id INTEGER "
    "CONSTRAINT fk_sighting_encounter_id_encounter REFERENCES encounter (id)",
    (
        "photo",
        "site_id",
    ): "ALTER TABLE photo ADD COLUMN site_id INTEGER CONSTRAINT fk_photo_site_id_site REFERENCES site (id)",
}
_BACKFILL = (
    "INSERT INTO encounter (id, submitted_by, observer, taken_at, site_id, latitude, longitude, species, "
    "notes, tags, created_at) "
    "SELECT id, submitted_by, '', taken_at, NULL, "
    "CASE WHEN latitude BETWEEN -90 AND 90 THEN latitude END, "
    "CASE WHEN longitude BETWEEN -180 AND 180 THEN longitude END, "
    "'', notes, {tags}, created_at FROM sighting"
)
BACKFILL_SQLITE = _BACKFILL.replace("{tags}", "'[]'")
BACKFILL_POSTGRES = _BACKFILL.replace("{tags}", "CAST('[]' AS JSON)")  # text does not cast to JSON implicitly


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _add_reference(table: str, column: str, target: str, name: str) -> None:
    """A nullable reference column, added in place.

    On SQLite, batch mode would rebuild the table, and dropping the old copy with foreign keys on deletes
    the rows of every child table declared ON DELETE CASCADE (feature records, candidates, evidence): a
    plain ``ADD COLUMN`` keeps them. A column left by an earlier SQLite downgrade is reused.
    """
    if _sqlite():
        if column not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
            op.execute(SQLITE_ADD_COLUMN[(table, column)])
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(name, table, target, [column], ["id"])
    op.create_index(f"ix_{table}_{column}", table, [column], unique=False)


def _drop_reference(table: str, column: str, name: str) -> None:
    """Undo :func:`_add_reference`; SQLite keeps the (then unused) column, for the reason given there."""
    op.drop_index(f"ix_{table}_{column}", table_name=table)
    if not _sqlite():
        op.drop_constraint(name, table, type_="foreignkey")
        op.drop_column(table, column)


def upgrade() -> None:
    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("region", sa.String(length=120), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("radius_km", sa.Float(), nullable=True),
        _created_at(),
        sa.CheckConstraint(LATITUDE_OK, name="ck_site_latitude"),
        sa.CheckConstraint(LONGITUDE_OK, name="ck_site_longitude"),
        sa.CheckConstraint("radius_km IS NULL OR radius_km > 0", name="ck_site_radius_km"),
    )
    op.create_index("ix_site_name", "site", ["name"], unique=True)
    op.create_index("ix_site_region", "site", ["region"], unique=False)
    op.create_table(
        "species",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("scientific_name", sa.String(length=200), nullable=False),
        _created_at(),
    )
    op.create_index("ix_species_name", "species", ["name"], unique=True)
    op.create_table(
        "encounter",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("submitted_by", sa.Integer(), nullable=False),
        sa.Column("observer", sa.String(length=200), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("species", sa.String(length=120), nullable=False),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["submitted_by"], ["user_account.id"], name="fk_encounter_submitted_by_user_account"),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name="fk_encounter_site_id_site"),
        sa.CheckConstraint(LATITUDE_OK, name="ck_encounter_latitude"),
        sa.CheckConstraint(LONGITUDE_OK, name="ck_encounter_longitude"),
    )
    op.create_index("ix_encounter_submitted_by", "encounter", ["submitted_by"], unique=False)
    op.create_index("ix_encounter_site_id", "encounter", ["site_id"], unique=False)

    # One encounter per existing sighting, numbered like the sighting so that the backfill is one UPDATE.
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.execute(BACKFILL_POSTGRES if postgres else BACKFILL_SQLITE)
    if postgres:  # explicit ids do not move PostgreSQL's sequence
        op.execute(
            "SELECT setval(pg_get_serial_sequence('encounter', 'id'), "
            "COALESCE((SELECT MAX(id) FROM encounter), 0) + 1, false)"
        )
    _add_reference("sighting", "encounter_id", "encounter", "fk_sighting_encounter_id_encounter")
    op.execute("UPDATE sighting SET encounter_id = id")
    _add_reference("photo", "site_id", "site", "fk_photo_site_id_site")

    op.create_table(
        "individual_tag",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("individual_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["individual_id"],
            ["individual.id"],
            name="fk_individual_tag_individual_id_individual",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("kind", "value", name="uq_individual_tag_kind_value"),
        sa.CheckConstraint("kind IN ('flipper', 'pit', 'alternate')", name="ck_individual_tag_kind"),
    )
    op.create_index("ix_individual_tag_individual_id", "individual_tag", ["individual_id"], unique=False)

    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=True),
        sa.Column("individual_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name="fk_notification_user_id_user_account", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["encounter_id"], ["encounter.id"], name="fk_notification_encounter_id_encounter", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["individual_id"], ["individual.id"], name="fk_notification_individual_id_individual", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_notification_user_id_read_at", "notification", ["user_id", "read_at"], unique=False)
    op.create_index("ix_notification_created_at", "notification", ["created_at"], unique=False)

    op.create_table(
        "follow",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("individual_id", sa.Integer(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("user_id", "individual_id"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name="fk_follow_user_id_user_account", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["individual_id"], ["individual.id"], name="fk_follow_individual_id_individual", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_follow_individual_id", "follow", ["individual_id"], unique=False)

    op.create_table(
        "practice_answer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("answer_individual_id", sa.Integer(), nullable=True),
        sa.Column("answered_new", sa.Boolean(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name="fk_practice_answer_user_id_user_account", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sighting_id"], ["sighting.id"], name="fk_practice_answer_sighting_id_sighting", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["answer_individual_id"],
            ["individual.id"],
            name="fk_practice_answer_answer_individual_id_individual",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_practice_answer_user_id", "practice_answer", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_practice_answer_user_id", table_name="practice_answer")
    op.drop_table("practice_answer")
    op.drop_index("ix_follow_individual_id", table_name="follow")
    op.drop_table("follow")
    op.drop_index("ix_notification_created_at", table_name="notification")
    op.drop_index("ix_notification_user_id_read_at", table_name="notification")
    op.drop_table("notification")
    op.drop_index("ix_individual_tag_individual_id", table_name="individual_tag")
    op.drop_table("individual_tag")
    _drop_reference("photo", "site_id", "fk_photo_site_id_site")
    _drop_reference("sighting", "encounter_id", "fk_sighting_encounter_id_encounter")
    op.drop_index("ix_encounter_site_id", table_name="encounter")
    op.drop_index("ix_encounter_submitted_by", table_name="encounter")
    op.drop_table("encounter")
    op.drop_index("ix_species_name", table_name="species")
    op.drop_table("species")
    op.drop_index("ix_site_region", table_name="site")
    op.drop_index("ix_site_name", table_name="site")
    op.drop_table("site")
