"""A `store` on SQLite (a temporary file) and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from invoiced_keap.state import Store


@dataclass
class ManualClock:
    """A clock the test moves, so backoff and lock expiry are checked without sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2025, 1, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(state_url: str, clock: ManualClock) -> Iterator[Store]:
    with Store(state_url, clock=clock) as store:
        store.migrate()
        yield store
