"""tenders: a refund names the payment whose tender it gives back (`payment.refund_of`), the insurer's
payments their scheme (`payment.insurance_scheme`), and a payment's receipt the insurer's share beside
the patient's (`receipt.insurer_fen`)

Revision ID: 0010_tenders
Revises: 0009_runtime_role
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_tenders"
down_revision: str | None = "0009_runtime_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refund_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("insurance_scheme", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_payment_refund_of"), ["refund_of"], unique=False)
    # A plain ADD COLUMN (never a table copy): the receipt's immutability triggers stay as they are.
    op.add_column("receipt", sa.Column("insurer_fen", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("receipt", "insurer_fen")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_refund_of"))
        batch_op.drop_column("insurance_scheme")
        batch_op.drop_column("refund_of")
