"""patient-session proofs: slip codes, one-time codes, lockouts and the attempt audit

Revision ID: 0003_sessions
Revises: 0001
Create Date: 2026-12-01 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_sessions"
down_revision: str | None = "0002_settle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slip_code",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["visit_id"], ["visit.id"], name=op.f("fk_slip_code_visit_id_visit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slip_code")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_slip_code_code_digest")),
    )
    with op.batch_alter_table("slip_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slip_code_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "one_time_code",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_one_time_code_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_code")),
    )
    with op.batch_alter_table("one_time_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_one_time_code_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "session_lock",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_session_lock")),
    )

    op.create_table(
        "session_attempt",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("presented", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_attempt")),
    )
    with op.batch_alter_table("session_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_attempt_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_attempt_client"), ["client"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_attempt_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("session_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_attempt_patient_id"))
        batch_op.drop_index(batch_op.f("ix_session_attempt_client"))
        batch_op.drop_index(batch_op.f("ix_session_attempt_at"))
    op.drop_table("session_attempt")
    op.drop_table("session_lock")
    with op.batch_alter_table("one_time_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_one_time_code_patient_id"))
    op.drop_table("one_time_code")
    with op.batch_alter_table("slip_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slip_code_visit_id"))
    op.drop_table("slip_code")
