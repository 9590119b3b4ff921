"""Keap REST hooks against the emulator: registration and re-verification, the handshake, batched deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.hooks import HookStatus
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.keap_hooks import RECEIVER_PATH, KeapHookReceiver, ensure_hooks, event_keys, hook_url, is_ours
from invoiced_keap.server.metrics import Metrics

from tests.connectors import keap_support
from tests.server.conftest import HOOK_TOKEN, Served, wait_for
from tests.support import API_KEY

ALL_KEYS = event_keys(CATALOGUE.values())


@pytest.fixture
def keap_emulator() -> KeapEmulator:
    return KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=0.02, hook_retry_delays=(0.02,))


@pytest.fixture
async def keap(keap_server: BackgroundServer) -> AsyncIterator[KeapConnector]:
    async with KeapConnector(ApiKey(API_KEY), f"{keap_server.url}/crm/rest") as connector:
        yield connector


def ours(served: Served) -> str:
    """Our hook URL."""
    return hook_url(served.url, HOOK_TOKEN)


def test_the_flows_need_add_edit_delete_hooks_of_their_keap_objects() -> None:
    assert event_keys([CATALOGUE["products"]]) == ["product.add", "product.edit", "product.delete"]
    assert len(ALL_KEYS) == 9


async def test_hooks_are_registered_verified_and_left_alone_when_healthy(served: Served, keap: KeapConnector) -> None:
    url = ours(served)
    first = await ensure_hooks(keap, url, ALL_KEYS)
    assert sorted(first.created) == sorted(ALL_KEYS)
    hooks = await keap.list_hooks()
    assert {(hook.event_key, hook.hook_url, hook.status) for hook in hooks} == {(key, url, "Verified") for key in ALL_KEYS}
    again = await ensure_hooks(keap, url, ALL_KEYS)
    assert (sorted(again.verified), again.created, again.removed) == (sorted(ALL_KEYS), [], [])
    assert served.metrics.webhook_deliveries.labels("keap", "handshake")._value.get() == 9


async def test_an_inactive_hook_is_reverified_and_stale_ones_removed(
    served: Served, keap: KeapConnector, keap_emulator: KeapEmulator
) -> None:
    url = ours(served)
    await ensure_hooks(keap, url, ALL_KEYS)
    stale = await keap.create_hook("contact.edit", hook_url(served.url, "an-old-token"))
    someone_elses = await keap.create_hook("contact.edit", "http://127.0.0.1:9/elsewhere")
    inactive = next(hook for hook in keap_emulator.hooks.hooks.values() if hook.event_key == "company.edit")
    inactive.status = HookStatus.INACTIVE  # as Keap does after four failed deliveries

    report = await ensure_hooks(keap, url, ALL_KEYS)

    assert report.reverified == ["company.edit"]
    assert report.removed == ["contact.edit"]
    keys = {hook.key: hook for hook in await keap.list_hooks()}
    assert stale.key not in keys and someone_elses.key in keys
    assert keys[inactive.key].status == "Verified"


async def test_hooks_of_ours_on_another_address_are_deleted_and_no_one_elses(
    served: Served, keap: KeapConnector, keap_emulator: KeapEmulator
) -> None:
    url = ours(served)
    await ensure_hooks(keap, url, ALL_KEYS)
    old_address = [await keap.create_hook(key, hook_url("http://127.0.0.1:9", "an-old-token"))
                   for key in ("contact.add", "company.edit")]
    behind_a_proxy = await keap.create_hook("product.add", hook_url("http://127.0.0.1:9/behind/a/proxy", HOOK_TOKEN))
    not_ours = [await keap.create_hook("contact.add", other) for other in (
        "http://127.0.0.1:9/elsewhere", "http://127.0.0.1:9/hooks/keap", "http://127.0.0.1:9/hooks/keap/a/b",
        "http://127.0.0.1:9/hooks/keapish/abc")]  # no DNS: nothing listens there
    keap_emulator.requests.clear()

    report = await ensure_hooks(keap, url, ALL_KEYS)

    assert sorted(report.removed) == ["company.edit", "contact.add", "product.add"]
    assert report.verified == ALL_KEYS and report.created == []
    left = {hook.key: hook for hook in await keap.list_hooks()}
    assert not {hook.key for hook in [*old_address, behind_a_proxy]} & left.keys()
    assert {hook.key for hook in not_ours} <= left.keys()
    assert {hook.hook_url for hook in left.values() if is_ours(hook.hook_url)} == {url}
    assert dict(keap_emulator.requests) == {"GET /crm/rest/v1/hooks": 2, "DELETE /crm/rest/v1/hooks/{key}": 3}


def test_a_hook_is_ours_by_its_path_whatever_its_address() -> None:
    assert is_ours("https://sync.example.com/hooks/keap/tok") and is_ours("http://10.0.0.1:8780/x/y/hooks/keap/tok/")
    assert not is_ours("https://sync.example.com/hooks/keap") and not is_ours("https://sync.example.com/hooks/keap/")
    assert not is_ours("https://sync.example.com/hooks/keap/tok/more") and not is_ours("https://a.example/hooks/keapx/t")
    assert not is_ours("not a url") and not is_ours("http://[::1")


async def test_hooks_keap_cannot_verify_cost_one_handshake_a_check_and_are_kept_not_replaced(
    served: Served, keap: KeapConnector, keap_emulator: KeapEmulator
) -> None:
    url = ours(served)
    unanswered = hook_url(served.url, "a-token-nobody-serves")
    first = await ensure_hooks(keap, unanswered, ALL_KEYS)
    assert (first.created, first.unverified) == ([], ALL_KEYS)  # the first handshake failed: no point in eight more
    (old,) = keap_emulator.hooks.hooks.values()
    assert old.status is HookStatus.UNVERIFIED
    keap_emulator.requests.clear()

    report = await ensure_hooks(keap, unanswered, ALL_KEYS)

    assert (report.reverified, report.created, report.unverified) == ([], [], ALL_KEYS)
    assert dict(keap_emulator.requests) == {"GET /crm/rest/v1/hooks": 1, "POST /crm/rest/v1/hooks/{key}/verify": 1}
    (kept,) = await keap.list_hooks()
    assert (kept.key, kept.status) == (old.key, "Unverified")


async def test_deliveries_mark_keap_ids_dirty_and_deletes_removed(
    served: Served, keap: KeapConnector
) -> None:
    url = ours(served)
    await ensure_hooks(keap, url, ALL_KEYS)
    company = await keap.create(COMPANIES, keap_support.company(1))
    contact = await keap.create(CONTACTS, keap_support.contact(1))
    assert await keap.delete(CONTACTS, contact["id"])
    wait_for(lambda: served.metrics.webhook_deliveries.labels("keap", "accepted")._value.get() >= 3)
    batch = served.queue.take()
    assert batch.ids("companies", "keap") == [company["id"]]
    assert batch.ids("contacts", "keap", removed=True) == [contact["id"]]


def test_a_wrong_token_gets_404_and_marks_nothing(served: Served) -> None:
    payload = {"event_key": "company.edit", "object_type": "company", "object_keys": [{"id": 1}]}
    wrong = httpx.post(hook_url(served.url, "guess"), json=payload)
    handshake = httpx.post(hook_url(served.url, "guess"), headers={"X-Hook-Secret": "s"})
    assert (wrong.status_code, handshake.status_code) == (404, 404)
    assert "X-Hook-Secret" not in handshake.headers
    assert served.queue.pending() == 0


def test_handshake_echoes_the_secret(served: Served) -> None:
    answer = httpx.post(hook_url(served.url, HOOK_TOKEN), headers={"X-Hook-Secret": "abc123"})
    assert (answer.status_code, answer.headers["X-Hook-Secret"]) == (200, "abc123")
    assert served.queue.pending() == 0


def test_malformed_and_foreign_payloads(served: Served) -> None:
    url = hook_url(served.url, HOOK_TOKEN)
    malformed = httpx.post(url, content=b"not json")
    foreign = httpx.post(url, json={"event_key": "invoice.add", "object_type": "invoice", "object_keys": [{"id": 1}]})
    assert (malformed.status_code, foreign.status_code, foreign.json()["result"]) == (400, 200, "ignored")
    assert served.queue.pending() == 0


def test_a_hook_on_an_object_two_flows_sync_reaches_both() -> None:
    flows = {**CATALOGUE, "company_contacts": replace(CATALOGUE["contacts"], name="company_contacts")}
    queue = DirtyQueue()
    receiver = KeapHookReceiver(HOOK_TOKEN, queue, Metrics(), flows)
    app = Starlette(routes=[Route(f"{RECEIVER_PATH}/{{token}}", receiver.handle, methods=["POST"])])

    answer = TestClient(app).post(f"{RECEIVER_PATH}/{HOOK_TOKEN}", json={"event_key": "contact.edit", "object_keys": [{"id": 7}]})

    assert answer.status_code == 200
    batch = queue.take()
    assert sorted(batch.flows()) == ["company_contacts", "contacts"]
    assert batch.ids("contacts", "keap") == batch.ids("company_contacts", "keap") == ["7"]
    assert event_keys(flows.values()) == ALL_KEYS  # the hooks are registered once per object
