"""supplementary charges: a charge read after settlement goes onto the supplementary bill (补费)

Revision ID: 0002_settle
Revises: 0001
Create Date: 2026-12-01 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_settle"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("supplementary", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.drop_column("supplementary")
