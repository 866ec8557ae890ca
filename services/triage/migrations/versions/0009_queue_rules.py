"""queue rules: a ticket's service class and its skip's recall interval; a queue's recall minutes,
cap per station and ordering rules

Revision ID: 0009_queue_rules
Revises: 0008_queue_actions
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_queue_rules"
down_revision: str | None = "0008_queue_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_class", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("skip_recall_calls", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("skip_recall_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("queue_setting", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skip_requeue_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("station_cap", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_setting", schema=None) as batch_op:
        batch_op.drop_column("rules")
        batch_op.drop_column("station_cap")
        batch_op.drop_column("skip_requeue_minutes")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("skip_recall_at")
        batch_op.drop_column("skip_recall_calls")
        batch_op.drop_column("skipped_at")
        batch_op.drop_column("service_class")
