"""`/_emulator/clock` on both emulators: a test (or a person trying the sync) moves an emulator's time forward over
HTTP, as `advance_clock` does in-process: due dates pass in Invoiced, Keap's daily quota starts afresh (issue 15: a
tester had no way to let an invoice fall due)."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY

DAY = 86_400


def advance(url: str, seconds: object) -> httpx.Response:
    return httpx.post(f"{url}/_emulator/clock", json={"advance_seconds": seconds})


def test_invoiced_clock_moves_over_http_and_an_invoice_falls_due() -> None:
    emulator = InvoicedEmulator(api_key=API_KEY)  # the wall clock
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url, auth=(API_KEY, "")) as api:
        customer = api.post("/customers", json={"name": "Acme"}).json()
        invoice = api.post("/invoices", json={"customer": customer["id"], "items": [{"unit_cost": 5}],
                                              "due_date": customer["created_at"] + DAY}).json()
        assert invoice["status"] == "not_sent"
        before = httpx.get(f"{server.url}/_emulator/clock").json()["now"]

        moved = advance(server.url, 2 * DAY)

        assert moved.status_code == 200 and moved.json()["now"] >= before + 2 * DAY
        assert api.get(f"/invoices/{invoice['id']}").json()["status"] == "past_due"
        balance = api.get(f"/customers/{customer['id']}/balance").json()
        assert balance["past_due"] is True
        assert api.post("/customers", json={"name": "Later"}).json()["created_at"] >= customer["created_at"] + 2 * DAY
        assert emulator.requests == {"POST /customers": 2, "POST /invoices": 1, "GET /invoices/{id}": 1,
                                     "GET /customers/{id}/balance": 1}  # control calls are not counted


def test_keap_clock_moves_over_http_and_a_spent_day_starts_afresh() -> None:
    emulator = KeapEmulator(api_key=API_KEY)
    emulator.faults.update({"rate_limit": {"per_day": 1}})
    with BackgroundServer(emulator.asgi()) as server, \
            httpx.Client(base_url=f"{server.url}/crm/rest", headers={"X-Keap-API-Key": API_KEY}) as keap:
        made_at = emulator.clock()
        made = keap.post("/v2/tags", json={"name": "Invoiced: past due"})
        assert made.status_code == 201
        assert keap.get("/v2/tags").status_code == 429  # the day's one call is spent

        assert advance(server.url, DAY).status_code == 200

        listed = keap.get("/v2/tags")
        assert listed.status_code == 200 and listed.headers["x-keap-product-quota-used"] == "1"
        emulator.faults.update({"rate_limit": None})
        later = keap.post("/v2/companies", json={"company_name": "Later"}).json()
        assert datetime.fromisoformat(later["create_time"]).timestamp() >= made_at + DAY


@pytest.mark.parametrize("body", [{"advance_seconds": -1}, {"advance_seconds": True}, {"advance_seconds": "1d"},
                                  {"seconds": 5}, {}, [5]])
def test_a_clock_moved_back_or_by_nonsense_is_refused_naming_the_setting(body: object) -> None:
    emulator = KeapEmulator(api_key=API_KEY)
    with BackgroundServer(emulator.asgi()) as server:
        before = emulator.clock()
        response = httpx.post(f"{server.url}/_emulator/clock", json=body)
        assert response.status_code == 400
        assert "advance_seconds" in response.json()["error"] or "seconds" in response.json()["error"]
        assert emulator.adjustable_clock.offset == 0 and emulator.clock() >= before
