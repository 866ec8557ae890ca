"""patient index: medical-card numbers (issued to every patient already on file), insurance schemes, and
indexes for searching by phone and by name prefix

Revision ID: 0007_patient_index
Revises: 0004_causes
Create Date: 2026-12-01 14:00:00.000000
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_patient_index"
down_revision: str | None = "0006_stays"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _issued_card_number(taken: set[str]) -> str:
    # As services.registration.patient_index.issue_card_number: 12 digits, never starting with 0.
    while True:
        number = str(10**11 + secrets.randbelow(9 * 10**11))
        if number not in taken:
            taken.add(number)
            return number


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("card_number", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column(
                "insurance_scheme",
                sa.String(length=24),
                server_default=sa.text("'self_pay'"),
                nullable=False,
            )
        )
    # Every patient has a card from now on: those registered before get one issued here.
    patient = sa.table("patient", sa.column("id", sa.String), sa.column("card_number", sa.String))
    connection = op.get_bind()
    ids = connection.execute(sa.select(patient.c.id)).scalars().all()
    taken: set[str] = set()
    for patient_id in ids:
        connection.execute(
            patient.update().where(patient.c.id == patient_id).values(card_number=_issued_card_number(taken))
        )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_patient_card_number"), ["card_number"])
        batch_op.create_index(batch_op.f("ix_patient_phone"), ["phone"], unique=False)
        batch_op.create_index(
            "ix_patient_name", ["name"], unique=False, postgresql_ops={"name": "text_pattern_ops"}
        )


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_name")
        batch_op.drop_index(batch_op.f("ix_patient_phone"))
        batch_op.drop_constraint(batch_op.f("uq_patient_card_number"), type_="unique")
        batch_op.drop_column("insurance_scheme")
        batch_op.drop_column("card_number")
