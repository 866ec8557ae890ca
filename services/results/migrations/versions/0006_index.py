"""the visits merges moved, so orders placed for them afterwards follow the merge

Revision ID: 0006_index
Revises: 0004_causes
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_index"
down_revision: str | None = "0004_causes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merged_visit",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("visit_id", name=op.f("pk_merged_visit")),
    )


def downgrade() -> None:
    op.drop_table("merged_visit")
