"""queue actions: queue settings (kind, wait target, skip rule) and stations; a ticket's place in line
(`lined_up_at`), its skips, recalls and transfer links; held tickets count as active

Revision ID: 0008_queue_actions
Revises: 0007_vitals
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_queue_actions"
down_revision: str | None = "0007_vitals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIVE = sa.text("status IN ('waiting', 'called')")
NEW_ACTIVE = sa.text("status IN ('waiting', 'called', 'held')")


def upgrade() -> None:
    op.create_table(
        "queue_setting",
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=True),
        sa.Column("target_minutes", sa.Integer(), nullable=False),
        sa.Column("skip_requeue_after", sa.Integer(), nullable=False),
        sa.Column("max_skips", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("department", name=op.f("pk_queue_setting")),
    )
    op.create_table(
        "station",
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("department", "code", name=op.f("pk_station")),
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lined_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("skips", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("recalls", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("transferred_from", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("transferred_to", sa.String(length=36), nullable=True))
    op.execute("UPDATE ticket SET lined_up_at = enqueued_at")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.alter_column("lined_up_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("skips", server_default=None)
        batch_op.alter_column("recalls", server_default=None)
        batch_op.drop_index("ix_ticket_queue_order")
        batch_op.create_index("ix_ticket_queue_order", ["department", "status", "rank", "lined_up_at"])
        batch_op.drop_index("uq_ticket_active_visit", sqlite_where=OLD_ACTIVE, postgresql_where=OLD_ACTIVE)
        batch_op.create_index(
            "uq_ticket_active_visit",
            ["visit_id", "department"],
            unique=True,
            sqlite_where=NEW_ACTIVE,
            postgresql_where=NEW_ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("uq_ticket_active_visit", sqlite_where=NEW_ACTIVE, postgresql_where=NEW_ACTIVE)
        batch_op.create_index(
            "uq_ticket_active_visit",
            ["visit_id", "department"],
            unique=True,
            sqlite_where=OLD_ACTIVE,
            postgresql_where=OLD_ACTIVE,
        )
        batch_op.drop_index("ix_ticket_queue_order")
        batch_op.create_index("ix_ticket_queue_order", ["department", "status", "rank", "enqueued_at"])
        batch_op.drop_column("transferred_to")
        batch_op.drop_column("transferred_from")
        batch_op.drop_column("recalls")
        batch_op.drop_column("skips")
        batch_op.drop_column("lined_up_at")
    op.drop_table("station")
    op.drop_table("queue_setting")
