"""Two workers on one state database (two `run`s, or `run` and a cron `sync`): only one works a flow at a time."""

from __future__ import annotations

import asyncio

import pytest

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
from invoiced_keap.state import Store
from tests.support import API_KEY

FAST_RETRIES = RetryPolicy(attempts=3, timeout=20.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)
COMPANIES = 6


async def one_worker(state_url: str, invoiced_url: str, keap_url: str) -> RunReport:
    """A worker of its own: its own store connection and connectors, as another process would have."""
    with Store(state_url) as store:
        async with InvoicedConnector(API_KEY, invoiced_url, retry=FAST_RETRIES) as invoiced, KeapConnector(
            ApiKey(API_KEY), keap_url, limits=RateLimits(), retry=FAST_RETRIES
        ) as keap:
            return await Syncer(store, invoiced, keap).sync(["companies"])


async def test_two_workers_never_sync_one_flow_at_once(state_url: str) -> None:
    with Store(state_url) as store:
        store.migrate()
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(COMPANIES)]})
    keap.faults.rate_limit = None
    keap.faults.latency_ms = 40  # each pass takes a while, so the two overlap
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        keap_url = f"{keap_server.url}/crm/rest"
        reports = await asyncio.gather(
            one_worker(state_url, invoiced_server.url, keap_url),
            one_worker(state_url, invoiced_server.url, keap_url),
        )
        locked = [report for report in reports if report.flows["companies"].error]
        worked = [report for report in reports if not report.flows["companies"].error]
        assert len(locked) == 1 and len(worked) == 1
        assert "locked" in (locked[0].flows["companies"].error or "") and locked[0].exit_code == 1
        assert not locked[0].flows["companies"].counts and not locked[0].flows["companies"].actions  # it touched nothing
        assert worked[0].flows["companies"].counts["created.keap"] == COMPANIES
        assert len(list(keap.store.records("companies"))) == COMPANIES  # one twin each: no duplicates

        again = await one_worker(state_url, invoiced_server.url, keap_url)  # the lock was released
        assert again.exit_code == 0
    with Store(state_url) as store:
        assert len(store.active_link_ids("companies")) == COMPANIES
