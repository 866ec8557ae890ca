"""mutual recognition (互认): per-test validity windows, the performing institution of each report,
duplicate reasons on orders, and results received from other hospitals

Revision ID: 0010_recognition
Revises: 0009_turnaround
Create Date: 2026-12-01 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_recognition"
down_revision: str | None = "0009_turnaround"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orderable_test", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recognised", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("validity_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("duplicate_note", sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f("ix_lab_order_duplicate_reason"), ["duplicate_reason"], unique=False)
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("performing_institution_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("performing_institution_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("institution_level", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("duplicate_reason", sa.String(length=32), nullable=True))
    op.create_table(
        "external_result",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("test_code", sa.String(length=16), nullable=False),
        sa.Column("performed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("institution_code", sa.String(length=32), nullable=False),
        sa.Column("institution_name", sa.String(length=64), nullable=False),
        sa.Column("institution_level", sa.String(length=16), nullable=False),
        sa.Column("conclusion", sa.String(length=2000), nullable=False),
        sa.Column("observations", sa.JSON(), nullable=False),
        sa.Column("verified_by", sa.String(length=64), nullable=False),
        sa.Column("source_client", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_result")),
        sa.UniqueConstraint(
            "institution_code", "external_id", name="uq_external_result_institution_code_external_id"
        ),
    )
    op.create_index(
        "ix_external_result_patient_test",
        "external_result",
        ["patient_id", "test_code", "performed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_external_result_patient_test", table_name="external_result")
    op.drop_table("external_result")
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_column("duplicate_reason")
        batch_op.drop_column("institution_level")
        batch_op.drop_column("performing_institution_name")
        batch_op.drop_column("performing_institution_code")
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lab_order_duplicate_reason"))
        batch_op.drop_column("duplicate_note")
        batch_op.drop_column("duplicate_reason")
    with op.batch_alter_table("orderable_test", schema=None) as batch_op:
        batch_op.drop_column("validity_days")
        batch_op.drop_column("recognised")
