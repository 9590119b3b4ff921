"""Events (customer created/updated/deleted/merged) and Idempotency-Key replay, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import ManualClock




@pytest.fixture
def emulator(manual_clock: ManualClock) -> InvoicedEmulator:
    return InvoicedEmulator(api_key="test", random_seed=1, clock=manual_clock)


@pytest.fixture
def api(emulator: InvoicedEmulator) -> Iterator[httpx.Client]:
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url, auth=("test", "")) as client:
        yield client


def event_types(api: httpx.Client, **params: object) -> list[str]:
    return [event["type"] for event in api.get("/events", params=params).json()]


def test_customer_events_newest_first_and_none_for_a_no_op(api: httpx.Client, manual_clock: ManualClock) -> None:
    customer = api.post("/customers", json={"name": "Acme", "metadata": {"a": "1"}}).json()
    manual_clock.advance(5)
    api.patch(f"/customers/{customer['id']}", json={"name": "Acme Ltd", "metadata": {"b": "2"}})
    api.patch(f"/customers/{customer['id']}", json={"name": "Acme Ltd", "metadata": {"b": "2"}})  # no-op
    api.delete(f"/customers/{customer['id']}")
    events = api.get("/events").json()
    assert [e["type"] for e in events] == ["customer.deleted", "customer.updated", "customer.created"]
    deleted, updated, created = events
    assert set(created) == {"id", "object", "type", "timestamp", "data"} and "previous" not in created["data"]
    assert updated["data"]["previous"] == {"name": "Acme", "metadata": {"a": "1"}}
    assert updated["data"]["object"]["name"] == "Acme Ltd"
    assert updated["timestamp"] == created["timestamp"] + 5
    assert deleted["data"]["object"]["name"] == "Acme Ltd"  # the snapshot taken before deletion
    assert api.get(f"/events/{created['id']}").json() == created


def test_merge_emits_merged_and_no_deleted(api: httpx.Client) -> None:
    survivor = api.post("/customers", json={"name": "Keep"}).json()
    merged = api.post("/customers", json={"name": "Duplicate"}).json()
    answer = api.post(f"/customers/{survivor['id']}/merge", json={"customer": merged["id"]})
    assert answer.status_code == 204
    assert api.get(f"/customers/{merged['id']}").status_code == 404
    assert event_types(api) == ["customer.merged", "customer.created", "customer.created"]
    merge_event = api.get("/events").json()[0]
    assert merge_event["data"]["object"]["id"] == survivor["id"]
    assert merge_event["data"]["object"]["original_customer"]["id"] == merged["id"]
    # the merged customer's history now belongs to the survivor
    assert len(api.get("/events", params={"related_to": f"customer,{survivor['id']}"}).json()) == 3
    unknown = api.post(f"/customers/{survivor['id']}/merge", json={"customer": 999})
    assert unknown.json() == {"type": "invalid_request", "message": "No such customer: 999"}


def test_merge_hook_for_python_callers(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    survivor = api.post("/customers", json={"name": "Keep"}).json()
    merged = api.post("/customers", json={"name": "Dup"}).json()
    emulator.merge_customers(survivor["id"], merged["id"])
    assert list(emulator.customers) == [survivor["id"]]
    assert event_types(api, **{"filter[type]": "customer.merged"}) == ["customer.merged"]


def test_event_filters(api: httpx.Client, manual_clock: ManualClock) -> None:
    first = api.post("/customers", json={"name": "One"}).json()
    manual_clock.advance(100)
    second = api.post("/customers", json={"name": "Two"}).json()
    api.patch(f"/customers/{first['id']}", json={"name": "One!"})
    assert event_types(api, **{"filter[type]": "customer.created"}) == ["customer.created", "customer.created"]
    assert event_types(api, related_to=f"customer,{first['id']}") == ["customer.updated", "customer.created"]
    assert event_types(api, type="customer") == ["customer.updated", "customer.created", "customer.created"]
    assert event_types(api, type="invoice") == []
    start = int(manual_clock.now)
    assert event_types(api, start_date=start) == ["customer.updated", "customer.created"]
    assert event_types(api, end_date=start - 100) == ["customer.created"]
    assert event_types(api, start_date=start, end_date=start) == ["customer.updated", "customer.created"]
    assert [e["id"] for e in api.get("/events", params={"sort": "id asc"}).json()] == [1, 2, 3]
    assert api.get("/events", params={"filter[user]": "x"}).status_code == 400
    assert second["id"] != first["id"]


def test_idempotency_key_replays_the_first_response(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    headers = {"Idempotency-Key": "create-acme-1"}
    first = api.post("/customers", json={"name": "Acme"}, headers=headers)
    replay = api.post("/customers", json={"name": "Something else"}, headers=headers)
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert len(emulator.customers) == 1
    failed = api.post("/customers", json={}, headers={"Idempotency-Key": "bad-body-1"})
    fixed = api.post("/customers", json={"name": "Now valid"}, headers={"Idempotency-Key": "bad-body-1"})
    assert fixed.status_code == 400 and fixed.json() == failed.json()  # errors are cached too


def test_idempotency_key_expires_after_24_hours(api: httpx.Client, manual_clock: ManualClock) -> None:
    headers = {"Idempotency-Key": "expiring-key"}
    api.post("/customers", json={"name": "One"}, headers=headers)
    manual_clock.advance(86_401)
    assert api.post("/customers", json={"name": "Two"}, headers=headers).json()["name"] == "Two"


@pytest.mark.parametrize(
    ("method", "key", "message"),
    [
        ("POST", "short", "Idempotency key is too short. Must be at least 6 characters long."),
        ("POST", "k" * 65, "Idempotency key is too long. Must be no longer than 64 characters."),
        ("GET", "long-enough", "Unsupported method: GET. Idempotency keys can only be used with POST and PATCH requests."),
    ],
)
def test_idempotency_key_errors(api: httpx.Client, method: str, key: str, message: str) -> None:
    response = api.request(method, "/customers", json={"name": "X"} if method == "POST" else None,
                           headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json() == {"type": "invalid_request", "message": message}
    assert api.post("/customers", json={"name": "X"}, headers={"Idempotency-Key": "k" * 64}).status_code == 201
