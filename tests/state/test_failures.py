from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap.state import FailureBackoff, Store
from tests.state.conftest import ManualClock

MINUTE = timedelta(minutes=1)


@given(
    base_minutes=st.integers(1, 60),
    cap_hours=st.integers(1, 48),
    attempts=st.integers(1, 200),
)
def test_backoff_doubles_from_the_base_and_stops_at_the_cap(
    base_minutes: int, cap_hours: int, attempts: int
) -> None:
    policy = FailureBackoff(base=base_minutes * MINUTE, cap=timedelta(hours=cap_hours))
    assert policy.delay(1) == min(policy.base, policy.cap)
    assert policy.delay(attempts) <= policy.cap
    assert policy.delay(attempts + 1) in (min(2 * policy.delay(attempts), policy.cap), policy.cap)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        FailureBackoff().delay(0)


def test_a_repeated_failure_counts_attempts_and_backs_off(store: Store, clock: ManualClock) -> None:
    start = clock.now
    first = store.record_failure(
        "contacts",
        "invoiced",
        "101",
        "create",
        "email invalid",
        field="email_addresses",
        payload={"given_name": "Zoë", "email": "nope"},
    )
    assert (first.attempts, first.first_seen, first.next_retry_at) == (1, start, start + 5 * MINUTE)
    clock.advance(5 * MINUTE)
    second = store.record_failure("contacts", "invoiced", "101", "create", "email still invalid")
    assert second.id == first.id
    assert (second.attempts, second.message, second.field) == (2, "email still invalid", None)
    assert (second.first_seen, second.last_seen) == (start, clock.now)
    assert second.next_retry_at == clock.now + 10 * MINUTE
    [stored] = store.failures()
    assert stored.attempts == 2


def test_failures_are_due_only_after_their_backoff(store: Store, clock: ManualClock) -> None:
    store.record_failure(
        "contacts", "invoiced", "101", "create", "rejected", payload={"name": "Ærø"}
    )
    store.record_failure("products", "keap", "9", "update", "rejected")
    assert store.failures_due() == []
    clock.advance(5 * MINUTE)
    assert {failure.record_id for failure in store.failures_due()} == {"101", "9"}
    [due] = store.failures_due("contacts")
    assert due.payload == {"name": "Ærø"}


def test_retry_now_makes_open_failures_due(store: Store) -> None:
    store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    store.record_failure("products", "keap", "9", "update", "rejected")
    assert store.retry_failures_now("products") == 1
    assert [failure.record_id for failure in store.failures_due()] == ["9"]
    assert store.retry_failures_now() == 2
    assert len(store.failures_due()) == 2


def test_retry_one_failure_now_leaves_the_others_waiting(store: Store, clock: ManualClock) -> None:
    first = store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    store.record_failure("contacts", "invoiced", "102", "create", "rejected")
    assert store.retry_failure_now(first.id).record_id == "101"
    assert [failure.record_id for failure in store.failures_due()] == ["101"]
    store.resolve_failures("contacts", "invoiced", "101")
    with pytest.raises(LookupError):
        store.retry_failure_now(first.id)  # resolved: nothing to retry
    with pytest.raises(LookupError):
        store.retry_failure_now(9999)


def test_failures_of_some_records_are_filtered_in_the_query(store: Store) -> None:
    store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    store.record_failure("products", "keap", "9", "update", "rejected")
    store.record_failure("contacts", "invoiced", "102", "create", "rejected")
    store.resolve_failures("contacts", "invoiced", "102")
    assert [f.record_id for f in store.failures(record_ids=["9", "102", "nope"])] == ["9"]
    assert [f.record_id for f in store.failures(record_ids=["9", "102"], include_resolved=True)] == ["9", "102"]
    assert store.failures(record_ids=[]) == []


def test_resolving_closes_a_records_failures_and_a_new_one_starts_over(
    store: Store, clock: ManualClock
) -> None:
    store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    store.record_failure("contacts", "invoiced", "102", "create", "rejected")
    assert store.resolve_failures("contacts", "invoiced", "101") == 1
    assert store.resolve_failures("contacts", "invoiced", "101") == 0
    assert [failure.record_id for failure in store.failures()] == ["102"]
    [resolved] = [f for f in store.failures(include_resolved=True) if f.resolved_at is not None]
    assert (resolved.record_id, resolved.resolved_at) == ("101", clock.now)
    again = store.record_failure("contacts", "invoiced", "101", "create", "rejected")
    assert again.id != resolved.id and again.attempts == 1
