"""What customers owe: `receivables.tag`, the name of the tag the sync put on a customer's Keap record.

A renamed tag (the `[receivables] tag` setting changed) must come off the records the sync tagged under the old
name; `tagged` said only that a tag was put on. Records tagged before this revision get the tag configured then,
as the settings watermark (`receivables.settings`, JSON with the tag's name) recorded it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None

SETTINGS = "receivables.settings"

watermarks = sa.table("watermarks", sa.column("stream", sa.String), sa.column("value", sa.Text))
receivables = sa.table("receivables", sa.column("tagged", sa.Boolean), sa.column("tag", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("receivables") as batch:
        batch.add_column(sa.Column("tag", sa.String(length=255), nullable=True))
    settings = op.get_bind().execute(sa.select(watermarks.c.value).where(watermarks.c.stream == SETTINGS)).scalar()
    try:
        name = json.loads(settings).get("tag") if settings else None
    except (ValueError, AttributeError):
        name = None
    if name:
        op.execute(receivables.update().where(receivables.c.tagged.is_(True)).values(tag=name))


def downgrade() -> None:
    with op.batch_alter_table("receivables") as batch:
        batch.drop_column("tag")
