"""appointments: a ticket carries the booked slot's time; triage reads registration's feed (cursor and
consumed events) to queue checked-in patients

Revision ID: 0005_appointments
Revises: 0004_causes
Create Date: 2026-12-01 13:39:27.491946
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_appointments"
down_revision: str | None = "0004_causes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consumed_event",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_consumed_event")),
    )
    op.create_table(
        "feed_cursor",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_feed_cursor")),
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("appointment_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("appointment_at")

    op.drop_table("feed_cursor")
    op.drop_table("consumed_event")
