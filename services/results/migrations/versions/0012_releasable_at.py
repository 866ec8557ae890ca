"""releasable_at: when a report (and its order) first passed the release rule; patient_name: who a report
is for, kept from registration's feed for printing

Reports released before this revision get no `releasable_at`: the moment was not recorded, and neither
the payment setting nor the hold history of then can be known now. Patients registered before it are
learned as their next visit opens (consumers.py).

Revision ID: 0012_releasable_at
Revises: 0011_runtime_role
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_releasable_at"
down_revision: str | None = "0011_runtime_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("lab_order", "report"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("releasable_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "patient_name",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("identified", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("sex", sa.String(length=8), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_name")),
    )


def downgrade() -> None:
    op.drop_table("patient_name")
    for table in ("report", "lab_order"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("releasable_at")
