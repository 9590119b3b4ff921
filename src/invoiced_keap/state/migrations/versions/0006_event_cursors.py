"""Event cursors: `<flow>.removals` becomes `<flow>.events`.

A pass now reads the account's events once, all types, for every flow (removals, a company's people, what a
customer owes); the cursor is the same kind of value (the id of the last event handled), so values are kept.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

RENAMES = {"companies.removals": "companies.events", "contacts.removals": "contacts.events"}

watermarks = sa.table("watermarks", sa.column("stream", sa.String))


def _rename(names: dict[str, str]) -> None:
    for old, new in names.items():
        op.execute(watermarks.update().where(watermarks.c.stream == old).values(stream=new))


def upgrade() -> None:
    _rename(RENAMES)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMES.items()})
