"""charge department: each line names its ordering department (`charge.department`, 开单科室), and the
account the visit's (`visit_account.department`); bed and nursing days already posted take their
ward's department from `inpatient_day`

Revision ID: 0011_charge_department
Revises: 0010_tenders
Create Date: 2026-12-03 14:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_charge_department"
down_revision: str | None = "0010_tenders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("department", sa.String(length=32), nullable=True))
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("department", sa.String(length=32), nullable=True))
    # The days posted before: the ward department their bed-day row recorded (the others stay unknown).
    op.execute(
        "UPDATE charge SET department = (SELECT inpatient_day.department FROM inpatient_day"
        " WHERE inpatient_day.charge_id = charge.id)"
        " WHERE charge.id IN (SELECT inpatient_day.charge_id FROM inpatient_day)"
    )
    op.execute(  # and their reversal lines (冲销) the department of the line they cancel
        "UPDATE charge SET department = (SELECT cancelled.department FROM charge AS cancelled"
        " WHERE cancelled.id = charge.reversal_of) WHERE charge.reversal_of IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.drop_column("department")
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.drop_column("department")
