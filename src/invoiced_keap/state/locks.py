"""Single-worker locks per flow, so two processes never work the same flow at once.

PostgreSQL: a session advisory lock on a connection held for the lease; the server frees it
if the process dies. SQLite: a row in `flow_locks` with an owner and an expiry, because SQLite
has no lock that outlives a transaction; a crashed owner's row is taken over once it expires,
and a long run keeps it with `FlowLease.renew()`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from invoiced_keap.state.models import FlowLock


class FlowLockHeld(RuntimeError):
    """Another worker holds the flow; this one must not work it now."""

    def __init__(self, flow: str, holder: str) -> None:
        super().__init__(f"flow {flow!r} is locked by {holder}; another sync is working it")
        self.flow = flow
        self.holder = holder


class FlowLockLost(RuntimeError):
    """The lease expired and another worker took the flow over."""


@dataclass
class FlowLease:
    """What the holder of a flow lock gets: `renew()` pushes a lock row's expiry forward."""

    flow: str
    owner: str
    renew: Callable[[], None]


def advisory_key(schema: str, flow: str) -> int:
    """A stable signed 64-bit key per schema and flow: advisory locks are database-wide, so the
    key is namespaced by application and schema (one state store per schema)."""
    name = f"invoiced-keap/{schema}/flow/{flow}"
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def new_owner() -> str:
    return f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"


@contextmanager
def advisory_lock(engine: Engine, flow: str) -> Iterator[FlowLease]:
    # Autocommit: the lock belongs to the connection, so no transaction sits idle while it is held.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        key = advisory_key(connection.scalar(text("SELECT current_schema()")) or "", flow)
        if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            raise FlowLockHeld(flow, "another PostgreSQL session (advisory lock)")

        def renew() -> None:
            """The lock lives as long as its session: check the session is still there."""
            try:
                connection.scalar(text("SELECT 1"))
            except DBAPIError as error:
                raise FlowLockLost(f"lock on flow {flow!r} ended with its session") from error

        try:
            yield FlowLease(flow=flow, owner=new_owner(), renew=renew)
        finally:
            # A session that is gone took its lock with it: nothing left to unlock.
            if not connection.invalidated:
                with suppress(DBAPIError):
                    connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def row_lock(
    engine: Engine, flow: str, ttl: timedelta, clock: Callable[[], datetime]
) -> Iterator[FlowLease]:
    owner = new_owner()
    with Session(engine) as session, session.begin():
        now = clock()
        session.execute(delete(FlowLock).where(FlowLock.flow == flow, FlowLock.expires_at <= now))
        holder = session.scalar(select(FlowLock.owner).where(FlowLock.flow == flow))
        if holder is not None:
            raise FlowLockHeld(flow, holder)
        session.add(FlowLock(flow=flow, owner=owner, acquired_at=now, expires_at=now + ttl))

    def renew() -> None:
        with Session(engine) as session, session.begin():
            renewed = session.execute(
                update(FlowLock)
                .where(FlowLock.flow == flow, FlowLock.owner == owner)
                .values(expires_at=clock() + ttl)
            )
            if renewed.rowcount == 0:  # type: ignore[attr-defined]
                raise FlowLockLost(f"lock on flow {flow!r} expired and was taken over")

    try:
        yield FlowLease(flow=flow, owner=owner, renew=renew)
    finally:
        with Session(engine) as session, session.begin():
            session.execute(delete(FlowLock).where(FlowLock.flow == flow, FlowLock.owner == owner))
