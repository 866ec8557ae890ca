"""turnaround: an order's priority, target and due time, its collection, receipt and first final report
times, and whether `order.overdue` was sent

Orders before this revision get no target (their due time is unknown): they stay out of the overdue
list and the TAT figures. Their first final report time is their final report's.

Revision ID: 0009_turnaround
Revises: 0008_prints_audit
Create Date: 2026-12-01 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_turnaround"
down_revision: str | None = "0008_prints_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMES = ("due_at", "collected_at", "received_at", "reported_at", "overdue_notified_at")


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.String(length=16), server_default="routine", nullable=False)
        )
        batch_op.add_column(sa.Column("target_minutes", sa.Integer(), nullable=True))
        for name in TIMES:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_lab_order_status_due_at", ["status", "due_at"], unique=False)
    op.execute(
        "UPDATE lab_order SET reported_at = (SELECT MIN(report.reported_at) FROM report "
        "WHERE report.order_id = lab_order.id AND report.status IN ('final', 'amended', 'corrected')) "
        "WHERE status = 'reported'"
    )


def downgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_index("ix_lab_order_status_due_at")
        for name in reversed(TIMES):
            batch_op.drop_column(name)
        batch_op.drop_column("target_minutes")
        batch_op.drop_column("priority")
