"""stays: wards and beds, inpatient stays and their movements; visits that close

Revision ID: 0006_stays
Revises: 0004_causes
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_stays"
down_revision: str | None = "0005_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("close_reason", sa.String(length=16), nullable=True))
    op.create_table(
        "ward",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ward")),
    )
    with op.batch_alter_table("ward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ward_department"), ["department"], unique=False)
    op.create_table(
        "bed",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("ward_code", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("bed_class", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ward_code"], ["ward.code"], name=op.f("fk_bed_ward_code_ward")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bed")),
        sa.UniqueConstraint("ward_code", "code", name="uq_bed_ward_code_code"),
    )
    op.create_table(
        "inpatient_stay",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("admitted_from", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("ward_code", sa.String(length=32), nullable=False),
        sa.Column("bed_id", BIG_ID, nullable=True),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["bed_id"], ["bed.id"], name=op.f("fk_inpatient_stay_bed_id_bed")),
        sa.ForeignKeyConstraint(["visit_id"], ["visit.id"], name=op.f("fk_inpatient_stay_visit_id_visit")),
        sa.ForeignKeyConstraint(["ward_code"], ["ward.code"], name=op.f("fk_inpatient_stay_ward_code_ward")),
        sa.PrimaryKeyConstraint("visit_id", name=op.f("pk_inpatient_stay")),
        sa.UniqueConstraint("bed_id", name=op.f("uq_inpatient_stay_bed_id")),
    )
    op.create_table(
        "stay_movement",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("ward_code", sa.String(length=32), nullable=False),
        sa.Column("bed_code", sa.String(length=16), nullable=False),
        sa.Column("bed_class", sa.String(length=16), nullable=False),
        sa.Column("from_department", sa.String(length=32), nullable=True),
        sa.Column("from_ward_code", sa.String(length=32), nullable=True),
        sa.Column("from_bed_code", sa.String(length=16), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["inpatient_stay.visit_id"], name=op.f("fk_stay_movement_visit_id_inpatient_stay")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stay_movement")),
    )
    with op.batch_alter_table("stay_movement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stay_movement_visit_id"), ["visit_id"], unique=False)


def downgrade() -> None:
    op.drop_table("stay_movement")
    op.drop_table("inpatient_stay")
    op.drop_table("bed")
    op.drop_table("ward")
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_column("close_reason")
        batch_op.drop_column("closed_at")
