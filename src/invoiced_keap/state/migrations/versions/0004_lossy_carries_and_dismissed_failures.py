"""Lossy carries per link (`lossy_carries`); failures a person dismissed (`dismissed_at`, `dismissed_reason`)
and the source's update time a failure was recorded at (`source_updated`), which a dismissal holds to.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lossy_carries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("field_group", sa.String(length=64), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("source_value", sa.JSON(), nullable=True),
        sa.Column("sent_value", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["links.id"], name=op.f("fk_lossy_carries_link_id_links"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_lossy_carries_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lossy_carries")),
    )
    op.create_index(op.f("ix_lossy_carries_link_id"), "lossy_carries", ["link_id"])
    with op.batch_alter_table("failures") as batch:
        batch.add_column(sa.Column("source_updated", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("dismissed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("failures") as batch:
        batch.drop_column("dismissed_reason")
        batch.drop_column("dismissed_at")
        batch.drop_column("source_updated")
    op.drop_index(op.f("ix_lossy_carries_link_id"), table_name="lossy_carries")
    op.drop_table("lossy_carries")
