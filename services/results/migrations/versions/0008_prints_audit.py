"""report prints (自助打印), the client kind and source address of each audited look, and an
append-only result-access audit (a trigger refuses UPDATE and DELETE)

Revision ID: 0008_prints_audit
Revises: 0007_report_lifecycle
Create Date: 2026-12-01 17:00:00.000000

The trigger lets one kind of connection delete: the test wipe (kit.testing.wipe), which says so
explicitly - on PostgreSQL with `SET LOCAL patientflow.wipe = 'on'` in its own transaction, on SQLite
by registering `patientflow_wipe()` to answer 1 on its own connection (every service connection
registers it answering 0, kit.database). Rows are never updated, wipe or not.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kit.migrations import (
    create_append_only_function,
    drop_append_only_function,
    make_append_only,
    undo_append_only,
)

revision: str = "0008_prints_audit"
down_revision: str | None = "0007_report_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "result_access is append-only: audit rows are never updated or deleted"
FUNCTION, ROW_TRIGGER = "result_access_append_only", "result_access_append_only"


def upgrade() -> None:
    with op.batch_alter_table("result_access", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("source_address", sa.String(length=255), nullable=True))
    op.create_table(
        "report_print",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("report_version", sa.Integer(), nullable=False),
        sa.Column("copy_number", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("client_kind", sa.String(length=16), nullable=True),
        sa.Column("printed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["report.id"], name=op.f("fk_report_print_report_id_report")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_print")),
        sa.UniqueConstraint(
            "report_id", "report_version", "copy_number", name=op.f("uq_report_print_report_id")
        ),
    )
    with op.batch_alter_table("report_print", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_print_report_id"), ["report_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_report_print_visit_id"), ["visit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_report_print_patient_id"), ["patient_id"], unique=False)
    create_append_only_function(FUNCTION, APPEND_ONLY_MESSAGE)
    make_append_only("result_access", function=FUNCTION, message=APPEND_ONLY_MESSAGE, row_trigger=ROW_TRIGGER)


def downgrade() -> None:
    undo_append_only("result_access", row_trigger=ROW_TRIGGER)
    drop_append_only_function(FUNCTION)
    with op.batch_alter_table("report_print", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_print_patient_id"))
        batch_op.drop_index(batch_op.f("ix_report_print_visit_id"))
        batch_op.drop_index(batch_op.f("ix_report_print_report_id"))
    op.drop_table("report_print")
    with op.batch_alter_table("result_access", schema=None) as batch_op:
        batch_op.drop_column("source_address")
        batch_op.drop_column("client_kind")
