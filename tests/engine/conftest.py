"""A world for engine tests: both emulators on one manual clock, served over real HTTP, a state store,
connectors with fast retries and no client-side pacing, and a `Syncer` over them.

The emulators' rate limits are lifted: these tests are about what is written, not about pacing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


import httpx
import pytest

from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store
from tests.support import API_KEY, ManualClock

FAST_RETRIES = RetryPolicy(attempts=4, timeout=20.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01, max_wait=1.0)
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
ONE_OF_EACH = {
    "customers": [{"name": "Acme", "type": "company", "email": "ar@acme.example"},
                  {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}],
    "items": [{"id": "widget", "name": "Widget", "description": "Blue", "unit_cost": 5, "currency": "usd"}],
}
"""An Invoiced seed with one record of each flow: a company (customer 1), a person (customer 2) and an item."""


@dataclass
class World:
    clock: ManualClock
    invoiced: InvoicedEmulator
    keap: KeapEmulator
    invoiced_server: BackgroundServer
    keap_server: BackgroundServer
    store: Store

    @property
    def keap_url(self) -> str:
        return f"{self.keap_server.url}/crm/rest"

    async def sync(self, options: SyncOptions | None = None, flows: list[str] | None = None, **kwargs: Any) -> RunReport:
        """One pass with fresh connectors, then the clock moves on (Invoiced times have 1 s resolution)."""
        async with InvoicedConnector(API_KEY, self.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
                KeapConnector(ApiKey(API_KEY), self.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
            report = await Syncer(self.store, invoiced, keap, options).sync(flows, **kwargs)
        self.clock.advance(10)
        return report

    async def syncer_call(self, method: str, options: SyncOptions | None = None, **kwargs: Any) -> RunReport:
        async with InvoicedConnector(API_KEY, self.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
                KeapConnector(ApiKey(API_KEY), self.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
            report = await getattr(Syncer(self.store, invoiced, keap, options), method)(**kwargs)
        self.clock.advance(10)
        return report

    def reset_stats(self) -> None:
        for server in (self.invoiced_server, self.keap_server):
            httpx.post(f"{server.url}/_emulator/faults", json={}).raise_for_status()
        self.invoiced.requests.clear()
        self.keap.requests.clear()

    def writes(self) -> Counter[str]:
        """API writes both emulators received since the last `reset_stats`."""
        requests = Counter({**self.invoiced.requests, **self.keap.requests})
        return Counter({key: n for key, n in requests.items() if key.split()[0] in WRITE_METHODS})

    def keap_records(self, collection: str) -> list[dict[str, Any]]:
        return list(self.keap.store.records(collection))

    def keap_record(self, collection: str, record_id: str) -> dict[str, Any]:
        return RESOURCES[collection].get(self.keap.store, record_id)

    def keap_edit(self, collection: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """An edit made by a Keap user (the emulator's own update, timestamped by the shared clock)."""
        return RESOURCES[collection].update(self.keap.store, record_id, changes, None)

    def link_of(self, flow: str, invoiced_id: int | str) -> str:
        return self.store.active_link_ids(flow)[str(invoiced_id)]


@pytest.fixture
def world_clock() -> ManualClock:
    return ManualClock(1_748_999_160.0)


@pytest.fixture
def store(state_url: str) -> Iterator[Store]:
    """The state store on each database of `state_url` (tests/conftest.py)."""
    with Store(state_url) as store:
        store.migrate()
        yield store


@pytest.fixture
def world(world_clock: ManualClock, store: Store) -> Iterator[World]:
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    invoiced.faults.rate_limit = None
    keap.faults.rate_limit = None
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        yield World(world_clock, invoiced, keap, invoiced_server, keap_server, store)
