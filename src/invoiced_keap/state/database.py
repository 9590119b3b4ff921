"""Engine set-up and schema migration: the only place that knows SQLite from PostgreSQL.

SQLite gets WAL (readers never wait for the writer), foreign keys and a busy timeout, and every
transaction starts with `BEGIN IMMEDIATE` so two writers queue instead of failing mid-way on a
read-to-write upgrade. PostgreSQL goes through psycopg 3 whatever the URL's driver says.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str | URL) -> URL:
    """`postgres://` and `postgresql://` URLs are rewritten to the psycopg 3 driver."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver != "psycopg":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_state_engine(url: str | URL) -> Engine:
    parsed = normalise_url(url)
    serialise = partial(json.dumps, ensure_ascii=False)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, json_serializer=serialise)
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(parsed, json_serializer=serialise, pool_pre_ping=True)


def missing_sqlite_file(url: str | URL) -> bool:
    """A SQLite database file that does not exist yet (opening it would create it)."""
    parsed = normalise_url(url)
    database = parsed.database
    return (parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and parsed.query.get("mode") != "memory" and not Path(database).exists())


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN (see `_begin_immediate`).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config() -> Config:
    """Configured in code so an installed package migrates without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade_to_head(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def fresh_schema(server_url: str | URL, prefix: str = "scratch") -> Iterator[str]:
    """A new, empty schema on the PostgreSQL server at `server_url`, as a state URL that uses it; dropped with
    everything in it on exit (tests and benchmarks)."""
    server, schema = normalise_url(server_url), f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
