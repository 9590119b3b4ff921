"""Flow locks: one live worker per flow, freed the moment the holder's process ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from invoiced_keap.state import FlowLockHeld, FlowLockLost, Store
from invoiced_keap.state.locks import advisory_key
from tests.state.conftest import ManualClock

HOLDER = """
import sys
from invoiced_keap.state import Store
with Store(sys.argv[1]) as store, store.flow_lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def second_store(store: Store, state_url: str, clock: ManualClock) -> Iterator[Store]:
    """Another worker on the same database (its own engine and connections)."""
    with Store(state_url, clock=clock) as other:
        yield other


@pytest.fixture
def holder(store: Store, state_url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the companies flow until its stdin closes."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, state_url, "companies"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()


def refusal(store: Store, flow: str) -> FlowLockHeld:
    with pytest.raises(FlowLockHeld) as refused, store.flow_lock(flow):
        pytest.fail("two workers held the same flow")
    return refused.value


def test_a_held_flow_is_refused_to_another_store_until_released(
    store: Store, second_store: Store, clock: ManualClock
) -> None:
    with store.flow_lock("companies") as lease:
        assert (lease.flow, lease.since) == ("companies", clock.now)
        refused = refusal(second_store, "companies")
        with second_store.flow_lock("products"):
            pass  # other flows are free
    assert (refused.flow, refused.holder, refused.since) == ("companies", lease.holder, clock.now)
    assert lease.holder == f"{socket.gethostname()} pid {os.getpid()}"
    assert str(refused) == (
        f"flow 'companies' is locked by {lease.holder} since 2025-01-01T12:00:00+00:00: "
        "another sync is working it; it is released when that process ends"
    )
    with second_store.flow_lock("companies"):
        assert refusal(store, "companies").holder == lease.holder


def test_the_lock_is_released_when_the_holder_fails(store: Store, second_store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.flow_lock("contacts"):
        raise RuntimeError("boom")
    with second_store.flow_lock("contacts"):
        pass


def test_a_live_process_keeps_the_flow_until_it_lets_go(store: Store, holder: subprocess.Popen[str]) -> None:
    refused = refusal(store, "companies")
    assert refused.holder == f"{socket.gethostname()} pid {holder.pid}" and refused.since is not None
    with store.flow_lock("contacts"):
        pass  # its other flows are free
    assert holder.communicate(timeout=10) == ("", None) and holder.returncode == 0
    with store.flow_lock("companies"):
        pass


def test_a_killed_holders_flow_is_free_at_once(store: Store, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The kernel frees a file lock with its process; PostgreSQL ends the session when the socket
    # closes, a moment later.
    deadline = time.monotonic() + (5 if store.engine.dialect.name == "postgresql" else 0)
    while True:
        try:
            with store.flow_lock("companies") as lease:  # the dead holder's row is no obstacle
                assert lease.holder.endswith(f"pid {os.getpid()}")
            break
        except FlowLockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_an_in_memory_database_locks_within_its_process() -> None:
    with Store("sqlite://") as store:
        store.migrate()
        with store.flow_lock("companies"):
            assert refusal(store, "companies").holder.endswith(f"pid {os.getpid()}")
        with store.flow_lock("companies"):
            pass


def test_a_sqlite_lock_file_removed_under_its_holder_is_a_lost_lock(store: Store, tmp_path: Path) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("lock files are SQLite's")
    with store.flow_lock("companies") as lease:
        lease.check()
        (tmp_path / "state.db.companies.lock").unlink()
        with pytest.raises(FlowLockLost, match="lock file"):
            lease.check()


def test_postgresql_lock_ends_with_the_holders_session(store: Store, second_store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    with store.flow_lock("companies") as lease:
        with second_store.engine.begin() as connection:  # as if the holder's process died (waits for it)
            schema = connection.scalar(text("SELECT current_schema()"))
            key = advisory_key(schema, "companies") & 0xFFFF_FFFF_FFFF_FFFF
            terminated = connection.scalars(
                text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND classid = :high AND objid = :low AND objsubid = 1"
                ),
                {"high": key >> 32, "low": key & 0xFFFF_FFFF},
            ).all()
        assert terminated == [True]
        with second_store.flow_lock("companies"), pytest.raises(FlowLockLost):
            lease.check()
