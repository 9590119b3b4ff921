"""`run` leaves no hook of ours on an address it no longer serves (issue 13): restarted with another `public_url`,
its first check deletes the nine hooks on the old one and registers nine on the new; restarted with no `public_url`
(hooks off), it deletes ours once and says so. Hooks of other receivers on the account are never touched. Each
start is a real `run` against both emulators over HTTP, at the connectors' production defaults."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from invoiced_keap.config import Settings
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
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

HOOKS = 9  # add, edit and delete of companies, contacts and products
SOMEONE_ELSES = "http://127.0.0.1:9/zapier/catch/1"  # another integration's hook on the same Keap account




@dataclass
class Account:
    """Both emulators, serving, and the state store the restarts share."""

    invoiced_url: str
    keap_url: str
    keap: KeapEmulator
    store: Store

    async def start_and_stop(self, **settings: object) -> Service:
        """One `run` until its first poll is done (the hooks are seen to before it), then SIGTERM's stop. Keap's
        minute starts afresh first: a process that finds the minute's calls of the one before it on the key takes
        them for another client's and leaves it its share (`connectors.pacing`), which would only slow the test."""
        self.keap.advance_clock(60)
        async with InvoicedConnector(API_KEY, self.invoiced_url) as invoiced, KeapConnector(ApiKey(API_KEY), self.keap_url) as keap:
            service = Service(Syncer(self.store, invoiced, keap), build_flows(), Settings(**settings))
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            await eventually(lambda: bool(service.flow_health.last_success) or task.done())
            stop.set()
            await asyncio.wait_for(task, 10)
        return service

    def hooks(self) -> Counter[tuple[str, str]]:
        """(hook URL, status) of every hook on the account."""
        return Counter((hook.hook_url, hook.status.value) for hook in self.keap.hooks.hooks.values())

    def hook_calls(self) -> dict[str, int]:
        return {key: n for key, n in self.keap.requests.items() if "/v1/hooks" in key}


@pytest.fixture
async def account(tmp_path: Path) -> AsyncIterator[Account]:
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=0.0)
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, Store(
        f"sqlite:///{tmp_path}/state.db"
    ) as store:
        store.migrate()
        keap_url = f"{keap_server.url}/crm/rest"
        httpx.post(f"{keap_url}/v1/hooks", json={"eventKey": "contact.add", "hookUrl": SOMEONE_ELSES},
                   headers={"X-Keap-API-Key": API_KEY}).raise_for_status()
        yield Account(invoiced_server.url, keap_url, keap, store)


async def test_a_new_public_url_moves_the_hooks_and_none_deletes_ours_once(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    token = "hook-token-kept-across-restarts"
    first, second = free_port(), free_port()
    address_a, address_b = f"http://127.0.0.1:{first}", f"http://localhost:{second}"
    someone_elses = (SOMEONE_ELSES, "Unverified")  # nothing listens there

    await account.start_and_stop(server_port=first, public_url=address_a, keap_hook_token=token)
    assert account.hooks() == Counter({(hook_url(address_a, token), "Verified"): HOOKS, someone_elses: 1})

    account.keap.requests.clear()
    with caplog.at_level(logging.INFO, logger="invoiced_keap.server.keap_hooks"):
        await account.start_and_stop(server_port=second, public_url=address_b, keap_hook_token=token)

    assert account.hooks() == Counter({(hook_url(address_b, token), "Verified"): HOOKS, someone_elses: 1})
    # the start's check: the listing, the nine on A deleted, nine made on B (each verified in its create call)
    assert account.hook_calls() == {"GET /crm/rest/v1/hooks": 1, "DELETE /crm/rest/v1/hooks/{key}": HOOKS,
                                    "POST /crm/rest/v1/hooks": HOOKS}
    moved = [record.getMessage() for record in caplog.records if "no longer serves" in record.getMessage()]
    assert len(moved) == 1 and f"{address_a}/hooks/keap/…" in moved[0] and token not in moved[0]

    account.keap.requests.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="invoiced_keap.server.keap_hooks"):
        off = await account.start_and_stop(server_port=free_port())  # no public_url: hooks off

    assert account.hooks() == Counter({someone_elses: 1})
    assert account.hook_calls() == {"GET /crm/rest/v1/hooks": 1, "DELETE /crm/rest/v1/hooks/{key}": HOOKS}
    assert off.metrics.calls_by_job("keap").get("hooks") == 1 + HOOKS
    said = [record.getMessage() for record in caplog.records if "Keap hooks off" in record.getMessage()]
    assert any("no public_url is configured" in message for message in said)
    deleted = [message for message in said if "deleted the 9 Keap hook(s) of ours" in message]
    assert len(deleted) == 1 and f"{address_b}/hooks/keap/…" in deleted[0] and token not in deleted[0]

    account.keap.requests.clear()
    await account.start_and_stop(server_port=free_port(), keap_hooks=False)  # off again: the listing finds none

    assert account.hooks() == Counter({someone_elses: 1})
    assert account.hook_calls() == {"GET /crm/rest/v1/hooks": 1}
