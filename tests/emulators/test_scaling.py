"""Seeding and listing at scale: 20,000 records a resource, seeded over `/_emulator/seed` and listed page by page
over HTTP the way the connectors do. The tables count their full passes over the records (a pass is what a
scan, a filter or a sort costs), so the test asserts on counts, not time: seeding makes none, and a whole
listing makes one, however many pages it takes; a write between pages makes the next page rebuild.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.emulators.table import Table
from tests.support import API_KEY

N = 20_000
LONG_AGO = "2000-01-01T00:00:00.000Z"


def seed(url: str, payload: dict[str, Any]) -> None:
    answer = httpx.post(f"{url}/_emulator/seed", json=payload, timeout=300).json()
    assert answer["errors"] == []


def passes(tables: dict[str, Table]) -> dict[str, int]:
    return {name: table.passes for name, table in tables.items()}


@pytest.fixture(scope="module")
def invoiced() -> Iterator[tuple[InvoicedEmulator, httpx.Client]]:
    emulator = InvoicedEmulator(api_key=API_KEY)
    emulator.faults.rate_limit = None
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url, auth=(API_KEY, "")) as client:
        seed(server.url, {
            "customers": [{"name": f"Customer {n}", "email": f"c{n}@example.com"} for n in range(N)],
            "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n % 500} for n in range(N)],
        })
        yield emulator, client


@pytest.fixture(scope="module")
def keap() -> Iterator[tuple[KeapEmulator, httpx.Client]]:
    emulator = KeapEmulator(api_key=API_KEY)
    emulator.faults.rate_limit = None
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(
        base_url=f"{server.url}/crm/rest/v2", headers={"X-Keap-API-Key": API_KEY}
    ) as client:
        seed(server.url, {
            "companies": [{"company_name": f"Company {n}"} for n in range(N)],
            "contacts": [{"given_name": f"Given{n}", "email_addresses": [{"email": f"g{n}@example.com", "field": "EMAIL1"}]}
                         for n in range(N)],
            "products": [{"name": f"Product {n}", "price": 100 + n, "short_description": "x"} for n in range(N)],
        })
        yield emulator, client


def invoiced_pages(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[list[Any], int]:
    """Every record's id and the number of pages, following `rel="next"` as the official client does."""
    ids: list[Any] = []
    url: str | None = path
    query: dict[str, Any] | None = {**params, "per_page": 100}
    pages = 0
    while url is not None:
        response = client.get(url, params=query)
        pages += 1
        ids += [record["id"] for record in response.json()]
        links = {rel: link for link, rel in (part.split("; ") for part in response.headers["link"].split(", "))}
        url, query = (links['rel="next"'].strip("<>"), None) if 'rel="next"' in links else (None, None)
    return ids, pages


def keap_pages(client: httpx.Client, collection: str, params: dict[str, Any]) -> tuple[list[str], int]:
    ids: list[str] = []
    token, pages = None, 0
    while pages == 0 or token:
        body = client.get(f"/{collection}", params={**params, "page_size": 1000, **({"page_token": token} if token else {})}).json()
        pages += 1
        ids += [record["id"] for record in body[collection]]
        token = body["next_page_token"]
    return ids, pages


def test_invoiced_seeding_makes_no_pass_and_each_listing_one(invoiced: tuple[InvoicedEmulator, httpx.Client]) -> None:
    emulator, client = invoiced
    tables = {name: emulator.account.tables[name] for name in ("customers", "items", "events")}
    assert passes(tables) == {"customers": 0, "items": 0, "events": 0}
    listings = [  # the connectors' queries
        ("customers", "/customers", {"sort": "id asc"}),
        ("customers", "/customers", {"sort": "updated_at asc,id asc", "updated_after": 0}),
        ("items", "/items", {"sort": "updated_at desc,id desc"}),
        ("events", "/events", {"filter[type]": "customer.created"}),
    ]
    for table, path, params in listings:
        before = tables[table].passes
        ids, pages = invoiced_pages(client, path, params)
        assert len(set(ids)) == len(ids) == N and pages == N // 100
        assert tables[table].passes == before + 1, (path, params)


def test_invoiced_pages_stay_live_after_a_write(invoiced: tuple[InvoicedEmulator, httpx.Client]) -> None:
    emulator, client = invoiced
    table = emulator.account.tables["customers"]
    query = {"sort": "updated_at asc,id asc", "per_page": 100}
    client.get("/customers", params={**query, "page": 1})
    before = table.passes
    client.get("/customers", params={**query, "page": 2})
    assert table.passes == before
    emulator.update_customer(1, {"name": "Renamed"})
    last_page = client.get("/customers", params={**query, "page": N // 100}).json()
    assert table.passes == before + 1
    assert last_page[-1]["name"] == "Renamed"  # updated last, so listed last


def test_keap_seeding_makes_no_pass_and_each_listing_one(keap: tuple[KeapEmulator, httpx.Client]) -> None:
    emulator, client = keap
    tables = emulator.store.collections
    assert passes(tables) == {"companies": 0, "contacts": 0, "products": 0}
    listings = [  # the connectors' queries
        ("companies", {"filter": f"since_time=={LONG_AGO}", "order_by": "id"}),
        ("contacts", {"filter": f"start_update_time=={LONG_AGO}", "order_by": "id"}),
        ("products", {"order_by": "last_updated_time desc"}),
    ]
    for collection, params in listings:
        before = tables[collection].passes
        ids, pages = keap_pages(client, collection, params)
        assert len(set(ids)) == len(ids) == N and pages == N // 1000
        assert tables[collection].passes == before + 1, (collection, params)
