"""What customers owe: `receivables.opens_at`, when the customer's earliest open invoice dated ahead starts to count.

Invoiced sends no event when an invoice's date comes, so a customer whose only open invoice is dated ahead would get
its figures only with its next event. The daily recompute reads again the customers whose `opens_at` has passed.
Rows from before this revision have none: where the step ran before, `receivables.relist` asks its next pass to list
the account's open invoices once (beside the events), which gives every customer with an invoice dated ahead its date.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


CURSOR, RELIST = "receivables.events", "receivables.relist"

watermarks = sa.table("watermarks", sa.column("stream", sa.String), sa.column("value", sa.Text),
                      sa.column("updated_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    with op.batch_alter_table("receivables") as batch:
        batch.add_column(sa.Column("opens_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(batch.f("ix_receivables_opens_at"), ["opens_at"])
    ran = op.get_bind().execute(sa.select(watermarks.c.stream).where(watermarks.c.stream == CURSOR)).first()
    if ran:
        op.execute(watermarks.insert().values(stream=RELIST, value="0009", updated_at=sa.func.current_timestamp()))


def downgrade() -> None:
    op.execute(watermarks.delete().where(watermarks.c.stream == RELIST))
    with op.batch_alter_table("receivables") as batch:
        batch.drop_index(batch.f("ix_receivables_opens_at"))
        batch.drop_column("opens_at")
