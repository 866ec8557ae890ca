"""stays: an account marked for discharge settlement (出院结算) when registration discharges the visit

Revision ID: 0005_stays
Revises: 0003_causes
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_stays"
down_revision: str | None = "0004_booking_fees"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.drop_column("discharged_at")
