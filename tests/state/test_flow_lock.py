from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from invoiced_keap.state import FlowLockHeld, FlowLockLost, Store
from invoiced_keap.state.locks import advisory_key
from tests.state.conftest import ManualClock


@pytest.fixture
def second_store(store: Store, state_url: str, clock: ManualClock) -> Iterator[Store]:
    """Another worker on the same database (its own engine and connections)."""
    with Store(state_url, clock=clock) as other:
        yield other


def assert_refused(store: Store, flow: str) -> None:
    with pytest.raises(FlowLockHeld, match=f"'{flow}' is locked"), store.flow_lock(flow):
        pytest.fail("two workers held the same flow")


def test_a_held_flow_is_refused_to_another_store_until_released(
    store: Store, second_store: Store
) -> None:
    with store.flow_lock("companies") as lease:
        assert lease.flow == "companies"
        assert_refused(second_store, "companies")
        with second_store.flow_lock("products"):
            pass  # other flows are free
    with second_store.flow_lock("companies"):
        assert_refused(store, "companies")


def test_the_lock_is_released_when_the_holder_fails(store: Store, second_store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.flow_lock("contacts"):
        raise RuntimeError("boom")
    with second_store.flow_lock("contacts"):
        pass


def test_sqlite_lock_row_expires_and_renew_keeps_it(
    store: Store, second_store: Store, clock: ManualClock
) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("only lock rows expire; PostgreSQL's advisory lock ends with its session")
    with store.flow_lock("companies") as lease:
        clock.advance(store.lock_ttl - timedelta(seconds=1))
        lease.renew()
        clock.advance(store.lock_ttl - timedelta(seconds=1))
        assert_refused(second_store, "companies")
        clock.advance(timedelta(seconds=2))  # the holder looks crashed: its row may be taken over
        with second_store.flow_lock("companies"), pytest.raises(FlowLockLost):
            lease.renew()


def test_postgresql_lock_ends_with_the_holders_session(store: Store, second_store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    with store.flow_lock("companies") as lease:
        with second_store.engine.begin() as connection:  # as if the holder's process died
            schema = connection.scalar(text("SELECT current_schema()"))
            key = advisory_key(schema, "companies") & 0xFFFF_FFFF_FFFF_FFFF
            terminated = connection.scalars(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND classid = :high AND objid = :low AND objsubid = 1"
                ),
                {"high": key >> 32, "low": key & 0xFFFF_FFFF},
            ).all()
        assert terminated == [True]
        with second_store.flow_lock("companies"), pytest.raises(FlowLockLost):
            lease.renew()
