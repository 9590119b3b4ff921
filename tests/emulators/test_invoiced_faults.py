"""The in-flight request limit and the kit's control routes (stats, reset, faults, seed) on the Invoiced emulator."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.sample import INVOICED_SAMPLE
from invoiced_keap.emulators.serve import BackgroundServer

AUTH = ("test", "")


async def concurrent_gets(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(auth=AUTH, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(*(client.get(f"{url}/customers") for _ in range(count)))


def set_faults(url: str, **settings: object) -> dict:
    response = httpx.post(f"{url}/_emulator/faults", json=settings)
    assert response.status_code == 200
    return response.json()


async def test_429_past_max_in_flight(invoiced_server: BackgroundServer) -> None:
    set_faults(invoiced_server.url, latency_ms=400, rate_limit={"max_in_flight": 3})
    responses = await concurrent_gets(invoiced_server.url, 5)
    refused = [r for r in responses if r.status_code == 429]
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 429, 429]
    assert refused[0].json() == {
        "type": "rate_limit_error",
        "message": "Too many concurrent requests! You can only make 3 concurrent requests at a time.",
    }
    assert "retry-after" not in refused[0].headers
    stats = httpx.get(f"{invoiced_server.url}/_emulator/stats").json()
    assert stats["status"] == {"200": 3, "429": 2}


async def test_default_limit_is_20_and_null_lifts_it(invoiced_server: BackgroundServer) -> None:
    assert set_faults(invoiced_server.url, latency_ms=400)["rate_limit"] == {"max_in_flight": 20}
    responses = await concurrent_gets(invoiced_server.url, 22)
    assert sum(r.status_code == 429 for r in responses) == 2
    set_faults(invoiced_server.url, rate_limit=None)
    responses = await concurrent_gets(invoiced_server.url, 22)
    assert all(r.status_code == 200 for r in responses)


async def test_stats_say_the_most_requests_answered_at_once(invoiced_server: BackgroundServer) -> None:
    """`peak_in_flight` (and per kind of request), a test aid: overlapping requests (the latency fault holds each
    300 ms) count together, refused ones too; a reset starts it afresh, and requests one after another peak at one."""
    url = invoiced_server.url
    set_faults(url, latency_ms=300, rate_limit={"max_in_flight": 3})
    responses = await concurrent_gets(url, 4)
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 429]
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert (stats["peak_in_flight"], stats["peak_in_flight_by_request"]) == (4, {"GET /customers": 4})
    httpx.post(f"{url}/_emulator/reset").raise_for_status()
    for _ in range(2):
        httpx.get(f"{url}/customers", auth=AUTH).raise_for_status()
    httpx.get(f"{url}/items", auth=AUTH).raise_for_status()
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert (stats["peak_in_flight"], stats["peak_in_flight_by_request"]) == (1, {"GET /customers": 1, "GET /items": 1})


def test_stats_count_path_templates_and_reset_clears(invoiced_server: BackgroundServer) -> None:
    url = invoiced_server.url
    with httpx.Client(base_url=url, auth=AUTH) as api:
        customer = api.post("/customers", json={"name": "Counted"}).json()
        api.get(f"/customers/{customer['id']}")
        api.get("/customers/999")
        api.get("/customers", auth=("wrong-key", ""))
        stats = httpx.get(f"{url}/_emulator/stats").json()
        assert stats == {
            "total": 4,
            "requests": {"POST /customers": 1, "GET /customers/{id}": 2, "GET /customers": 1},
            "status": {"201": 1, "200": 1, "404": 1, "401": 1},
            "peak_in_flight": 1,  # one request after the other
            "peak_in_flight_by_request": {"POST /customers": 1, "GET /customers/{id}": 1, "GET /customers": 1},
        }
        assert httpx.post(f"{url}/_emulator/reset").json() == {"ok": True}
        assert httpx.get(f"{url}/_emulator/stats").json() == {"total": 0, "requests": {}, "status": {}, "peak_in_flight": 0,
                                                                 "peak_in_flight_by_request": {}}
        assert api.get("/customers").json() == []
        assert api.post("/customers", json={"name": "Fresh"}).json()["id"] == 1


@pytest.mark.parametrize(("status", "error_type"), [(503, "api_error"), (429, "rate_limit_error"), (404, "invalid_request")])
def test_injected_errors_use_invoiced_bodies(invoiced_server: BackgroundServer, status: int, error_type: str) -> None:
    set_faults(invoiced_server.url, error_rate=1.0, error_status=status)
    response = httpx.get(f"{invoiced_server.url}/customers", auth=AUTH)
    assert response.status_code == status
    assert response.json()["type"] == error_type


def test_error_rate_is_a_fraction(invoiced_server: BackgroundServer) -> None:
    set_faults(invoiced_server.url, error_rate=0.5)
    with httpx.Client(base_url=invoiced_server.url, auth=AUTH) as api:
        statuses = [api.get("/customers").status_code for _ in range(40)]
    assert 5 < statuses.count(503) < 35 and statuses.count(200) == 40 - statuses.count(503)


def test_latency_slows_api_requests_only(invoiced_server: BackgroundServer) -> None:
    set_faults(invoiced_server.url, latency_ms=200)
    started = time.monotonic()
    httpx.get(f"{invoiced_server.url}/customers", auth=AUTH)
    assert time.monotonic() - started >= 0.2  # a lower bound: load only adds to it
    set_faults(invoiced_server.url, latency_ms=600_000)  # ten minutes: a control route that waited would time out
    assert httpx.get(f"{invoiced_server.url}/_emulator/stats", timeout=60).status_code == 200


def test_drop_closes_the_connection(invoiced_server: BackgroundServer) -> None:
    set_faults(invoiced_server.url, drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{invoiced_server.url}/customers", auth=AUTH)
    assert httpx.get(f"{invoiced_server.url}/_emulator/stats").json()["status"] == {"dropped": 1}


def test_seed_validates_like_the_api(invoiced_server: BackgroundServer, invoiced_emulator: InvoicedEmulator) -> None:
    payload = {
        "customers": [{"name": "Seeded", "country": "fr"}, {"email": "nameless@example.com"}],
        "items": [{"id": "seed-item", "name": "Seed"}, {"id": "!", "name": "Bad id"}],
    }
    answer = httpx.post(f"{invoiced_server.url}/_emulator/seed", json=payload).json()
    assert answer == {
        "customers": [1],
        "contacts": [],
        "items": ["seed-item"],
        "errors": [
            {"collection": "customers", "index": 1, "message": "Name is missing", "param": "name"},
            {"collection": "items", "index": 1, "message": "ID is invalid", "param": "id"},
        ],
    }
    assert invoiced_emulator.customers[1]["country"] == "FR"
    assert [event["type"] for event in invoiced_emulator.events] == ["customer.created"]


def test_python_seed_without_a_server() -> None:
    emulator = InvoicedEmulator()
    answer = emulator.seed(INVOICED_SAMPLE)
    assert answer["errors"] == []
    assert len(emulator.customers) == len(INVOICED_SAMPLE["customers"])
    assert len(emulator.items) == len(INVOICED_SAMPLE["items"])
