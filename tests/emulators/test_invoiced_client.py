"""The official `invoiced` 3.0.0 client, unchanged, against the emulator over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import invoiced
import pytest
from invoiced import errors

from invoiced_keap.emulators.serve import BackgroundServer


@pytest.fixture
def client(invoiced_server: BackgroundServer) -> invoiced.Client:
    api = invoiced.Client("test")
    api.api_url = invoiced_server.url  # 3.0.0 takes no base URL argument; it reads this attribute
    return api


def test_customer_lifecycle(client: invoiced.Client) -> None:
    customer = client.Customer.create(name="Acme", email="billing@acme.example", country="gb", idempotency_key="k-123456")
    assert (customer.number, customer.country, customer.type) == ("CUST-0001", "GB", "company")

    fetched = client.Customer.retrieve(customer.id)
    fetched.name = "Acme Ltd"
    assert fetched.save() is True
    assert client.Customer.retrieve(customer.id).name == "Acme Ltd"

    assert fetched.delete() is True
    with pytest.raises(errors.InvalidRequestError) as missing:
        client.Customer.retrieve(customer.id)
    assert missing.value.status_code == 404
    assert missing.value.error["message"] == f"Customer was not found: {customer.id}"


def test_pagination_across_pages(client: invoiced.Client) -> None:
    created = [client.Customer.create(name=f"Customer {n}").id for n in range(7)]
    seen, page = [], 1
    while True:
        customers, listing = client.Customer.list(per_page=3, page=page)
        seen += [customer.id for customer in customers]
        assert listing.total_count == 7
        if "next" not in listing.links:
            break
        page += 1
    assert seen == created
    assert page == 3


def test_items_and_events(client: invoiced.Client) -> None:
    item = client.Item.create(id="delivery", name="Delivery", unit_cost=100)
    item.description = "Same day"
    item.save()
    assert client.Item.retrieve("delivery").description == "Same day"
    items, listing = client.Item.list()
    assert [i.id for i in items] == ["delivery"] and listing.total_count == 1
    assert item.delete() is True

    client.Customer.create(name="Evented")
    events, _ = client.Event.list()
    assert [event.type for event in events] == ["customer.created"]  # item changes make no events


def test_error_classes(client: invoiced.Client, invoiced_server: BackgroundServer) -> None:
    with pytest.raises(errors.InvalidRequestError) as invalid:
        client.Customer.create(email="no-name@example.com")
    assert invalid.value.error == {"type": "invalid_request", "message": "Name is missing", "param": "name"}

    wrong = invoiced.Client("not-the-key")
    wrong.api_url = invoiced_server.url
    with pytest.raises(errors.AuthenticationError):
        wrong.Customer.list()

    httpx.post(f"{invoiced_server.url}/_emulator/faults", json={"latency_ms": 300, "rate_limit": {"max_in_flight": 1}})
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(lambda _: _list_or_error(client), range(3)))
    assert sum(isinstance(outcome, errors.RateLimitError) for outcome in outcomes) == 2
    assert outcomes.count("ok") == 1


def _list_or_error(client: invoiced.Client) -> object:
    try:
        client.Customer.list()
    except errors.RateLimitError as exc:
        return exc
    return "ok"


def test_server_errors_map_to_api_error(client: invoiced.Client, invoiced_server: BackgroundServer) -> None:
    httpx.post(f"{invoiced_server.url}/_emulator/faults", json={"error_rate": 1.0, "error_status": 503})
    with pytest.raises(errors.ApiError) as failure:
        client.Customer.list()
    assert failure.value.status_code == 503 and failure.value.error["type"] == "api_error"
