"""Watermarks named by flow: `<flow>.invoiced`, `<flow>.removals`, `<flow>.keap`.

The old names were per stream (`invoiced.customers.<flow>`, `invoiced.events.<flow>`, `invoiced.items`,
`keap.<object>`), so two flows on one Keap object would have shared one mark. Values are kept.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

RENAMES = {
    "invoiced.customers.companies": "companies.invoiced",
    "invoiced.customers.contacts": "contacts.invoiced",
    "invoiced.events.companies": "companies.removals",
    "invoiced.events.contacts": "contacts.removals",
    "invoiced.items": "products.invoiced",
    "keap.companies": "companies.keap",
    "keap.contacts": "contacts.keap",
    "keap.products": "products.keap",
}

watermarks = sa.table("watermarks", sa.column("stream", sa.String))


def _rename(names: dict[str, str]) -> None:
    for old, new in names.items():
        op.execute(watermarks.update().where(watermarks.c.stream == old).values(stream=new))


def upgrade() -> None:
    _rename(RENAMES)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMES.items()})
