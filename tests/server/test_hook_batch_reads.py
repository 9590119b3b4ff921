"""One Keap read by id per object and webhook batch (issue 13): a contact hook goes to both contact flows (people,
and the people of companies), which share one read of its ids. A 1,000-id hook of contacts we never linked costs
the ten listings README states (100 ids a listing), not ten per flow; a hook naming a contact of each flow syncs
both, on one listing; a hook naming ten companies (which Keap lists by no id list) reads them in one listing of
their id window, not a GET each. The service runs against both emulators over HTTP, at the production defaults (pacing,
retries, debounce); Keap's hook deliveries are the emulator's."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from invoiced_keap.config import Settings
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import IDS_PER_CALL, KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.keap_hooks import hook_url
from invoiced_keap.server.service import Service
from invoiced_keap.state import Store
from tests.support import API_KEY, eventually, free_port

HOOK_BATCH = 1000  # the most ids Keap puts in one delivery
TOKEN = "hook-token-for-batch-reads"
CONTACT_FLOWS = ("contacts", "company_contacts")
COMPANIES = 30




@dataclass
class Running:
    service: Service
    invoiced: InvoicedEmulator
    keap: KeapEmulator
    keap_url: str

    def batches_done(self, flow: str) -> float:
        """Webhook batches synced for `flow` (each observes its propagation delay once it is committed)."""
        return next((sample.value for family in self.service.metrics.propagation_delay.collect()
                     for sample in family.samples if sample.name.endswith("_count") and sample.labels["flow"] == flow), 0.0)

    def idle(self) -> bool:
        service = self.service
        due = service.syncer.store.reconcile_due(service.flows, timedelta(seconds=service.settings.schedule.full_scan_interval))
        return service.hooks_verified and not due and service.metrics.job == "other" and service.queue.pending() == 0

    def keap_calls(self) -> Counter[str]:
        return Counter({key: n for key, n in self.keap.requests.items() if "/_emulator" not in key})

    def invoiced_calls(self) -> Counter[str]:
        return Counter({key: n for key, n in self.invoiced.requests.items() if "/_emulator" not in key})

    def clear(self) -> None:
        self.keap.requests.clear()
        self.invoiced.requests.clear()

    async def after_a_batch(self, action: Callable[[], Awaitable[object]], flows: tuple[str, ...] = CONTACT_FLOWS) -> None:
        """Do `action`, then wait until a webhook batch of each of `flows` has been synced."""
        before = {flow: self.batches_done(flow) for flow in flows}
        await action()
        await eventually(lambda: all(self.batches_done(flow) > before[flow] for flow in flows))
        await eventually(self.idle)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """A person customer (flow contacts), a company customer with a person (flow company_contacts) and `COMPANIES`
    more company customers, synced before the service starts (so no echo of those creates is on its way), then `run` with Keap's hooks on."""
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=1.0)  # Keap collects a second's changes
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"},
                                 {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
                                 *({"name": f"Company {n}", "type": "company"} for n in range(COMPANIES))]})
    acme = next(customer["id"] for customer in invoiced.customers.values() if customer["name"] == "Acme")
    invoiced.create_contact(acme, {"name": "Ann Lee", "email": "ann@acme.example"})
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, Store(
        f"sqlite:///{tmp_path}/state.db"
    ) as store:
        store.migrate()
        keap_url = f"{keap_server.url}/crm/rest"
        async with InvoicedConnector(API_KEY, invoiced_server.url) as invoiced_api, KeapConnector(ApiKey(API_KEY), keap_url) as keap_api:
            syncer = Syncer(store, invoiced_api, keap_api)
            for _ in range(2):  # the second reads back what the first made
                assert (await syncer.sync()).exit_code == 0
            assert [len(store.active_link_ids(flow)) for flow in CONTACT_FLOWS] == [1, 1]
            port = free_port()
            service = Service(syncer, build_flows(), Settings(server_port=port, public_url=f"http://127.0.0.1:{port}",
                                                               keap_hook_token=TOKEN))
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            world = Running(service, invoiced, keap, keap_url)
            await eventually(lambda: world.idle() or task.done())
            assert not task.done()
            try:
                yield world
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)


async def test_a_thousand_id_contact_hook_of_unlinked_ids_costs_ten_listings_for_both_contact_flows(running: Running) -> None:
    unlinked = [{"id": 90_000 + n} for n in range(HOOK_BATCH)]  # contacts we never linked (deleted, or never ours)
    running.clear()

    async def deliver() -> None:  # as Keap does
        async with httpx.AsyncClient() as client:
            answer = await client.post(hook_url(running.service.public_url, TOKEN),
                                       json={"event_key": "contact.edit", "object_type": "contact", "object_keys": unlinked})
            answer.raise_for_status()

    await running.after_a_batch(deliver)

    assert running.keap_calls() == Counter({"GET /crm/rest/v2/contacts": HOOK_BATCH // IDS_PER_CALL})  # was 20
    assert running.invoiced_calls() == Counter()
    assert running.service.metrics.calls_by_job("keap").get("sync_ids") == HOOK_BATCH // IDS_PER_CALL


async def test_a_hook_naming_a_contact_of_each_flow_syncs_both_on_one_listing(running: Running) -> None:
    store = running.service.syncer.store
    [jane] = store.active_link_ids("contacts").values()
    [ann] = store.active_link_ids("company_contacts").values()
    running.clear()

    async def edit_both_in_keap() -> None:  # as a Keap user does: Keap collects both edits into one contact.edit hook
        async with httpx.AsyncClient(base_url=running.keap_url, headers={"X-Keap-API-Key": API_KEY}) as keap:
            (await keap.patch(f"/v2/contacts/{jane}", params={"update_mask": "given_name"}, json={"given_name": "Janet"})).raise_for_status()
            (await keap.patch(f"/v2/contacts/{ann}", params={"update_mask": "job_title"}, json={"job_title": "CFO"})).raise_for_status()

    await running.after_a_batch(edit_both_in_keap)

    names = {customer["name"] for customer in running.invoiced.customers.values()}
    assert "Janet Cooper" in names
    acme = next(customer["id"] for customer in running.invoiced.customers.values() if customer["name"] == "Acme")
    assert [contact["title"] for contact in running.invoiced.customer_contacts(acme)] == ["CFO"]
    keap_reads = Counter({key: n for key, n in running.keap_calls().items() if key.startswith("GET ")})
    assert keap_reads == Counter({"GET /crm/rest/v2/contacts": 1}), keap_reads  # both ids, for both flows


async def test_a_hook_naming_ten_companies_reads_them_in_one_listing_of_their_id_window(running: Running) -> None:
    linked = sorted(running.service.syncer.store.active_link_ids("companies").values(), key=int)
    assert len(linked) == COMPANIES + 1
    companies = linked[::3]  # ten, spread over the ids: under the circuit breaker's limit (half of 31 pairs)
    running.keap.faults.rate_limit = None  # the Keap user's ten edits are not this sync's calls to pace
    running.clear()

    async def rename_in_keap() -> None:  # as a Keap user (or an import) does: one company.edit hook names them all
        async with httpx.AsyncClient(base_url=running.keap_url, headers={"X-Keap-API-Key": API_KEY}) as keap:
            for keap_id in companies:
                answer = await keap.patch(f"/v2/companies/{keap_id}", params={"update_mask": "company_name"},
                                          json={"company_name": f"Renamed {keap_id}"})
                answer.raise_for_status()

    await running.after_a_batch(rename_in_keap, ("companies",))

    names = {customer["name"] for customer in running.invoiced.customers.values()}
    assert {f"Renamed {keap_id}" for keap_id in companies} <= names
    keap_reads = Counter({key: n for key, n in running.keap_calls().items() if key.startswith("GET ")})
    assert keap_reads == Counter({"GET /crm/rest/v2/companies": 1}), keap_reads  # was a GET /v2/companies/{id} each
