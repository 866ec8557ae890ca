"""critical reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:04:17.827267
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Reports posted before this revision were never flagged: they default to not critical.
    # sa.false() renders FALSE on PostgreSQL and 0 on SQLite (autogenerate wrote SQLite's 0 for both).
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("critical", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("critical_note", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_column("critical_note")
        batch_op.drop_column("critical")
