"""catalogue and rules as data: catalogue versions and their price periods, charging-rule versions and
their rules, and on each charge the entry it was priced from and, for a reversal line, what it reverses

Revision ID: 0006_catalogue_rules
Revises: 0005_stays
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_catalogue_rules"
down_revision: str | None = "0005_stays"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalogue_version",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("loaded_by", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_version")),
    )
    op.create_table(
        "catalogue_entry",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("national_code", sa.String(length=50), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("insurance_class", sa.String(length=1), nullable=False),
        sa.Column("pricing", sa.String(length=16), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("base_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("concession_bp", sa.Integer(), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["catalogue_version.id"],
            name=op.f("fk_catalogue_entry_version_id_catalogue_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_entry")),
    )
    with op.batch_alter_table("catalogue_entry", schema=None) as batch_op:
        batch_op.create_index("ix_catalogue_entry_version_id_code", ["version_id", "code"], unique=False)

    op.create_table(
        "charge_rule_version",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("loaded_by", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rule_count", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_rule_version")),
    )
    op.create_table(
        "charge_rule",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("item_code", sa.String(length=32), nullable=False),
        sa.Column("other_item_code", sa.String(length=32), nullable=True),
        sa.Column("max_quantity", sa.Integer(), nullable=True),
        sa.Column("visit_kinds", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["charge_rule_version.id"],
            name=op.f("fk_charge_rule_version_id_charge_rule_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_rule")),
    )
    with op.batch_alter_table("charge_rule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_charge_rule_version_id"), ["version_id"], unique=False)

    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price_entry_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("reversal_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("reversal_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("operator", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_charge_price_entry_id_catalogue_entry"),
            "catalogue_entry",
            ["price_entry_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_charge_reversal_of_charge"), "charge", ["reversal_of"], ["id"]
        )
        batch_op.create_unique_constraint("uq_charge_reversal_of", ["reversal_of"])
        batch_op.create_index("ix_charge_visit_id_item_code", ["visit_id", "item_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.drop_index("ix_charge_visit_id_item_code")
        batch_op.drop_constraint("uq_charge_reversal_of", type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_charge_reversal_of_charge"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_charge_price_entry_id_catalogue_entry"), type_="foreignkey")
        batch_op.drop_column("operator")
        batch_op.drop_column("reversal_reason")
        batch_op.drop_column("reversal_of")
        batch_op.drop_column("price_entry_id")
    with op.batch_alter_table("charge_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_charge_rule_version_id"))
    op.drop_table("charge_rule")
    op.drop_table("charge_rule_version")
    with op.batch_alter_table("catalogue_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_catalogue_entry_version_id_code")
    op.drop_table("catalogue_entry")
    op.drop_table("catalogue_version")
