"""What customers owe, written to Keap: `keap_definitions` (the custom fields and tag the sync made or found, with
Keap's ids) and `receivables` (per customer, the figures as last read and what was last written to its Keap record).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "keap_definitions",
        sa.Column("keap_object", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("keap_id", sa.String(length=64), nullable=False),
        sa.Column("field_type", sa.String(length=32), nullable=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("keap_object", "name", name=op.f("pk_keap_definitions")),
    )
    op.create_table(
        "receivables",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("open_invoices", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("written_flow", sa.String(length=32), nullable=True),
        sa.Column("written_keap_id", sa.String(length=64), nullable=True),
        sa.Column("written", sa.JSON(), nullable=True),
        sa.Column("tagged", sa.Boolean(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_receivables")),
    )
    op.create_index(op.f("ix_receivables_open_invoices_computed_at"), "receivables", ["open_invoices", "computed_at"])
    op.create_index(op.f("ix_receivables_pending"), "receivables", ["pending"])


def downgrade() -> None:
    op.drop_table("receivables")
    op.drop_table("keap_definitions")
