"""assessment in depth: vital signs, pain score, the suggested level and why, the override reason, the
re-triage deadline (and when its overdue event was emitted), the department routed to

Revision ID: 0007_vitals
Revises: 0006_closed_visits
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_vitals"
down_revision: str | None = "0006_closed_visits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("heart_rate", sa.Integer()),
    ("systolic_bp", sa.Integer()),
    ("diastolic_bp", sa.Integer()),
    ("respiratory_rate", sa.Integer()),
    ("spo2", sa.Integer()),
    ("temperature", sa.Float()),
    ("consciousness", sa.String(length=1)),
    ("pain_score", sa.Integer()),
    ("suggested_level", sa.String(length=4)),
    ("suggested_by", sa.String(length=32)),
    ("suggestion_reason", sa.String(length=200)),
    ("override_reason", sa.String(length=200)),
    ("due_at", sa.DateTime(timezone=True)),
    ("overdue_emitted_at", sa.DateTime(timezone=True)),
    ("department", sa.String(length=32)),
    ("ticket_id", sa.String(length=36)),
)


def upgrade() -> None:
    with op.batch_alter_table("assessment", schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.create_index(batch_op.f("ix_assessment_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assessment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessment_due_at"))
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
