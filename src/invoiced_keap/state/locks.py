"""One worker per flow, with a lock that ends when its holder does.

SQLite: `flock` on `<database>.<flow>.lock` beside the database, which the kernel frees when
the holding process dies (an in-memory database gets an in-process lock).
PostgreSQL: a session advisory lock, which the server frees when the holder's session ends.
The `flow_locks` row only says who holds a flow and since when; a dead holder's row blocks nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from invoiced_keap.state.models import FlowLock

Check = Callable[[], None]


class FlowLockHeld(RuntimeError):
    """Another live worker holds the flow; this one must not work it now."""

    def __init__(self, flow: str, holder: str, since: datetime | None) -> None:
        held = f"{holder} since {since.isoformat(timespec='seconds')}" if since else holder
        super().__init__(
            f"flow {flow!r} is locked by {held}: another sync is working it; "
            "it is released when that process ends"
        )
        self.flow = flow
        self.holder = holder
        self.since = since


class FlowLockLost(RuntimeError):
    """The lock ended while its holder still worked (its session is gone, or its lock file)."""


@dataclass(frozen=True)
class FlowLease:
    """What the holder of a flow gets: `check()` raises `FlowLockLost` if the lock ended under it."""

    flow: str
    holder: str
    since: datetime
    check: Check


class FlowLocks:
    """The flow locks of one state database (see the module docstring)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock
        self._in_process: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, flow: str) -> Iterator[FlowLease]:
        """Hold `flow` until the block ends; raises `FlowLockHeld` at once if a live worker has it."""
        with ExitStack() as stack:
            try:
                check = stack.enter_context(self._lock(flow))
            except _Refused:
                raise self._held(flow) from None
            lease = FlowLease(flow, f"{socket.gethostname()} pid {os.getpid()}", self.clock(), check)
            with Session(self.engine) as session, session.begin():
                session.merge(FlowLock(flow=flow, owner=lease.holder, acquired_at=lease.since))
            try:
                yield lease
            finally:  # a note left behind blocks nothing: a failed delete must not hide the pass's own error
                with suppress(DBAPIError), Session(self.engine) as session, session.begin():
                    session.execute(
                        delete(FlowLock).where(
                            FlowLock.flow == flow,
                            FlowLock.owner == lease.holder,
                            FlowLock.acquired_at == lease.since,
                        )
                    )

    def _lock(self, flow: str) -> AbstractContextManager[Check]:
        url = self.engine.url
        if url.get_backend_name() == "postgresql":
            return advisory_lock(self.engine, flow)
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            return process_lock(self._in_process.setdefault(flow, threading.Lock()))
        return file_lock(Path(f"{url.database}.{flow}.lock"))

    def _held(self, flow: str) -> FlowLockHeld:
        with Session(self.engine) as session:
            row = session.scalar(select(FlowLock).where(FlowLock.flow == flow))
        if row is None:  # the holder has not written its row yet
            return FlowLockHeld(flow, "another process", None)
        return FlowLockHeld(flow, row.owner, row.acquired_at)


class _Refused(Exception):
    """The lock is taken."""


def advisory_key(schema: str, flow: str) -> int:
    """A stable signed 64-bit key per schema and flow: advisory locks are database-wide, so the
    key is namespaced by application and schema (one state store per schema)."""
    name = f"invoiced-keap/{schema}/flow/{flow}"
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(engine: Engine, flow: str) -> Iterator[Check]:
    # Autocommit: the lock belongs to the connection, so no transaction sits idle while it is held.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        key = advisory_key(connection.scalar(text("SELECT current_schema()")) or "", flow)
        if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            raise _Refused

        def check() -> None:
            try:
                connection.scalar(text("SELECT 1"))
            except DBAPIError as error:
                raise FlowLockLost(f"lock on flow {flow!r} ended with its session") from error

        try:
            yield check
        finally:
            # A session that is gone took its lock with it: nothing left to unlock.
            if not connection.invalidated:
                with suppress(DBAPIError):
                    connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def file_lock(path: Path) -> Iterator[Check]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _Refused from None
        held = os.fstat(descriptor)

        def check() -> None:
            """Removing the lock file would let a second worker lock a new one."""
            try:
                kept = os.path.samestat(held, path.stat())
            except FileNotFoundError:
                kept = False
            if not kept:
                raise FlowLockLost(f"lock file {path} was removed or replaced while held")

        yield check
    finally:
        os.close(descriptor)  # which releases the lock


@contextmanager
def process_lock(lock: threading.Lock) -> Iterator[Check]:
    if not lock.acquire(blocking=False):
        raise _Refused
    try:
        yield lambda: None  # nothing outside this process can take it
    finally:
        lock.release()
