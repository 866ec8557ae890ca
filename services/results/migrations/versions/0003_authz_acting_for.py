"""result access: the patient a patient-bound client acted for

Revision ID: 0003_authz
Revises: 0002
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_authz"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before this revision were by clients acting for nobody, or not recorded: NULL.
    with op.batch_alter_table("result_access", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acting_for", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("result_access", schema=None) as batch_op:
        batch_op.drop_column("acting_for")
