"""Initial schema: every state table (see `invoiced_keap.state.models`).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_LINK = sa.text("status = 'active'")
OPEN_FAILURE = sa.text("resolved_at IS NULL")
OPEN_REVIEW = sa.text("resolution IS NULL")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        timestamp("started_at"),
        timestamp("finished_at", nullable=True),
        sa.Column("flows", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("invoiced_id", sa.String(length=64), nullable=False),
        sa.Column("keap_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_reason", sa.Text(), nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    for side in ("invoiced", "keap"):
        op.create_index(
            f"uq_links_active_{side}",
            "links",
            ["flow", f"{side}_id"],
            unique=True,
            sqlite_where=ACTIVE_LINK,
            postgresql_where=ACTIVE_LINK,
        )
    op.create_table(
        "shadows",
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("field_values", sa.JSON(), nullable=False),
        sa.Column("source_updated", sa.JSON(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        timestamp("written_at"),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_shadows_link_id_links"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("link_id", "side", name=op.f("pk_shadows")),
    )
    op.create_table(
        "watermarks",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_watermarks")),
    )
    op.create_table(
        "intents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("source_side", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("match_key", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intents")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_intents_idempotency_key")),
    )
    op.create_index(
        "uq_intents_source", "intents", ["flow", "source_side", "source_id"], unique=True
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("first_seen"),
        timestamp("last_seen"),
        timestamp("next_retry_at"),
        timestamp("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
    )
    op.create_index(op.f("ix_failures_next_retry_at"), "failures", ["next_retry_at"])
    op.create_index(
        "uq_failures_open",
        "failures",
        ["flow", "side", "record_id", "operation"],
        unique=True,
        sqlite_where=OPEN_FAILURE,
        postgresql_where=OPEN_FAILURE,
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("invoiced_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_ids", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        timestamp("created_at"),
        sa.Column("resolution", sa.Text(), nullable=True),
        timestamp("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
    )
    op.create_index(
        "uq_review_items_open",
        "review_items",
        ["flow", "invoiced_id"],
        unique=True,
        sqlite_where=OPEN_REVIEW,
        postgresql_where=OPEN_REVIEW,
    )
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("field_group", sa.String(length=64), nullable=False),
        sa.Column("invoiced_value", sa.JSON(), nullable=True),
        sa.Column("keap_value", sa.JSON(), nullable=True),
        sa.Column("winner", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(["link_id"], ["links.id"], name=op.f("fk_conflicts_link_id_links")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_conflicts_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
    )
    op.create_index(op.f("ix_conflicts_link_id"), "conflicts", ["link_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_audit_log_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_record_id"), "audit_log", ["record_id"])
    op.create_index(op.f("ix_audit_log_run_id"), "audit_log", ["run_id"])
    op.create_table(
        "flow_locks",
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        timestamp("acquired_at"),
        timestamp("expires_at"),
        sa.PrimaryKeyConstraint("flow", name=op.f("pk_flow_locks")),
    )


def downgrade() -> None:
    for table in (
        "flow_locks",
        "audit_log",
        "conflicts",
        "review_items",
        "failures",
        "intents",
        "watermarks",
        "shadows",
        "links",
        "runs",
    ):
        op.drop_table(table)
