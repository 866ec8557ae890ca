"""wait metrics: an index for reading a date range of a few event types

Revision ID: 0003_wait_metrics
Revises: 0002_causes
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_wait_metrics"
down_revision: str | None = "0002_causes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Metrics are computed on query from the log (services/events/waits.py), so there is nothing to
    # backfill: the index makes "these types in this range" a range scan.
    with op.batch_alter_table("log_event", schema=None) as batch_op:
        batch_op.create_index("ix_log_event_type_occurred", ["event_type", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("log_event", schema=None) as batch_op:
        batch_op.drop_index("ix_log_event_type_occurred")
