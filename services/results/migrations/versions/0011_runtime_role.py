"""the results service's own role on PostgreSQL (kit.database): everything it needs on its tables, but
on the result-access audit only SELECT and INSERT, and on report prints UPDATE of `patient_id` alone (a
patient merge re-points them); no DELETE or TRUNCATE there, so not even the wipe's flag gets a row out
through the service's own connections. Nothing on SQLite, which has no roles (the 0008 triggers stay).

Revision ID: 0011_runtime_role
Revises: 0010_recognition
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

from kit.migrations import grant_runtime_role, revoke_runtime_role

revision: str = "0011_runtime_role"
down_revision: str | None = "0010_recognition"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY: dict[str, tuple[str, ...]] = {"result_access": (), "report_print": ("patient_id",)}


def upgrade() -> None:
    grant_runtime_role("results", append_only=APPEND_ONLY)


def downgrade() -> None:
    revoke_runtime_role("results")
