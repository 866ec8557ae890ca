"""report lifecycle: verification, doctor's hold, revisions, LIS ids, critical values, paid orders

Reports final before this revision were released under the old rule (final was enough): they are
marked verified by whoever reported them, so patients keep reaching them. Prepaid orders already
released to the lab were paid: `paid_at` is their release time.

Revision ID: 0007_report_lifecycle
Revises: 0006_index
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_report_lifecycle"
down_revision: str | None = "0006_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("department", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("withheld", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("source_client", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("external_id", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_report_source_client_external_id"), ["source_client", "external_id"]
        )
    op.execute(
        "UPDATE report SET verified_by = reported_by, verified_at = reported_at WHERE status = 'final'"
    )
    op.execute(
        "UPDATE lab_order SET paid_at = released_at WHERE payment_mode = 'prepay' AND released_at IS NOT NULL"
    )
    op.create_table(
        "report_revision",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("conclusion", sa.String(length=2000), nullable=False),
        sa.Column("observations", sa.JSON(), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("verified_by", sa.String(length=64), nullable=True),
        sa.Column("reported_by", sa.String(length=64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"], ["report.id"], name=op.f("fk_report_revision_report_id_report")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_revision")),
    )
    with op.batch_alter_table("report_revision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_revision_report_id"), ["report_id"], unique=False)
    op.create_table(
        "report_hold_action",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["report.id"], name=op.f("fk_report_hold_action_report_id_report")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_hold_action")),
    )
    with op.batch_alter_table("report_hold_action", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_hold_action_report_id"), ["report_id"], unique=False)
    op.create_table(
        "critical_value",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=True),
        sa.Column("test_code", sa.String(length=16), nullable=False),
        sa.Column("observation_code", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_client", sa.String(length=64), nullable=True),
        sa.Column("acknowledgement_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"], ["report.id"], name=op.f("fk_critical_value_report_id_report")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critical_value")),
        sa.UniqueConstraint(
            "report_id", "observation_code", name=op.f("uq_critical_value_report_id_observation_code")
        ),
    )
    with op.batch_alter_table("critical_value", schema=None) as batch_op:
        batch_op.create_index("ix_critical_value_pending", ["acknowledged_at", "raised_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_critical_value_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("critical_value", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_critical_value_patient_id"))
        batch_op.drop_index("ix_critical_value_pending")
    op.drop_table("critical_value")
    with op.batch_alter_table("report_hold_action", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_hold_action_report_id"))
    op.drop_table("report_hold_action")
    with op.batch_alter_table("report_revision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_revision_report_id"))
    op.drop_table("report_revision")
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_report_source_client_external_id"), type_="unique")
        batch_op.drop_column("external_id")
        batch_op.drop_column("source_client")
        batch_op.drop_column("version")
        batch_op.drop_column("withheld")
        batch_op.drop_column("verified_at")
        batch_op.drop_column("verified_by")
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_column("paid_at")
        batch_op.drop_column("department")
