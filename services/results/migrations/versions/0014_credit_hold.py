"""credit hold: why an order awaits payment (`hold_reason`: prepay, or credit_limit for a settle-later
order past the account's credit limit)

Orders already awaiting payment could only have been prepay ones: they get `prepay`.

Revision ID: 0014_credit_hold
Revises: 0013_report_renderings
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_credit_hold"
down_revision: str | None = "0013_report_renderings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold_reason", sa.String(length=16), nullable=True))
    op.execute("UPDATE lab_order SET hold_reason = 'prepay' WHERE status = 'awaiting_payment'")


def downgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_column("hold_reason")
