"""The running service against both emulators with webhooks on: edits travel without waiting for a poll,
forgeries change nothing, bursts collapse; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import BUDGET_PROBE_INTERVAL, Pacer, RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.app import INVOICED_WEBHOOK_PATH
from invoiced_keap.server.invoiced_webhooks import expected_signature
from invoiced_keap.config import Schedule, Settings
from invoiced_keap.server.service import Service
from invoiced_keap.state import Store
from tests.support import API_KEY, eventually, free_port

FAST_RETRIES = RetryPolicy(attempts=3, timeout=20.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)
NEVER = 10_000.0  # a poll interval no test waits for: what arrives, arrived by webhook



async def settle(service: Service) -> None:
    """Wait out the debounce and the batch it hands over."""
    await asyncio.sleep(2 * service.settings.schedule.webhook_debounce)
    await eventually(lambda: service.queue.pending() == 0)
    await asyncio.sleep(2 * service.settings.schedule.webhook_debounce)



class MovableClock:
    """`time.monotonic()` plus what a test moved it forward by: a pacer's clock, so its long waits pass at once."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += seconds


@dataclass
class Running:
    service: Service
    invoiced: InvoicedEmulator
    keap: KeapEmulator
    invoiced_url: str
    keap_url: str
    webhook_secret: str
    keap_pacer_clock: MovableClock

    def company_names(self) -> list[str]:
        return sorted(record["company_name"] for record in self.keap.store.records("companies"))

    def reset_counts(self) -> None:
        self.invoiced.requests.clear()
        self.keap.requests.clear()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, webhook_retry_delays=(0.05,))
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=0.0, hook_retry_delays=(0.05,))
    keap.faults.rate_limit = None
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}]})
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, Store(
        f"sqlite:///{tmp_path}/state.db"
    ) as store:
        store.migrate()
        webhook = httpx.post(f"{invoiced_server.url}/webhooks", json={"url": "http://127.0.0.1:9/"}, auth=(API_KEY, "")).json()
        keap_url = f"{keap_server.url}/crm/rest"
        keap_pacer_clock = MovableClock()
        keap_pacer = Pacer(RateLimits(), max_wait=FAST_RETRIES.max_wait, clock=keap_pacer_clock)
        async with InvoicedConnector(API_KEY, invoiced_server.url, retry=FAST_RETRIES) as invoiced_api, KeapConnector(
            ApiKey(API_KEY), keap_url, pacer=keap_pacer, retry=FAST_RETRIES
        ) as keap_api:
            syncer = Syncer(store, invoiced_api, keap_api)
            flows = build_flows()
            # a burst of 50 edits made in the emulator's process is delivered well within the debounce's max_delay (10 x 2 s)
            port = free_port()  # Keap's hooks need the address it reaches the service at (here: loopback)
            settings = Settings(
                server_port=port, public_url=f"http://127.0.0.1:{port}", invoiced_webhook_secret=webhook["secret"],
                schedule=Schedule(poll_interval=NEVER),  # webhooks alone, at the production debounce
            )
            service = Service(syncer, flows, settings)
            httpx.patch(
                f"{invoiced_server.url}/webhooks/{webhook['id']}",
                json={"url": service.url + INVOICED_WEBHOOK_PATH},
                auth=(API_KEY, ""),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            world = Running(service, invoiced, keap, invoiced_server.url, keap_url, webhook["secret"], keap_pacer_clock)
            await eventually(lambda: bool(service.flow_health.last_success) or task.done())
            await eventually(lambda: world.company_names() == ["Acme", "Globex"])
            await settle(service)  # the echoes of the first pass's creates come and go
            try:
                yield world
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


def customer_id(world: Running, name: str) -> int:
    return next(customer["id"] for customer in world.invoiced.customers.values() if customer["name"] == name)


async def test_hooks_are_registered_and_the_status_page_and_metrics_answer(running: Running) -> None:
    hooks = list(running.keap.hooks.hooks.values())
    assert len(hooks) == 9 and {hook.status.value for hook in hooks} == {"Verified"}
    async with httpx.AsyncClient(base_url=running.service.url) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert 'data-flow="companies"' in (await client.get("/status")).text
        metrics = (await client.get("/metrics")).text
    assert 'invoiced_keap_links{flow="companies"} 2.0' in metrics
    assert 'invoiced_keap_passes_total{flow="companies",result="ok"}' in metrics


async def test_while_keap_hooks_are_verified_polls_read_keap_only_every_keap_poll_interval(running: Running) -> None:
    service = running.service
    schedule = service.settings.schedule
    assert service.hooks_verified and service.keap_polled > 0  # the first poll read Keap
    assert not service.keap_poll_due(service.keap_polled + schedule.keap_poll_interval - 1)
    assert service.keap_poll_due(service.keap_polled + schedule.keap_poll_interval)
    polls_before = service.metrics.calls_by_job("keap").get("poll", 0)

    report = await service.poll()  # a poll within the interval reads Invoiced only

    assert report.exit_code == 0 and report.api_calls["keap"] == 0
    assert service.metrics.calls_by_job("keap").get("poll", 0) == polls_before
    async with httpx.AsyncClient(base_url=service.url) as client:
        assert 'data-testid="keap-calls"' in (await client.get("/status")).text


async def test_while_the_invoiced_webhook_is_verified_polls_list_customers_only_every_invoiced_poll_interval(
    running: Running,
) -> None:
    service = running.service
    schedule = service.settings.schedule
    assert service.webhook_upkeep.verified and service.invoiced_polled > 0  # the first poll listed the customers
    assert not service.invoiced_poll_due(service.invoiced_polled + schedule.invoiced_poll_interval - 1)
    running.reset_counts()

    report = await service.poll()  # within both intervals: items and events only, nothing of Keap

    assert report.exit_code == 0 and report.api_calls["keap"] == 0
    assert "GET /customers" not in running.invoiced.requests
    assert running.invoiced.requests["GET /items"] >= 1 and running.invoiced.requests["GET /events"] == 1
    async with httpx.AsyncClient(base_url=service.url) as client:
        health = (await client.get("/healthz")).json()
        page = (await client.get("/status")).text
    assert health["invoiced_webhook"]["state"] == "verified" and health["keap_hooks"]["state"] == "verified"
    assert 'data-testid="invoiced-webhook" data-state="verified"' in page

    service.invoiced_polled -= schedule.invoiced_poll_interval  # the interval is up: the safety net lists them
    running.reset_counts()
    assert (await service.poll()).exit_code == 0
    assert running.invoiced.requests["GET /customers"] == 1


@pytest.mark.parametrize(("change", "said"), [
    ({"enabled": False}, "is disabled"),
    ({"events": ["invoice.created"]}, "does not send customer.created, customer.updated, customer.deleted"),
    ({"url": "http://127.0.0.1:9/webhooks/invoiced"}, "has no webhook to"),
])
async def test_an_invoiced_webhook_that_cannot_deliver_leaves_the_customers_polled_every_poll_interval(
    running: Running, change: dict[str, object], said: str,
) -> None:
    service = running.service
    with httpx.Client(base_url=running.invoiced_url, auth=(API_KEY, "")) as invoiced:
        [webhook] = invoiced.get("/webhooks").json()
        invoiced.patch(f"/webhooks/{webhook['id']}", json=change).raise_for_status()

    await service.check_webhook()

    assert service.webhook_upkeep.state == "unverified" and said in (service.webhook_upkeep.reason or "")
    assert service.invoiced_poll_due(service.invoiced_polled + service.settings.schedule.poll_interval)
    service.invoiced_polled -= service.settings.schedule.poll_interval  # a poll_interval later
    running.reset_counts()
    assert (await service.poll()).exit_code == 0
    assert running.invoiced.requests["GET /customers"] == 1
    async with httpx.AsyncClient(base_url=service.url) as client:
        page = (await client.get("/status")).text
    assert 'data-testid="invoiced-webhook" data-state="unverified"' in page and said in page


async def test_an_invoiced_webhook_that_stops_delivering_between_checks_is_noticed_by_the_next_polls(
    running: Running,
) -> None:
    """Invoiced can no longer reach the receiver (its address moved, a firewall): the webhook's listing still looks
    right until the next check, 15 minutes on, but the edit's event, listed by a poll and not delivered by the next,
    makes it unverified at once, and the poll after lists the customers and carries the edit."""
    service = running.service
    with httpx.Client(base_url=running.invoiced_url, auth=(API_KEY, "")) as invoiced:
        [webhook] = invoiced.get("/webhooks").json()
        invoiced.patch(f"/webhooks/{webhook['id']}", json={"url": "http://127.0.0.1:9/webhooks/invoiced"}).raise_for_status()
    running.invoiced.update_customer(customer_id(running, "Acme"), {"name": "Acme Unheard"})

    await service.poll()  # lists the event
    assert service.webhook_upkeep.verified
    await service.poll()  # the event is still not delivered
    assert service.webhook_upkeep.state == "unverified"
    assert "did not deliver event(s)" in (service.webhook_upkeep.reason or "")
    assert "Acme Unheard" not in running.company_names()  # the customers were not listed yet

    service.invoiced_polled -= service.settings.schedule.poll_interval  # a poll_interval later
    running.reset_counts()
    assert (await service.poll()).exit_code == 0
    assert running.invoiced.requests["GET /customers"] == 1 and "Acme Unheard" in running.company_names()


async def test_delivered_customer_events_keep_the_invoiced_webhook_verified(running: Running) -> None:
    service = running.service
    running.invoiced.update_customer(customer_id(running, "Acme"), {"name": "Acme Heard"})
    await eventually(lambda: "Acme Heard" in running.company_names())  # by the webhook
    for _ in range(3):
        await service.poll()
    assert service.webhook_upkeep.verified


async def test_an_invoiced_edit_reaches_keap_without_a_poll(running: Running) -> None:
    running.invoiced.update_customer(customer_id(running, "Acme"), {"name": "Acme Ltd"})
    await eventually(lambda: running.company_names() == ["Acme Ltd", "Globex"])


async def test_a_company_customers_person_and_its_edits_reach_keap_without_a_poll(running: Running) -> None:
    acme = customer_id(running, "Acme")
    ann = running.invoiced.create_contact(acme, {"name": "Ann Lee", "email": "ann@acme.example"})
    await eventually(lambda: [r.get("given_name") for r in running.keap.store.records("contacts")] == ["Ann"])
    [person] = running.keap.store.records("contacts")
    [company] = [r for r in running.keap.store.records("companies") if r["company_name"] == "Acme"]
    assert str(person["company"]["id"]) == str(company["id"])

    running.invoiced.update_contact(acme, ann["id"], {"title": "CFO"})
    await eventually(lambda: [r.get("job_title") for r in running.keap.store.records("contacts")] == ["CFO"])


async def test_a_keap_edit_reaches_invoiced_without_a_poll(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.keap_url, headers={"X-Keap-API-Key": API_KEY}) as keap:
        [globex] = [r for r in running.keap.store.records("companies") if r["company_name"] == "Globex"]
        answer = await keap.patch(f"/v2/companies/{globex['id']}", params={"update_mask": "company_name"},
                                  json={"company_name": "Globex Corp"})
        answer.raise_for_status()
    gid = customer_id(running, "Globex")
    await eventually(lambda: running.invoiced.customer(gid)["name"] == "Globex Corp")


async def test_a_burst_of_fifty_edits_costs_one_read_and_one_write(running: Running) -> None:
    acme = customer_id(running, "Acme")
    running.reset_counts()
    for number in range(1, 51):  # in the emulator's process: the burst is over in milliseconds, whatever the load
        running.invoiced.update_customer(acme, {"name": f"Acme {number}"})
    await eventually(lambda: "Acme 50" in running.company_names())
    await settle(running.service)  # the echo (Keap's edit hook) comes and goes
    reads = running.invoiced.requests["GET /customers/{id}"]
    writes = {key: n for key, n in {**running.keap.requests, **running.invoiced.requests}.items()
              if key.split()[0] in {"POST", "PATCH", "DELETE"}}
    assert reads == 1
    assert writes == {"PATCH /crm/rest/v2/companies/{company_id}": 1}  # and none to Invoiced: no echo


async def test_a_forged_delivery_is_rejected_and_changes_nothing(running: Running) -> None:
    acme = running.invoiced.customer(customer_id(running, "Acme"))
    event = {"id": 10_001, "type": "customer.updated", "data": {"object": {**acme, "name": "Hijacked"}}}
    body = httpx.Request("POST", "/", json=event).content
    running.reset_counts()
    async with httpx.AsyncClient(base_url=running.service.url) as client:
        forged = await client.post(INVOICED_WEBHOOK_PATH, content=body,
                                   headers={"X-Invoiced-Signature": expected_signature("not-the-secret", body)})
        unsigned = await client.post(INVOICED_WEBHOOK_PATH, content=body)
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    await settle(running.service)
    assert running.company_names() == ["Acme", "Globex"]
    assert running.service.queue.pending() == 0
    assert sum(running.keap.requests.values()) == 0 and sum(running.invoiced.requests.values()) == 0


SERVICE_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from invoiced_keap.connectors.invoiced import InvoicedConnector
    from invoiced_keap.connectors.keap import KeapConnector
    from invoiced_keap.connectors.keap_auth import ApiKey
    from invoiced_keap.engine.run import Syncer
    from invoiced_keap.flows import build_flows
    from invoiced_keap.config import Schedule, Settings
    from invoiced_keap.server.service import Service
    from invoiced_keap.state import Store

    async def main(database, invoiced_url, keap_url):
        with Store(database) as store:
            store.migrate()
            async with InvoicedConnector("test", invoiced_url) as invoiced, KeapConnector(ApiKey("test"), keap_url) as keap:
                service = Service(Syncer(store, invoiced, keap), build_flows(), Settings(server_port=0))  # production schedule
                print(service.url, flush=True)
                await service.run_until_signalled()
        print("stopped", flush=True)

    asyncio.run(main(*sys.argv[1:]))
""")


@pytest.mark.parametrize(("signum", "in_flight"), [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)])
def test_a_signal_stops_the_service_cleanly_with_status_zero(
    tmp_path: Path, invoiced_emulator: InvoicedEmulator, invoiced_server: BackgroundServer, keap_emulator: KeapEmulator,
    keap_server: BackgroundServer, signum: int, in_flight: bool,
) -> None:
    """At the production schedule: between passes, or with the first pass in flight (every Keap call slowed to
    0.3 s, 40 companies to create), the service stops with status 0."""
    if in_flight:
        invoiced_emulator.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(40)]})
        httpx.post(f"{keap_server.url}/_emulator/faults", json={"latency_ms": 300}).raise_for_status()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE_SCRIPT, f"sqlite:///{tmp_path}/state.db", invoiced_server.url,
         f"{keap_server.url}/crm/rest"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        def ready() -> bool:  # the first pass has made a Keap company / is done
            if in_flight:
                return any(True for _ in keap_emulator.store.records("companies"))
            return 'result="ok"' in httpx.get(f"{url}/metrics").text

        while not ready():
            assert time.monotonic() < deadline, "the first pass made nothing" if in_flight else "no pass finished"
            time.sleep(0.05)
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    if in_flight:  # stopped mid-pass: what was in hand finished, the rest waits for the next run
        assert 0 < len(list(keap_emulator.store.records("companies"))) < 40


async def test_a_pass_that_crashes_makes_its_flows_unhealthy_until_one_succeeds(running: Running) -> None:
    async def crashing_pass() -> None:
        raise KeyError("customer")  # what any bug in a pass looks like to the service

    await running.service._guarded(crashing_pass(), ["companies"])
    async with httpx.AsyncClient(base_url=running.service.url) as client:
        unhealthy = await client.get("/healthz")
        assert unhealthy.status_code == 503
        assert "the pass crashed: KeyError" in unhealthy.json()["reasons"]["companies"]
        await running.service.poll()
        assert (await client.get("/healthz")).status_code == 200


async def test_an_edit_whose_webhook_pass_fails_waits_and_health_says_so_until_a_poll_of_both_sides_carries_it(
    running: Running,
) -> None:
    """Found by break-it: with both push paths verified, a webhook's pass that met a Keap outage dropped its ids, and
    the next poll, leaving Keap to its hooks, made no Keap call and called the flow healthy."""
    service = running.service
    running.keap.faults.error_rate, running.keap.faults.error_status = 1.0, 503
    running.invoiced.update_customer(customer_id(running, "Acme"), {"name": "Acme Ltd"})
    await eventually(lambda: "companies" in service.flow_health.last_error)  # the webhook's pass failed
    await eventually(lambda: service.queue.pending() == 0)
    async with httpx.AsyncClient(base_url=service.url) as client:
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["pending_ids"] == 1

        running.reset_counts()
        await service.poll()  # Keap still down: the poll reads it all the same, and fails
        assert running.keap.requests and (await client.get("/healthz")).status_code == 503

        running.keap.faults.error_rate = 0.0
        await eventually(lambda: "Acme Ltd" in running.company_names())  # the worker's next poll, sooner after a failure
        await eventually(lambda: not service.flow_health.last_error)
        await settle(service)  # the echo of the write, by Keap's hook
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200 and healthy.json()["pending_ids"] == 0


async def test_keaps_day_quota_seen_used_up_holds_the_passes_only_until_keap_is_asked_again(running: Running) -> None:
    """Found by break-it: after one sight of Keap's day quota at 0, `run` made no Keap call until midnight, though
    Keap's quota was raised again; now its passes stop without a call only until the pacer's probe is due."""
    service = running.service
    running.keap.faults.rate_limit = {"per_day": 1}  # spent already today: every call a 429 saying 0 left
    running.invoiced.update_customer(customer_id(running, "Acme"), {"name": "Acme Ltd"})
    await eventually(lambda: "quota" in service.flow_health.last_error.get("companies", ""))

    running.keap.faults.rate_limit = {"per_day": 30_000}  # the quota raised during the day
    running.reset_counts()
    held = await service.poll()
    assert held.error is not None and "quota" in held.error and not running.keap.requests

    running.keap_pacer_clock.advance(BUDGET_PROBE_INTERVAL)
    await service.poll()
    assert running.keap.requests and "Acme Ltd" in running.company_names()
