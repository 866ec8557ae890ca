"""booking fees: an appointment's consultation fee paid at booking, refunded on cancellation, moved onto
the visit at check-in

Revision ID: 0004_booking_fees
Revises: 0003_causes
Create Date: 2026-12-01 13:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_booking_fees"
down_revision: str | None = "0003_causes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "booking_fee",
        sa.Column("appointment_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("clinic_session_id", sa.String(length=36), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("item_name", sa.String(length=100), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("charge_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_code"], ["catalogue_item.code"], name=op.f("fk_booking_fee_item_code_catalogue_item")
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_booking_fee_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("appointment_id", name=op.f("pk_booking_fee")),
    )
    with op.batch_alter_table("booking_fee", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_fee_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_booking_fee_clinic_session_id"), ["clinic_session_id"], unique=False
        )

    op.create_table(
        "booking_payment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("appointment_id", sa.String(length=36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["booking_fee.appointment_id"],
            name=op.f("fk_booking_payment_appointment_id_booking_fee"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_payment")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_booking_payment_appointment_id")),
    )
    op.create_table(
        "refund",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("appointment_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["booking_fee.appointment_id"],
            name=op.f("fk_refund_appointment_id_booking_fee"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["booking_payment.id"], name=op.f("fk_refund_payment_id_booking_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_refund_appointment_id")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_refund_payment_id")),
    )


def downgrade() -> None:
    op.drop_table("refund")
    op.drop_table("booking_payment")
    with op.batch_alter_table("booking_fee", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_fee_clinic_session_id"))
        batch_op.drop_index(batch_op.f("ix_booking_fee_patient_id"))
    op.drop_table("booking_fee")
