"""schedules and appointments: the directory (departments, doctors), weekly templates and their
exceptions, clinic sessions cut into slots, appointments, and idempotency records for booking

Revision ID: 0005_schedules
Revises: 0004_causes
Create Date: 2026-12-01 13:32:59.664286
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_schedules"
down_revision: str | None = "0004_causes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "department",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("floor", sa.String(length=16), nullable=True),
        sa.Column("zone", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_department")),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", "key", name=op.f("pk_idempotency_record")),
    )
    op.create_table(
        "doctor",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=24), nullable=False),
        sa.Column("expert", sa.Boolean(), nullable=False),
        sa.Column("profile", sa.String(length=1000), nullable=True),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"], ["department.code"], name=op.f("fk_doctor_department_department")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_doctor")),
    )
    with op.batch_alter_table("doctor", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doctor_department"), ["department"], unique=False)

    op.create_table(
        "schedule_template",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("doctor_id", sa.String(length=36), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.Time(), nullable=False),
        sa.Column("ends_at", sa.Time(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("booking_opens_days", sa.Integer(), nullable=False),
        sa.Column("booking_opens_at", sa.Time(), nullable=False),
        sa.Column("booking_closes_minutes", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"], ["department.code"], name=op.f("fk_schedule_template_department_department")
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctor.id"], name=op.f("fk_schedule_template_doctor_id_doctor")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_template")),
    )
    with op.batch_alter_table("schedule_template", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedule_template_department"), ["department"], unique=False)
        batch_op.create_index(batch_op.f("ix_schedule_template_doctor_id"), ["doctor_id"], unique=False)

    op.create_table(
        "clinic_session",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=True),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("doctor_id", sa.String(length=36), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("fee_item", sa.String(length=32), nullable=False),
        sa.Column("fee_fen", sa.Integer(), nullable=False),
        sa.Column("booking_opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("booking_closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"], ["department.code"], name=op.f("fk_clinic_session_department_department")
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctor.id"], name=op.f("fk_clinic_session_doctor_id_doctor")
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["schedule_template.id"],
            name=op.f("fk_clinic_session_template_id_schedule_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_session")),
        sa.UniqueConstraint("template_id", "date", name="uq_clinic_session_template_date"),
    )
    with op.batch_alter_table("clinic_session", schema=None) as batch_op:
        batch_op.create_index("ix_clinic_session_department_date", ["department", "date"], unique=False)
        batch_op.create_index("ix_clinic_session_doctor_date", ["doctor_id", "date"], unique=False)

    op.create_table(
        "schedule_exception",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.Time(), nullable=True),
        sa.Column("ends_at", sa.Time(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["schedule_template.id"],
            name=op.f("fk_schedule_exception_template_id_schedule_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_exception")),
        sa.UniqueConstraint("template_id", "date", name="uq_schedule_exception_template_date"),
    )
    op.create_table(
        "session_slot",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("clinic_session_id", sa.String(length=36), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.CheckConstraint("taken >= 0 AND taken <= capacity", name=op.f("ck_session_slot_seats")),
        sa.ForeignKeyConstraint(
            ["clinic_session_id"],
            ["clinic_session.id"],
            name=op.f("fk_session_slot_clinic_session_id_clinic_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_slot")),
        sa.UniqueConstraint("clinic_session_id", "starts_at", name="uq_session_slot_session_start"),
    )
    op.create_table(
        "appointment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("clinic_session_id", sa.String(length=36), nullable=False),
        sa.Column("slot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("slot_starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("referring_clinic", sa.String(length=100), nullable=True),
        sa.Column("followup_of_visit_id", sa.String(length=36), nullable=True),
        sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("booked_by", sa.String(length=64), nullable=False),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("noshow_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_session_id"],
            ["clinic_session.id"],
            name=op.f("fk_appointment_clinic_session_id_clinic_session"),
        ),
        sa.ForeignKeyConstraint(
            ["followup_of_visit_id"], ["visit.id"], name=op.f("fk_appointment_followup_of_visit_id_visit")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_appointment_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["session_slot.id"], name=op.f("fk_appointment_slot_id_session_slot")
        ),
        sa.ForeignKeyConstraint(["visit_id"], ["visit.id"], name=op.f("fk_appointment_visit_id_visit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment")),
    )
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_appointment_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_appointment_visit_id"), ["visit_id"], unique=False)
        batch_op.create_index("ix_appointment_slot_status", ["slot_id", "status"], unique=False)
        batch_op.create_index("ix_appointment_status_slot", ["status", "slot_starts_at"], unique=False)
        batch_op.create_index(
            "uq_appointment_active_patient",
            ["clinic_session_id", "patient_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('proposed', 'booked', 'arrived')"),
            postgresql_where=sa.text("status IN ('proposed', 'booked', 'arrived')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_appointment_active_patient",
            sqlite_where=sa.text("status IN ('proposed', 'booked', 'arrived')"),
            postgresql_where=sa.text("status IN ('proposed', 'booked', 'arrived')"),
        )
        batch_op.drop_index("ix_appointment_status_slot")
        batch_op.drop_index("ix_appointment_slot_status")
        batch_op.drop_index(batch_op.f("ix_appointment_visit_id"))
        batch_op.drop_index(batch_op.f("ix_appointment_patient_id"))

    op.drop_table("appointment")
    op.drop_table("session_slot")
    op.drop_table("schedule_exception")
    with op.batch_alter_table("clinic_session", schema=None) as batch_op:
        batch_op.drop_index("ix_clinic_session_doctor_date")
        batch_op.drop_index("ix_clinic_session_department_date")

    op.drop_table("clinic_session")
    with op.batch_alter_table("schedule_template", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedule_template_doctor_id"))
        batch_op.drop_index(batch_op.f("ix_schedule_template_department"))

    op.drop_table("schedule_template")
    with op.batch_alter_table("doctor", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_department"))

    op.drop_table("doctor")
    op.drop_table("idempotency_record")
    op.drop_table("department")
