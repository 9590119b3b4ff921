"""Alembic environment: runs on the connection `database.upgrade_to_head` hands over.

A new revision is written the same way, from a checkout, against an up-to-date scratch database:
`config = alembic_config()`, put an open connection in `config.attributes["connection"]`, then
`alembic.command.revision(config, "message", autogenerate=True)`.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from invoiced_keap.state.models import Base, UTCDateTime


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Migrations spell `UTCDateTime` as its plain column type so they never import the models."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations(context.config.attributes["connection"])
