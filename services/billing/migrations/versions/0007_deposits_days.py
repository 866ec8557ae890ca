"""deposits and inpatient days: deposits with receipts, deposit applications and refunds, billing's view
of the stays, posted bed and nursing days, daily itemised bills and their acknowledgements

Revision ID: 0007_deposits_days
Revises: 0006_catalogue_rules
Create Date: 2026-12-01 16:43:07.765702
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_deposits_days"
down_revision: str | None = "0006_catalogue_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "receipt_counter",
        sa.Column("series", sa.String(length=8), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("series", name=op.f("pk_receipt_counter")),
    )
    op.create_table(
        "billing_stay",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_billing_stay_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("visit_id", name=op.f("pk_billing_stay")),
    )
    with op.batch_alter_table("billing_stay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_stay_discharged_at"), ["discharged_at"], unique=False)

    op.create_table(
        "daily_bill_issue",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("bill_date", sa.Date(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("running_total_fen", sa.BigInteger(), nullable=False),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_daily_bill_issue_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("visit_id", "bill_date", name=op.f("pk_daily_bill_issue")),
    )
    with op.batch_alter_table("daily_bill_issue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_daily_bill_issue_bill_date"), ["bill_date"], unique=False)

    op.create_table(
        "deposit",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("receipt_number", sa.String(length=32), nullable=False),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_deposit_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit")),
        sa.UniqueConstraint("receipt_number", name=op.f("uq_deposit_receipt_number")),
    )
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "deposit_refund",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("receipt_number", sa.String(length=32), nullable=False),
        sa.Column("refunded_by", sa.String(length=64), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_deposit_refund_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_refund")),
        sa.UniqueConstraint("receipt_number", name=op.f("uq_deposit_refund_receipt_number")),
    )
    with op.batch_alter_table("deposit_refund", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_refund_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "receipt",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("reference_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_receipt_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_receipt")),
    )
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "deposit_application",
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_deposit_application_payment_id_payment")
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visit_account.visit_id"],
            name=op.f("fk_deposit_application_visit_id_visit_account"),
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_deposit_application")),
    )
    with op.batch_alter_table("deposit_application", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_application_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "stay_bed",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("from_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ward_code", sa.String(length=32), nullable=False),
        sa.Column("bed_code", sa.String(length=32), nullable=False),
        sa.Column("bed_class", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["billing_stay.visit_id"], name=op.f("fk_stay_bed_visit_id_billing_stay")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stay_bed")),
        sa.UniqueConstraint("source_event_id", name="uq_stay_bed_source_event_id"),
    )
    with op.batch_alter_table("stay_bed", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stay_bed_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "inpatient_day",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("charge_id", sa.String(length=36), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["charge_id"], ["charge.id"], name=op.f("fk_inpatient_day_charge_id_charge")),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["billing_stay.visit_id"], name=op.f("fk_inpatient_day_visit_id_billing_stay")
        ),
        sa.PrimaryKeyConstraint("visit_id", "kind", "service_date", name=op.f("pk_inpatient_day")),
    )
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("low_balance_alerted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("low_balance_threshold_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("relief_category", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("followed_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("followed_up_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.drop_column("followed_up_by")
        batch_op.drop_column("followed_up_at")
        batch_op.drop_column("relief_category")
        batch_op.drop_column("low_balance_threshold_fen")
        batch_op.drop_column("low_balance_alerted")

    op.drop_table("inpatient_day")
    with op.batch_alter_table("stay_bed", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stay_bed_visit_id"))

    op.drop_table("stay_bed")
    with op.batch_alter_table("deposit_application", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_application_visit_id"))

    op.drop_table("deposit_application")
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipt_visit_id"))

    op.drop_table("receipt")
    with op.batch_alter_table("deposit_refund", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_refund_visit_id"))

    op.drop_table("deposit_refund")
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_visit_id"))

    op.drop_table("deposit")
    with op.batch_alter_table("daily_bill_issue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_daily_bill_issue_bill_date"))

    op.drop_table("daily_bill_issue")
    with op.batch_alter_table("billing_stay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_stay_discharged_at"))

    op.drop_table("billing_stay")
    op.drop_table("receipt_counter")
