"""report renderings: each report version's PDF paper, rendered once and stamped per print

Revision ID: 0013_report_renderings
Revises: 0012_releasable_at
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_report_renderings"
down_revision: str | None = "0012_releasable_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_rendering",
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("report_version", sa.Integer(), nullable=False),
        sa.Column("source_digest", sa.String(length=64), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("rendered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["report.id"], name=op.f("fk_report_rendering_report_id_report")
        ),
        sa.PrimaryKeyConstraint("report_id", "report_version", name=op.f("pk_report_rendering")),
    )
    with op.batch_alter_table("report_rendering", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_rendering_rendered_at"), ["rendered_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_rendering", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_rendering_rendered_at"))
    op.drop_table("report_rendering")
