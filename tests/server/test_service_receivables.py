"""`invoiced-keap run` (the service) and what customers owe: aging moves with time, so the service's own polls read
again, once a day, the customers with open invoices, and only them, and write only what changed.

Time is one manual clock shared by both emulators, the state and the service (its poll schedule), moved by hand: the
service runs at its production defaults (a poll every 60 s of that clock), each poll is the service's own, the day
passes in one step, nothing sleeps a day.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from invoiced_keap.config import Settings
from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.service import Service
from invoiced_keap.state import Store
from tests.support import API_KEY, ManualClock, eventually

DAY = 86_400
FAST_RETRIES = RetryPolicy(attempts=3, timeout=20.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)



@dataclass
class Served:
    service: Service
    clock: ManualClock
    invoiced: InvoicedEmulator
    keap: KeapEmulator
    store: Store
    polls: list[RunReport] = field(default_factory=list)

    def values(self, collection: str, customer: int) -> dict[str, Any]:
        keap_id = self.store.active_link_ids(collection).get(str(customer))
        return self.keap.custom_values(collection, keap_id) if keap_id else {}

    async def polls_after(self, count: int) -> None:
        """Let `count` more polls of the service's own loop run: the clock moves one poll interval before each."""
        for _ in range(count):
            target = len(self.polls) + 1
            self.clock.advance(self.service.settings.schedule.poll_interval)
            await eventually(lambda: len(self.polls) >= target)

    async def polls_until(self, condition: Callable[[], bool], most: int = 5) -> None:
        """Polls, one interval apart, until `condition` holds (at most `most` of them)."""
        for _ in range(most):
            if condition():
                return
            await self.polls_after(1)
        assert condition(), f"not after {most} polls"

    def reset_counts(self) -> None:
        self.invoiced.requests.clear()
        self.keap.requests.clear()

    def invoiced_reads(self) -> dict[str, int]:
        return {key: n for key, n in self.invoiced.requests.items() if "/invoices" in key or "/payments" in key
                or "/balance" in key}

    def keap_writes(self) -> dict[str, int]:
        return {key: n for key, n in self.keap.requests.items() if key.split()[0] in ("POST", "PATCH", "PUT", "DELETE")}


@pytest.fixture
async def served(state_url: str) -> AsyncIterator[Served]:
    clock = ManualClock(1_748_999_160.0)
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=clock)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=clock)
    invoiced.faults.rate_limit = None
    keap.faults.rate_limit = None  # the manual clock never moves Keap's rate windows on
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, Store(
        state_url, clock=lambda: datetime.fromtimestamp(clock(), UTC)
    ) as store:
        store.migrate()
        async with InvoicedConnector(API_KEY, invoiced_server.url, retry=FAST_RETRIES) as invoiced_api, KeapConnector(
            ApiKey(API_KEY), f"{keap_server.url}/crm/rest", limits=RateLimits(), retry=FAST_RETRIES
        ) as keap_api:
            settings = Settings(server_port=0, keap_hooks=False)  # production defaults: a poll every 60 s
            service = Service(Syncer(store, invoiced_api, keap_api), build_flows(), settings)
            service.clock = clock
            world = Served(service, clock, invoiced, keap, store)
            poll = service.poll

            async def counted() -> RunReport:
                report = await poll()
                world.polls.append(report)
                return report

            service.poll = counted  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            try:
                yield world
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)


def invoice(world: Served, customer: int, amount: float, *, due_in_days: float) -> None:
    now = int(world.clock())
    world.invoiced.create_invoice({"customer": customer, "date": now - 30 * DAY, "due_date": int(now + due_in_days * DAY),
                                   "items": [{"name": "Consulting", "quantity": 1, "unit_cost": amount}]})


async def test_the_service_recomputes_aging_once_a_day_for_customers_with_open_invoices_only(served: Served) -> None:
    world = served
    acme = world.invoiced.create_customer({"name": "Acme Ltd", "type": "company"})["id"]
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})["id"]  # nothing open
    jane = world.invoiced.create_customer({"name": "Jane Cooper", "type": "person", "email": "jane@example.com"})["id"]
    invoice(world, acme, 120, due_in_days=-10)  # ten days past due
    invoice(world, jane, 40, due_in_days=5)  # open, not due yet
    await world.polls_until(lambda: world.values("companies", acme).get("Invoiced days past due") == 10
                            and world.values("contacts", jane).get("Invoiced open invoices") == 1)
    assert world.store.active_link_ids("companies").get(str(globex))
    await world.polls_after(2)

    world.reset_counts()
    await world.polls_after(3)  # the same day: nothing is read again
    assert world.invoiced_reads() == {} and world.keap_writes() == {}

    world.clock.advance(DAY)
    await world.polls_until(lambda: world.values("companies", acme).get("Invoiced days past due") == 11)
    await world.polls_after(3)  # and the polls after it, the same day again

    assert world.invoiced_reads() == {"GET /invoices": 2}  # Acme and Jane, once each; Globex has nothing open
    assert world.keap_writes() == {"PATCH /crm/rest/v2/companies/{company_id}": 1}  # Jane's figures did not change
    assert world.values("contacts", jane) == {"Invoiced balance": 40, "Invoiced past due": 0, "Invoiced days past due": 0,
                                              "Invoiced open invoices": 1}
    assert world.values("companies", globex) == {}
    assert all(report.exit_code == 0 for report in world.polls)
