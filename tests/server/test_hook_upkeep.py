"""Keap hooks that cannot work cost almost nothing: without `public_url` none is registered; hooks Keap cannot verify
(its handshake does not reach the receiver) are checked with a doubling wait, up to a day, at two calls a check;
the status page, `/healthz` and the log say so, with the reason, once. A day of checks runs on a manual clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from invoiced_keap.config import Settings
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.app import create_app
from invoiced_keap.server.keap_hooks import HookReport, hook_problem, keap_hook_upkeep
from invoiced_keap.server.service import Service
from invoiced_keap.server.upkeep import HOOK_BACKOFF_CAP, HOOK_CHECK_INTERVAL
from invoiced_keap.state import Store
from tests.support import API_KEY, ManualClock

DAY = 86_400.0
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there: Keap's handshake fails, as it does for a private address
HOOK_CALLS = ("/crm/rest/v1/hooks",)


async def day_of_checks(service: Service) -> ManualClock:
    """`run`'s hook upkeep loop for a day of the manual clock: each sleep moves the clock instead of waiting."""
    clock = ManualClock(0.0)
    service.clock = clock
    service.hook_upkeep.next_check = 0.0
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if clock.now >= DAY:
            stop.set()
        await asyncio.sleep(0)

    await service.keep_checking(stop, sleep)
    return clock


def keap_hook_calls(keap: KeapEmulator) -> int:
    return sum(count for request, count in keap.requests.items() if request.split()[1].startswith(HOOK_CALLS))


@pytest.fixture
def keap() -> KeapEmulator:
    return KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=0.0)


async def build(keap_url: str, store: Store, **settings: object) -> tuple[Service, Syncer]:
    invoiced = InvoicedConnector(API_KEY, "http://127.0.0.1:9")  # never called here
    keap_api = KeapConnector(ApiKey(API_KEY), keap_url)
    syncer = Syncer(store, invoiced, keap_api)
    return Service(syncer, build_flows(), Settings(server_port=0, **settings)), syncer


async def test_a_day_of_checks_of_hooks_keap_cannot_verify_costs_fourteen_calls_and_is_said_once(
    keap: KeapEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BackgroundServer(keap.asgi()) as keap_server, Store(f"sqlite:///{tmp_path}/state.db") as store:
        store.migrate()
        service, syncer = await build(f"{keap_server.url}/crm/rest", store, public_url=UNREACHABLE)
        try:
            with caplog.at_level(logging.INFO, logger="invoiced_keap.server.upkeep"):
                clock = await day_of_checks(service)

            # checks at 0, 15 min, 45 min, 1 h 45, 3 h 45, 7 h 45 and 15 h 45 (the wait doubles from 15 minutes), each
            # the listing and one handshake: 14 calls, where one every 15 minutes re-creating nine hooks took 28 each
            assert keap_hook_calls(keap) == 7 * 2, dict(keap.requests)
            assert service.metrics.calls_by_job("keap") == {"hooks": 14}
            assert not service.hooks_verified and service.keap_poll_due(0.0)
            said = [record for record in caplog.records if "Keap hooks not working" in record.getMessage()]
            assert len(said) == 1 and said[0].levelno == logging.WARNING
            assert "could not verify the hooks" in said[0].getMessage()

            assert service.hook_upkeep.next_check == (31 * 60 + 45) * 60  # 16 h after the last: the wait still doubles
            clock.now = DAY
            app = create_app(store, service.flows, service.queue, service.metrics, service.receivers,
                             health=service.health, push=service.push)
            with BackgroundServer(app) as served:
                health = httpx.get(f"{served.url}/healthz")
                page = httpx.get(f"{served.url}/status").text
            assert health.status_code == 200  # polling covers for the hooks: degraded, not unhealthy
            hooks = health.json()["keap_hooks"]
            assert hooks["state"] == "unverified" and f"could not verify the hooks at {UNREACHABLE}" in hooks["reason"]
            assert hooks["next_check_in_seconds"] == (31 * 60 + 45) * 60 - DAY
            assert 'data-testid="keap-hooks" data-state="unverified"' in page and "could not verify the hooks" in page
        finally:
            service.socket.close()
            await syncer.invoiced.aclose()
            await syncer.keap.aclose()


async def test_without_public_url_no_hook_is_registered_and_the_status_page_says_why(
    keap: KeapEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BackgroundServer(keap.asgi()) as keap_server, Store(f"sqlite:///{tmp_path}/state.db") as store:
        store.migrate()
        with caplog.at_level(logging.WARNING, logger="invoiced_keap.server.upkeep"):
            service, syncer = await build(f"{keap_server.url}/crm/rest", store)
        try:
            await day_of_checks(service)

            assert keap_hook_calls(keap) == 0 and sum(keap.requests.values()) == 0
            said = [record.getMessage() for record in caplog.records if "Keap hooks off" in record.getMessage()]
            assert len(said) == 1 and "no public_url is configured" in said[0] and service.url in said[0]
            app = create_app(store, service.flows, service.queue, service.metrics, service.receivers,
                             health=service.health, push=service.push)
            with BackgroundServer(app) as served:
                hooks = httpx.get(f"{served.url}/healthz").json()["keap_hooks"]
                page = httpx.get(f"{served.url}/status").text
            assert hooks["state"] == "off" and "public_url" in hooks["reason"] and "next_check_in_seconds" not in hooks
            assert 'data-state="off"' in page and "no public_url is configured" in page
        finally:
            service.socket.close()
            await syncer.invoiced.aclose()
            await syncer.keap.aclose()


def test_hooks_that_come_back_are_checked_every_fifteen_minutes_again() -> None:
    upkeep = keap_hook_upkeep(enabled=True, public_url="https://sync.example.com")
    failing = hook_problem(HookReport([], [], [], [], ["company.add"]), "https://sync.example.com")
    waits = []
    now = 0.0
    for _ in range(9):
        upkeep.checked(now, failing)
        waits.append(upkeep.next_check - now)
        now = upkeep.next_check
    assert waits == [HOOK_CHECK_INTERVAL * 2**n for n in range(7)] + [HOOK_BACKOFF_CAP] * 2
    upkeep.checked(now, hook_problem(HookReport(["company.add"], [], [], [], []), "https://sync.example.com"))
    assert upkeep.verified and upkeep.reason is None and upkeep.next_check - now == HOOK_CHECK_INTERVAL
    upkeep.checked(now, error="503 Service Unavailable")
    assert upkeep.state == "error" and "503" in (upkeep.reason or "") and upkeep.next_check - now == HOOK_CHECK_INTERVAL
