"""wait estimates: the tickets told they are nearly up (`queue.nearly_up`, once per ticket)

Revision ID: 0010_wait_estimates
Revises: 0009_queue_rules
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_wait_estimates"
down_revision: str | None = "0009_queue_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "nearly_up_notice",
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_nearly_up_notice")),
    )


def downgrade() -> None:
    op.drop_table("nearly_up_notice")
