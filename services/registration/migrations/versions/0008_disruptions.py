"""disruptions: a clinic session changed, suspended, resumed or cancelled, the appointments it touched,
and the rebooking offered to each patient

Revision ID: 0008_disruptions
Revises: 0005_schedules
Create Date: 2026-12-01 13:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_disruptions"
down_revision: str | None = "0007_patient_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_disruption",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("clinic_session_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("substitute_doctor_id", sa.String(length=36), nullable=True),
        sa.Column("offered_session_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_session_id"],
            ["clinic_session.id"],
            name=op.f("fk_session_disruption_clinic_session_id_clinic_session"),
        ),
        sa.ForeignKeyConstraint(
            ["substitute_doctor_id"],
            ["doctor.id"],
            name=op.f("fk_session_disruption_substitute_doctor_id_doctor"),
        ),
        sa.ForeignKeyConstraint(
            ["offered_session_id"],
            ["clinic_session.id"],
            name=op.f("fk_session_disruption_offered_session_id_clinic_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_disruption")),
    )
    with op.batch_alter_table("session_disruption", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_session_disruption_clinic_session_id"), ["clinic_session_id"], unique=False
        )

    op.create_table(
        "disrupted_appointment",
        sa.Column("disruption_id", sa.String(length=36), nullable=False),
        sa.Column("appointment_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["disruption_id"],
            ["session_disruption.id"],
            name=op.f("fk_disrupted_appointment_disruption_id_session_disruption"),
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_disrupted_appointment_appointment_id_appointment"),
        ),
        sa.PrimaryKeyConstraint("disruption_id", "appointment_id", name=op.f("pk_disrupted_appointment")),
    )

    op.create_table(
        "rebooking_offer",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("disruption_id", sa.String(length=36), nullable=False),
        sa.Column("appointment_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("clinic_session_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("rebooked_appointment_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["disruption_id"],
            ["session_disruption.id"],
            name=op.f("fk_rebooking_offer_disruption_id_session_disruption"),
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointment.id"], name=op.f("fk_rebooking_offer_appointment_id_appointment")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_session_id"],
            ["clinic_session.id"],
            name=op.f("fk_rebooking_offer_clinic_session_id_clinic_session"),
        ),
        sa.ForeignKeyConstraint(
            ["rebooked_appointment_id"],
            ["appointment.id"],
            name=op.f("fk_rebooking_offer_rebooked_appointment_id_appointment"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rebooking_offer")),
    )
    with op.batch_alter_table("rebooking_offer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rebooking_offer_disruption_id"), ["disruption_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_rebooking_offer_appointment_id"), ["appointment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_rebooking_offer_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rebooking_offer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rebooking_offer_patient_id"))
        batch_op.drop_index(batch_op.f("ix_rebooking_offer_appointment_id"))
        batch_op.drop_index(batch_op.f("ix_rebooking_offer_disruption_id"))
    op.drop_table("rebooking_offer")
    op.drop_table("disrupted_appointment")
    with op.batch_alter_table("session_disruption", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_disruption_clinic_session_id"))
    op.drop_table("session_disruption")
