"""Flow lock rows lose `expires_at`: the locks end with their holders, the rows only name them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flow_locks") as batch:
        batch.drop_column("expires_at")


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM flow_locks"))  # no expiry to give the rows; the old code reads no row as free
    with op.batch_alter_table("flow_locks") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False))
