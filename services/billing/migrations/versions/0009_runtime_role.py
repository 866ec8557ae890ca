"""the billing service's own role on PostgreSQL (kit.database): everything it needs on its tables, but
on invoices, their lines and receipts only SELECT and INSERT (a correction is a new row: immutable.py),
so no UPDATE, DELETE or TRUNCATE reaches them through the service's own connections, wipe flag or not.
Nothing on SQLite, which has no roles (the 0008 triggers stay).

Revision ID: 0009_runtime_role
Revises: 0008_settlement
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

from kit.migrations import grant_runtime_role, revoke_runtime_role

revision: str = "0009_runtime_role"
down_revision: str | None = "0008_settlement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY: dict[str, tuple[str, ...]] = {"invoice": (), "invoice_line": (), "receipt": ()}


def upgrade() -> None:
    grant_runtime_role("billing", append_only=APPEND_ONLY)


def downgrade() -> None:
    revoke_runtime_role("billing")
