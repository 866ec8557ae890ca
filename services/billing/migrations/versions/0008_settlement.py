"""settlement with insurance: the visit's insurance scheme on its account, invoices and their lines;
invoices, invoice lines and receipts refuse UPDATE and DELETE in the database itself (triggers; only
the test wipe, which declares itself as kit.database describes, may delete)

Revision ID: 0008_settlement
Revises: 0007_deposits_days
Create Date: 2026-12-01 18:10:00.000000
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

revision: str = "0008_settlement"
down_revision: str | None = "0007_deposits_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMMUTABLE_TABLES = ("invoice", "invoice_line", "receipt")
FUNCTION = "billing_immutable_row"


def upgrade() -> None:
    op.create_table(
        "invoice",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("insurance_scheme", sa.String(length=32), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("insurer_fen", sa.BigInteger(), nullable=False),
        sa.Column("patient_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_by", sa.JSON(), nullable=False),
        sa.Column("supersedes", sa.String(length=36), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["supersedes"], ["invoice.id"], name=op.f("fk_invoice_supersedes_invoice")),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit_account.visit_id"], name=op.f("fk_invoice_visit_id_visit_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice")),
        sa.UniqueConstraint("number", name=op.f("uq_invoice_number")),
        sa.UniqueConstraint("supersedes", name=op.f("uq_invoice_supersedes")),
    )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoice_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "invoice_line",
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("charge_id", sa.String(length=36), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("item_name", sa.String(length=100), nullable=False),
        sa.Column("insurance_class", sa.String(length=1), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["charge_id"], ["charge.id"], name=op.f("fk_invoice_line_charge_id_charge")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_invoice_line_invoice_id_invoice")
        ),
        sa.PrimaryKeyConstraint("invoice_id", "line", name=op.f("pk_invoice_line")),
    )
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("insurance_scheme", sa.String(length=32), nullable=True))
    create_append_only_function(FUNCTION, "% rows are immutable: write a new one instead", "TG_TABLE_NAME")
    for table in IMMUTABLE_TABLES:
        message = f"{table} rows are immutable: write a new one instead"
        make_append_only(table, function=FUNCTION, message=message, row_trigger=f"{table}_immutable")


def downgrade() -> None:
    for table in IMMUTABLE_TABLES:
        undo_append_only(table, row_trigger=f"{table}_immutable")
    drop_append_only_function(FUNCTION)
    with op.batch_alter_table("visit_account", schema=None) as batch_op:
        batch_op.drop_column("insurance_scheme")
    op.drop_table("invoice_line")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_visit_id"))
    op.drop_table("invoice")
