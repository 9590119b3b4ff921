"""The Invoiced receiver over real HTTP: deliveries from the emulator mark customers dirty; forgeries change nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.logs import JsonFormatter
from invoiced_keap.server.app import INVOICED_WEBHOOK_PATH
from invoiced_keap.server.debounce import DirtyKey
from invoiced_keap.server.invoiced_webhooks import expected_signature, signature_is_valid

from tests.server.conftest import Served, wait_for
from tests.support import API_KEY


@pytest.fixture
def invoiced_emulator() -> InvoicedEmulator:
    return InvoicedEmulator(api_key=API_KEY, random_seed=1, webhook_retry_delays=(0.05,))


@pytest.fixture
def invoiced(invoiced_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=invoiced_server.url, auth=(API_KEY, "")) as client:
        yield client


@pytest.fixture
def webhook(invoiced: httpx.Client) -> dict[str, object]:
    """Set up as a user would: create the webhook, copy its secret into our settings, then point it at us."""
    return invoiced.post("/webhooks", json={"url": "http://127.0.0.1:9/not-yet"}).json()


@pytest.fixture
def invoiced_webhook_secret(webhook: dict[str, object]) -> str:
    return str(webhook["secret"])


@pytest.fixture
def hooked(served: Served, invoiced: httpx.Client, webhook: dict[str, object]) -> Served:
    invoiced.patch(f"/webhooks/{webhook['id']}", json={"url": served.url + INVOICED_WEBHOOK_PATH})
    return served


def delivered(emulator: InvoicedEmulator, count: int) -> None:
    wait_for(lambda: sum(delivery.succeeded for delivery in emulator.deliveries) >= count)


def deliveries(served: Served, outcome: str) -> float:
    return served.metrics.webhook_deliveries.labels("invoiced", outcome)._value.get()


def test_signature_matches_invoiced_reference_vector() -> None:
    secret, body = "4b37d5776dad4059ab4c80fa072e3fce", b'{"test":true}'
    reference = "341cb5ca9555e923c908c2eb5d36189ea11d90c0dfd559377c5edb669f9cf240"
    assert expected_signature(secret, body) == reference
    assert signature_is_valid(secret, body, reference)
    assert not signature_is_valid(secret, body + b" ", reference)
    assert not signature_is_valid(secret, body, None)
    assert not signature_is_valid("", body, expected_signature("", body))


def test_customer_edits_mark_the_customer_dirty_in_the_flow_of_its_type(
    hooked: Served, invoiced: httpx.Client, invoiced_emulator: InvoicedEmulator
) -> None:
    company = invoiced.post("/customers", json={"name": "Acme", "type": "company"}).json()
    person = invoiced.post("/customers", json={"name": "Ada Lovelace", "type": "person"}).json()
    invoiced.patch(f"/customers/{company['id']}", json={"name": "Acme Ltd"})
    delivered(invoiced_emulator, 3)
    batch = hooked.queue.take()
    assert set(batch.marks) == {
        DirtyKey("companies", "invoiced", str(company["id"])),
        DirtyKey("contacts", "invoiced", str(person["id"])),
    }
    assert deliveries(hooked, "accepted") == 3


def test_deletes_and_merges_are_marked_removed(
    hooked: Served, invoiced: httpx.Client, invoiced_emulator: InvoicedEmulator
) -> None:
    kept = invoiced.post("/customers", json={"name": "Kept"}).json()
    merged = invoiced.post("/customers", json={"name": "Merged"}).json()
    gone = invoiced.post("/customers", json={"name": "Gone"}).json()
    delivered(invoiced_emulator, 3)
    hooked.queue.take()
    invoiced.delete(f"/customers/{gone['id']}")
    invoiced_emulator.merge_customers(kept["id"], merged["id"])
    wait_for(lambda: hooked.queue.pending() == 3)
    batch = hooked.queue.take()
    assert batch.ids("companies", "invoiced", removed=True) == sorted([str(gone["id"]), str(merged["id"])])
    assert batch.ids("companies", "invoiced") == [str(kept["id"])]


def test_forged_or_unsigned_deliveries_are_rejected_and_change_nothing(hooked: Served, webhook: dict[str, object],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    event = {"id": 99, "type": "customer.updated", "data": {"object": {"id": 5, "name": "Evil"}}}
    body = json.dumps(event).encode()
    url = hooked.url + INVOICED_WEBHOOK_PATH
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    forged = httpx.post(url, content=body, headers={"X-Invoiced-Signature": expected_signature("guessed", body)})
    tampered = httpx.post(
        url,
        content=body.replace(b"Evil", b"Eve!"),
        headers={"X-Invoiced-Signature": expected_signature(str(webhook["secret"]), body)},
    )
    assert [unsigned.status_code, forged.status_code, tampered.status_code] == [401, 401, 401]
    assert hooked.queue.pending() == 0
    assert deliveries(hooked, "rejected") == 3
    assert deliveries(hooked, "accepted") == 0
    logged = [json.loads(JsonFormatter().format(record)) for record in caplog.records if record.getMessage() == "webhook"]
    assert [(line["outcome"], line["reason"]) for line in logged] == [("rejected", "invalid signature")] * 3  # said why


def test_a_repeated_event_is_answered_but_handled_once(hooked: Served, webhook: dict[str, object]) -> None:
    body = json.dumps({"id": 7, "type": "customer.updated", "data": {"object": {"id": 3, "type": "company"}}}).encode()
    headers = {"X-Invoiced-Signature": expected_signature(str(webhook["secret"]), body)}
    answers = [httpx.post(hooked.url + INVOICED_WEBHOOK_PATH, content=body, headers=headers) for _ in range(2)]
    assert [answer.json()["result"] for answer in answers] == ["accepted", "duplicate"]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert hooked.queue.pending() == 1


def test_events_outside_the_flows_are_acknowledged_and_ignored(hooked: Served, webhook: dict[str, object]) -> None:
    body = json.dumps({"id": 8, "type": "invoice.created", "data": {"object": {"id": 1}}}).encode()
    headers = {"X-Invoiced-Signature": expected_signature(str(webhook["secret"]), body)}
    answer = httpx.post(hooked.url + INVOICED_WEBHOOK_PATH, content=body, headers=headers)
    assert (answer.status_code, answer.json()["result"], hooked.queue.pending()) == (200, "ignored", 0)
