"""Events (customer created/updated/deleted/merged) and Idempotency-Key replay, over HTTP."""

from __future__ import annotations


import asyncio
import base64
import json
import socket
import time

import httpx
import pytest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.invoiced.gate import Idempotency
from tests.support import API_KEY, ManualClock



def event_types(invoiced_api: httpx.Client, **params: object) -> list[str]:
    return [event["type"] for event in invoiced_api.get("/events", params=params).json()]


def test_customer_events_newest_first_and_none_for_a_no_op(invoiced_api: httpx.Client, manual_clock: ManualClock) -> None:
    customer = invoiced_api.post("/customers", json={"name": "Acme", "metadata": {"a": "1"}}).json()
    manual_clock.advance(5)
    invoiced_api.patch(f"/customers/{customer['id']}", json={"name": "Acme Ltd", "metadata": {"b": "2"}})
    invoiced_api.patch(f"/customers/{customer['id']}", json={"name": "Acme Ltd", "metadata": {"b": "2"}})  # no-op
    invoiced_api.delete(f"/customers/{customer['id']}")
    events = invoiced_api.get("/events").json()
    assert [e["type"] for e in events] == ["customer.deleted", "customer.updated", "customer.created"]
    deleted, updated, created = events
    assert set(created) == {"id", "object", "type", "timestamp", "data"} and "previous" not in created["data"]
    assert updated["data"]["previous"] == {"name": "Acme", "metadata": {"a": "1"}}
    assert updated["data"]["object"]["name"] == "Acme Ltd"
    assert updated["timestamp"] == created["timestamp"] + 5
    assert deleted["data"]["object"]["name"] == "Acme Ltd"  # the snapshot taken before deletion
    assert invoiced_api.get(f"/events/{created['id']}").json() == created


def test_merge_emits_merged_and_no_deleted(invoiced_api: httpx.Client) -> None:
    survivor = invoiced_api.post("/customers", json={"name": "Keep"}).json()
    merged = invoiced_api.post("/customers", json={"name": "Duplicate"}).json()
    answer = invoiced_api.post(f"/customers/{survivor['id']}/merge", json={"customer": merged["id"]})
    assert answer.status_code == 204
    assert invoiced_api.get(f"/customers/{merged['id']}").status_code == 404
    assert event_types(invoiced_api) == ["customer.merged", "customer.created", "customer.created"]
    merge_event = invoiced_api.get("/events").json()[0]
    assert merge_event["data"]["object"]["id"] == survivor["id"]
    assert merge_event["data"]["object"]["original_customer"]["id"] == merged["id"]
    # the merged customer's history now belongs to the survivor
    assert len(invoiced_api.get("/events", params={"related_to": f"customer,{survivor['id']}"}).json()) == 3
    unknown = invoiced_api.post(f"/customers/{survivor['id']}/merge", json={"customer": 999})
    assert unknown.json() == {"type": "invalid_request", "message": "No such customer: 999"}


def test_merge_hook_for_python_callers(invoiced_api: httpx.Client, clocked_invoiced: InvoicedEmulator) -> None:
    survivor = invoiced_api.post("/customers", json={"name": "Keep"}).json()
    merged = invoiced_api.post("/customers", json={"name": "Dup"}).json()
    clocked_invoiced.merge_customers(survivor["id"], merged["id"])
    assert list(clocked_invoiced.customers) == [survivor["id"]]
    assert event_types(invoiced_api, **{"filter[type]": "customer.merged"}) == ["customer.merged"]


def test_event_filters(invoiced_api: httpx.Client, manual_clock: ManualClock) -> None:
    first = invoiced_api.post("/customers", json={"name": "One"}).json()
    manual_clock.advance(100)
    second = invoiced_api.post("/customers", json={"name": "Two"}).json()
    invoiced_api.patch(f"/customers/{first['id']}", json={"name": "One!"})
    assert event_types(invoiced_api, **{"filter[type]": "customer.created"}) == ["customer.created", "customer.created"]
    assert event_types(invoiced_api, related_to=f"customer,{first['id']}") == ["customer.updated", "customer.created"]
    assert event_types(invoiced_api, type="customer") == ["customer.updated", "customer.created", "customer.created"]
    assert event_types(invoiced_api, type="invoice") == []
    start = int(manual_clock.now)
    assert event_types(invoiced_api, start_date=start) == ["customer.updated", "customer.created"]
    assert event_types(invoiced_api, end_date=start - 100) == ["customer.created"]
    assert event_types(invoiced_api, start_date=start, end_date=start) == ["customer.updated", "customer.created"]
    assert [e["id"] for e in invoiced_api.get("/events", params={"sort": "id asc"}).json()] == [1, 2, 3]
    assert invoiced_api.get("/events", params={"filter[user]": "x"}).status_code == 400
    assert second["id"] != first["id"]


def test_idempotency_key_replays_the_first_response(invoiced_api: httpx.Client, clocked_invoiced: InvoicedEmulator) -> None:
    headers = {"Idempotency-Key": "create-acme-1"}
    first = invoiced_api.post("/customers", json={"name": "Acme"}, headers=headers)
    replay = invoiced_api.post("/customers", json={"name": "Something else"}, headers=headers)
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert len(clocked_invoiced.customers) == 1
    failed = invoiced_api.post("/customers", json={}, headers={"Idempotency-Key": "bad-body-1"})
    fixed = invoiced_api.post("/customers", json={"name": "Now valid"}, headers={"Idempotency-Key": "bad-body-1"})
    assert fixed.status_code == 400 and fixed.json() == failed.json()  # errors are cached too


def test_a_request_cut_off_before_its_answer_is_carried_out_by_its_retry(invoiced_api: httpx.Client,
                                                                        clocked_invoiced: InvoicedEmulator) -> None:
    """A client killed while its create waits (the latency fault) leaves no cached 500 under its key."""
    customer = invoiced_api.post("/customers", json={"name": "Acme", "type": "company"}).json()
    clocked_invoiced.faults.latency_ms = 300
    body = json.dumps({"name": "Ann Lee"}).encode()
    url = httpx.URL(str(invoiced_api.base_url))
    with socket.create_connection((url.host, url.port)) as killed:
        killed.sendall(f"POST /customers/{customer['id']}/contacts HTTP/1.1\r\nHost: {url.host}\r\n"
                       f"Authorization: Basic {base64.b64encode(f'{API_KEY}:'.encode()).decode()}\r\n"
                       f"Content-Type: application/json\r\nIdempotency-Key: cut-off-create\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while clocked_invoiced.in_flight == 0:
            time.sleep(0.01)
    while clocked_invoiced.in_flight:  # the cut-off request ends on the server
        time.sleep(0.01)
    clocked_invoiced.faults.latency_ms = 0

    retried = invoiced_api.post(f"/customers/{customer['id']}/contacts", json={"name": "Ann Lee"},
                                headers={"Idempotency-Key": "cut-off-create"})
    replayed = invoiced_api.post(f"/customers/{customer['id']}/contacts", json={"name": "Ann Lee"},
                                 headers={"Idempotency-Key": "cut-off-create"})

    assert retried.status_code == 201 and replayed.json() == retried.json()
    assert [contact["name"] for contact in invoiced_api.get(f"/customers/{customer['id']}/contacts").json()] == ["Ann Lee"]


def test_idempotency_key_expires_after_24_hours(invoiced_api: httpx.Client, manual_clock: ManualClock) -> None:
    headers = {"Idempotency-Key": "expiring-key"}
    invoiced_api.post("/customers", json={"name": "One"}, headers=headers)
    manual_clock.advance(86_401)
    assert invoiced_api.post("/customers", json={"name": "Two"}, headers=headers).json()["name"] == "Two"


@pytest.mark.parametrize(
    ("method", "key", "message"),
    [
        ("POST", "short", "Idempotency key is too short. Must be at least 6 characters long."),
        ("POST", "k" * 65, "Idempotency key is too long. Must be no longer than 64 characters."),
        ("GET", "long-enough", "Unsupported method: GET. Idempotency keys can only be used with POST and PATCH requests."),
    ],
)
def test_idempotency_key_errors(invoiced_api: httpx.Client, method: str, key: str, message: str) -> None:
    response = invoiced_api.request(method, "/customers", json={"name": "X"} if method == "POST" else None,
                           headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json() == {"type": "invalid_request", "message": message}
    assert invoiced_api.post("/customers", json={"name": "X"}, headers={"Idempotency-Key": "k" * 64}).status_code == 201


def idempotent_post(gate: Idempotency, app: ASGIApp, sent: list[Message]) -> None:
    scope = {"type": "http", "method": "POST", "path": "/customers", "headers": [(b"idempotency-key", b"expiring-key")]}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append({**message, "cached": "expiring-key" in gate.cache})

    asyncio.run(gate.wrap(app)(scope, receive, send))


def test_idempotency_window_runs_from_the_request_and_the_replay_is_ready_when_the_answer_is(
    manual_clock: ManualClock,
) -> None:
    """A slow create still expires 24 h after its request, and its client never sees the answer before the cache does."""
    gate = Idempotency(manual_clock)

    async def slow_create(scope: Scope, receive: Receive, send: Send) -> None:
        manual_clock.advance(100)
        await Response(b'{"name": "One"}', 201)(scope, receive, send)

    sent: list[Message] = []
    idempotent_post(gate, slow_create, sent)
    assert [message["cached"] for message in sent if message["type"] == "http.response.body"] == [True]

    manual_clock.advance(86_301)  # 86,401 s after the first request arrived
    replayed: list[Message] = []
    idempotent_post(gate, Response(b'{"name": "Two"}', 201), replayed)
    assert [message["body"] for message in replayed if message["type"] == "http.response.body"] == [b'{"name": "Two"}']
