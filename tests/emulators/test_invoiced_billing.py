"""Invoiced emulator: invoices, payments and the customer balance over HTTP, their events, and the clock."""

from __future__ import annotations

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock

DAY = 86400


def create(invoiced_api: httpx.Client, path: str, **body: object) -> dict:
    response = invoiced_api.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def event_types(invoiced_api: httpx.Client, **params: object) -> list[str]:
    return [event["type"] for event in invoiced_api.get("/events", params=params).json()]


@pytest.fixture
def customer(invoiced_api: httpx.Client) -> dict:
    return create(invoiced_api, "/customers", name="Acme", payment_terms="NET 30", currency="eur")


def invoice_for(invoiced_api: httpx.Client, customer: dict, **body: object) -> dict:
    lines = [{"name": "Copy paper", "quantity": 2, "unit_cost": 45}, {"name": "Delivery", "unit_cost": 10.25}]
    return create(invoiced_api, "/invoices", customer=customer["id"], **{"items": lines, **body})


# --- invoices -----------------------------------------------------------------------------------
def test_create_works_out_lines_totals_terms_and_status(invoiced_api: httpx.Client, customer: dict,
                                                        manual_clock: ManualClock) -> None:
    now = int(manual_clock.now)
    invoice = invoice_for(invoiced_api, customer, taxes=[{"amount": 3.5}], discounts=[{"amount": 1}])
    assert [(line["id"], line["object"], line["quantity"], line["amount"]) for line in invoice["items"]] == [
        (1, "line_item", 2, 90), (2, "line_item", 1, 10.25)]
    assert (invoice["subtotal"], invoice["total"], invoice["balance"]) == (100.25, 102.75, 102.75)
    assert (invoice["id"], invoice["object"], invoice["number"], invoice["name"]) == (1, "invoice", "INV-0001", "Invoice")
    assert (invoice["customer"], invoice["currency"], invoice["date"]) == (customer["id"], "eur", now)
    assert (invoice["payment_terms"], invoice["due_date"]) == ("NET 30", now + 30 * DAY)  # the customer's terms
    assert (invoice["draft"], invoice["closed"], invoice["paid"], invoice["status"]) == (False, False, False, "not_sent")
    assert invoiced_api.get("/invoices/1").json() == invoice
    own = invoice_for(invoiced_api, customer, due_date=now + 5, currency="USD", number="X-1", draft=True)
    assert (own["payment_terms"], own["due_date"], own["currency"], own["number"], own["status"]) == (
        None, now + 5, "usd", "X-1", "draft")
    free = create(invoiced_api, "/invoices", customer=customer["id"], items=[{"name": "Free", "unit_cost": 0}])
    assert (free["paid"], free["closed"], free["status"]) == (True, True, "paid")  # nothing to pay: paid on creation


def test_a_line_can_take_a_catalog_item(invoiced_api: httpx.Client, customer: dict) -> None:
    create(invoiced_api, "/items", id="delivery", name="Delivery", unit_cost=10, type="service")
    invoice = invoice_for(invoiced_api, customer, items=[{"catalog_item": "delivery", "quantity": 3}])
    line = invoice["items"][0]
    assert (line["catalog_item"], line["name"], line["type"], line["unit_cost"], line["amount"]) == (
        "delivery", "Delivery", "service", 10, 30)
    unknown = invoiced_api.post("/invoices", json={"customer": customer["id"], "items": [{"catalog_item": "nope"}]})
    assert (unknown.status_code, unknown.json()["param"]) == (400, "items")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, {"type": "invalid_request", "message": "Customer missing", "param": "customer"}),
        ({"customer": 999}, {"type": "invalid_request", "message": "No such customer: 999", "param": "customer"}),
        ({"customer": 1, "items": "lots"}, {"type": "invalid_request", "message": "Items is invalid", "param": "items"}),
        ({"customer": 1, "items": [{"name": "X", "unit_cost": "ten"}]},
         {"type": "invalid_request", "message": "Unit Cost only allows numbers", "param": "items"}),
        ({"customer": 1, "items": [{"unit_cost": 5}], "discounts": [{"amount": 6}]},
         {"type": "invalid_request", "message": "Total is invalid", "param": "total"}),
        ({"customer": 1, "currency": "zzz"}, {"type": "invalid_request", "message": "Invalid currency code: zzz",
                                              "param": "currency"}),
        ({"customer": 1, "due_date": "tomorrow"},
         {"type": "invalid_request", "message": "Due Date only allows timestamps", "param": "due_date"}),
        ({"customer": 1, "balance": 0},
         {"type": "invalid_request", "message": "Mass assignment of balance on Invoice is not allowed"}),
    ],
)
def test_create_refuses_invalid_bodies(invoiced_api: httpx.Client, customer: dict, body: dict, error: dict) -> None:
    response = invoiced_api.post("/invoices", json=body)
    assert (response.status_code, response.json()) == (400, error)
    assert invoiced_api.get("/invoices").headers["x-total-count"] == "0"


def test_inactive_and_held_customers_get_no_invoices(invoiced_api: httpx.Client) -> None:
    inactive = create(invoiced_api, "/customers", name="Gone", active=False)
    held = create(invoiced_api, "/customers", name="Held", credit_hold=True)
    assert invoiced_api.post("/invoices", json={"customer": inactive["id"]}).json()["message"] == (
        "This cannot be created because the customer is inactive")
    assert invoiced_api.post("/invoices", json={"customer": held["id"]}).json() == {
        "type": "invalid_request", "param": "total",
        "message": "New invoices cannot be created for this account because it has a credit hold."}


def test_numbers_are_unique(invoiced_api: httpx.Client, customer: dict) -> None:
    invoice_for(invoiced_api, customer, number="INV-0002")
    assert invoice_for(invoiced_api, customer)["number"] == "INV-0001"
    assert invoice_for(invoiced_api, customer)["number"] == "INV-0003"  # INV-0002 is taken
    taken = invoiced_api.post("/invoices", json={"customer": customer["id"], "number": "INV-0001"})
    assert taken.json() == {"type": "invalid_request", "param": "number",
                            "message": "The given invoice number has already been taken: INV-0001"}


def test_list_filters_by_customer_and_updated_after_and_pages(invoiced_api: httpx.Client, customer: dict,
                                                              manual_clock: ManualClock) -> None:
    other = create(invoiced_api, "/customers", name="Globex")
    mine = [invoice_for(invoiced_api, customer)["id"] for _ in range(3)]
    invoice_for(invoiced_api, other)
    manual_clock.advance(60)
    invoiced_api.patch(f"/invoices/{mine[0]}", json={"notes": "Thanks"})
    ids = lambda **params: [i["id"] for i in invoiced_api.get("/invoices", params=params).json()]  # noqa: E731
    assert ids(**{"filter[customer]": customer["id"]}) == mine
    assert ids(**{"filter[customer]": "999"}) == []
    assert ids(updated_after=int(manual_clock.now) - 1) == [mine[0]]
    assert ids(**{"filter[customer]": customer["id"], "sort": "updated_at desc,id asc"}) == [mine[0], mine[1], mine[2]]
    page = invoiced_api.get("/invoices", params={"per_page": 3, "page": 2})
    assert (len(page.json()), page.headers["x-total-count"]) == (1, "4")
    assert 'rel="previous"' in page.headers["link"] and 'rel="next"' not in page.headers["link"]
    assert invoiced_api.get("/invoices", params={"filter[nope]": 1}).status_code == 400


def test_patch_recalculates_and_guards(invoiced_api: httpx.Client, customer: dict, manual_clock: ManualClock) -> None:
    invoice = invoice_for(invoiced_api, customer)
    path = f"/invoices/{invoice['id']}"
    manual_clock.advance(5)
    changed = invoiced_api.patch(path, json={"items": [{"id": 1, "name": "Copy paper", "quantity": 3, "unit_cost": 45}],
                                            "payment_terms": "NET 14"}).json()
    assert ([line["id"] for line in changed["items"]], changed["total"], changed["balance"]) == ([1], 135, 135)
    assert changed["due_date"] == invoice["date"] + 14 * DAY
    assert changed["updated_at"] == invoice["updated_at"] + 5
    refusals = [
        ({"customer": 999}, "Invalid request parameter `customer`. The customer cannot be modified.", "customer"),
        ({"draft": True}, "Cannot save as a draft because the document has already been issued.", "draft"),
        ({"currency": None}, "The currency cannot be unset.", "currency"),
        ({"status": "paid"}, "Mass assignment of status on Invoice is not allowed", None),
    ]
    for body, message, param in refusals:
        response = invoiced_api.patch(path, json=body)
        assert (response.status_code, response.json().get("message"), response.json().get("param")) == (400, message,
                                                                                                      param)
    closed = invoiced_api.patch(path, json={"closed": True}).json()
    assert (closed["closed"], closed["paid"], closed["status"]) == (True, False, "not_sent")
    refused = invoiced_api.patch(path, json={"notes": "late edit"})
    assert refused.json()["param"] == "closed" and "closed" in refused.json()["message"]
    reopened = invoiced_api.patch(path, json={"closed": False, "notes": "late edit"}).json()
    assert (reopened["closed"], reopened["notes"]) == (False, "late edit")


def test_invoice_events(invoiced_api: httpx.Client, customer: dict) -> None:
    invoice = invoice_for(invoiced_api, customer)
    invoiced_api.patch(f"/invoices/{invoice['id']}", json={"notes": "Thanks"})
    invoiced_api.patch(f"/invoices/{invoice['id']}", json={"notes": "Thanks"})  # no-op
    assert invoiced_api.delete(f"/invoices/{invoice['id']}").status_code == 204
    assert invoiced_api.get(f"/invoices/{invoice['id']}").status_code == 404
    deleted, updated, created = invoiced_api.get("/events", params={"type": "invoice"}).json()
    assert [e["type"] for e in (deleted, updated, created)] == ["invoice.deleted", "invoice.updated", "invoice.created"]
    assert updated["data"]["previous"] == {"notes": None}
    assert created["data"]["object"]["customer"]["name"] == "Acme"  # the customer embedded, as the server does
    assert deleted["data"]["object"]["notes"] == "Thanks"
    assert event_types(invoiced_api, related_to=f"customer,{customer['id']}")[:3] == [
        "invoice.deleted", "invoice.updated", "invoice.created"]


# --- the clock ----------------------------------------------------------------------------------
def test_an_invoice_goes_past_due_when_the_clock_passes_its_due_date(invoiced_api: httpx.Client, customer: dict,
                                                                     manual_clock: ManualClock) -> None:
    invoice = invoice_for(invoiced_api, customer, due_date=int(manual_clock.now) + DAY)
    draft = invoice_for(invoiced_api, customer, due_date=int(manual_clock.now) + DAY, draft=True)
    manual_clock.advance(DAY)
    assert invoiced_api.get(f"/invoices/{invoice['id']}").json()["status"] == "not_sent"  # due, not yet past due
    manual_clock.advance(1)
    assert invoiced_api.get(f"/invoices/{invoice['id']}").json()["status"] == "past_due"
    assert invoiced_api.get(f"/invoices/{draft['id']}").json()["status"] == "draft"
    assert [i["id"] for i in invoiced_api.get("/invoices", params={"filter[status]": "past_due"}).json()] == [
        invoice["id"]]
    swept = invoiced_api.get("/events").json()[0]
    assert (swept["type"], swept["data"]["previous"], swept["timestamp"]) == (
        "invoice.updated", {"status": "not_sent"}, int(manual_clock.now))
    assert swept["data"]["object"]["updated_at"] == int(manual_clock.now)
    assert invoiced_api.get(f"/customers/{customer['id']}/balance").json()["past_due"] is True
    assert event_types(invoiced_api).count("invoice.updated") == 1  # marked once


def test_a_later_due_date_postpones_past_due(invoiced_api: httpx.Client, customer: dict,
                                             manual_clock: ManualClock) -> None:
    invoice = invoice_for(invoiced_api, customer, due_date=int(manual_clock.now) + 10)
    invoiced_api.patch(f"/invoices/{invoice['id']}", json={"due_date": int(manual_clock.now) + 100})
    manual_clock.advance(50)
    assert invoiced_api.get(f"/invoices/{invoice['id']}").json()["status"] == "not_sent"
    manual_clock.advance(51)
    assert invoiced_api.get(f"/invoices/{invoice['id']}").json()["status"] == "past_due"
    overdue = invoiced_api.patch(f"/invoices/{invoice['id']}", json={"due_date": int(manual_clock.now) - 1}).json()
    assert overdue["status"] == "past_due"  # a PATCH works the status out again
    assert invoiced_api.patch(f"/invoices/{invoice['id']}",
                              json={"due_date": int(manual_clock.now) + 100}).json()["status"] == "not_sent"


def test_advance_clock_moves_the_emulators_own_clock() -> None:
    emulator = InvoicedEmulator(api_key=API_KEY)  # the wall clock
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url, auth=(API_KEY, "")) as api:
        customer = api.post("/customers", json={"name": "Acme"}).json()
        invoice = api.post("/invoices", json={"customer": customer["id"], "items": [{"unit_cost": 5}],
                                              "due_date": customer["created_at"] + DAY}).json()
        assert invoice["status"] == "not_sent"
        emulator.advance_clock(2 * DAY)
        response = api.get(f"/invoices/{invoice['id']}")
        assert response.json()["status"] == "past_due"
        assert api.post("/customers", json={"name": "Later"}).json()["created_at"] >= customer["created_at"] + 2 * DAY
        assert emulator.invoice(invoice["id"])["updated_at"] >= customer["created_at"] + 2 * DAY


# --- payments -----------------------------------------------------------------------------------
def test_a_payment_pays_down_invoices_and_a_full_one_pays_them(invoiced_api: httpx.Client, customer: dict,
                                                               manual_clock: ManualClock) -> None:
    first, second = invoice_for(invoiced_api, customer), invoice_for(invoiced_api, customer)  # 100.25 each
    manual_clock.advance(5)
    payment = create(invoiced_api, "/payments", customer=customer["id"], amount=150, method="check", reference="1450",
                     applied_to=[{"type": "invoice", "invoice": first["id"], "amount": 100.25},
                                 {"type": "invoice", "invoice": second["id"], "amount": 40}])
    assert {k: payment[k] for k in ("object", "customer", "currency", "amount", "balance", "method", "reference",
                                     "date", "voided")} == {
        "object": "payment", "customer": customer["id"], "currency": "eur", "amount": 150, "balance": 9.75,
        "method": "check", "reference": "1450", "date": int(manual_clock.now), "voided": False}
    assert [(a["type"], a["invoice"], a["amount"]) for a in payment["applied_to"]] == [
        ("invoice", first["id"], 100.25), ("invoice", second["id"], 40)]
    assert invoiced_api.get(f"/payments/{payment['id']}").json() == payment

    paid, partly = (invoiced_api.get(f"/invoices/{i['id']}").json() for i in (first, second))
    assert (paid["balance"], paid["paid"], paid["closed"], paid["status"]) == (0, True, True, "paid")
    assert (partly["balance"], partly["paid"], partly["closed"], partly["status"]) == (60.25, False, False, "not_sent")

    newest = invoiced_api.get("/events").json()[:3]
    assert [e["type"] for e in newest] == ["invoice.updated", "invoice.paid", "payment.created"]
    partly_event, paid_event, payment_event = newest
    assert paid_event["data"]["previous"] == {"balance": 100.25, "paid": False, "closed": False, "status": "not_sent"}
    assert partly_event["data"]["previous"] == {"balance": 100.25}
    assert payment_event["data"]["object"]["customer"]["id"] == customer["id"]
    assert payment_event["data"]["object"]["applied_to"] == payment["applied_to"]
    assert event_types(invoiced_api, related_to=f"invoice,{second['id']}") == [
        "invoice.updated", "payment.created", "invoice.created"]

    refused = invoiced_api.patch(f"/invoices/{first['id']}", json={"notes": "edit"})
    assert refused.json()["param"] == "closed"  # paid invoices close
    undeletable = invoiced_api.delete(f"/invoices/{second['id']}")
    assert undeletable.json() == {"type": "invalid_request", "param": "voided",
                                  "message": "This invoice cannot be voided because it has a payment applied."}
    assert invoiced_api.delete(f"/customers/{customer['id']}").json() == {
        "type": "invalid_request", "message": "Customers with transactions cannot be deleted"}


def test_paying_a_draft_issues_it(invoiced_api: httpx.Client, customer: dict) -> None:
    draft = invoice_for(invoiced_api, customer, draft=True)
    create(invoiced_api, "/payments", amount=10, applied_to=[{"type": "invoice", "invoice": draft["id"], "amount": 10}])
    issued = invoiced_api.get(f"/invoices/{draft['id']}").json()
    assert (issued["draft"], issued["balance"], issued["status"]) == (False, 90.25, "not_sent")
    payment = invoiced_api.get("/payments").json()[0]
    assert (payment["customer"], payment["currency"]) == (customer["id"], "eur")  # taken from the invoice


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"customer": 999, "amount": 5}, "No such customer: 999", None),
        ({"amount": -1}, "The amount cannot be less than 0.", "amount"),
        ({"amount": "lots"}, "Amount only allows numbers", "amount"),
        ({"amount": 5, "applied_to": [{"type": "invoice", "invoice": 999, "amount": 5}]},
         "An error occurred while trying to apply payment: No such invoice: 999", "applied_to"),
        ({"amount": 5, "applied_to": [{"type": "invoice", "invoice": 1, "amount": 5},
                                      {"type": "invoice", "invoice": 1, "amount": 5}]},
         "Each document can only be applied once per payment. Detected duplicate (invoice:1)", "applied_to"),
        ({"amount": 5, "applied_to": [{"type": "invoice", "invoice": 1, "amount": 6}]},
         "An error occurred while trying to apply payment: Total amount applied (6) cannot exceed the payment amount (5)",
         "applied_to"),
        ({"amount": 500, "applied_to": [{"type": "invoice", "invoice": 1, "amount": 200}]},
         "An error occurred while trying to apply payment: The amount applied (200) exceeds the balance of invoice 1 "
         "(100.25)", "applied_to"),
        ({"amount": 5, "applied_to": [{"type": "credit_note", "credit_note": 1, "amount": 5}]},
         "An error occurred while trying to apply payment: Unsupported payment application type: credit_note",
         "applied_to"),
    ],
)
def test_payment_refusals_write_nothing(invoiced_api: httpx.Client, customer: dict, body: dict, message: str,
                                        param: str | None) -> None:
    invoice = invoice_for(invoiced_api, customer)
    response = invoiced_api.post("/payments", json=body)
    assert (response.status_code, response.json().get("message"), response.json().get("param")) == (400, message, param)
    assert invoiced_api.get("/payments").json() == []
    assert invoiced_api.get(f"/invoices/{invoice['id']}").json() == invoice
    assert event_types(invoiced_api, type="payment") == []


def test_a_payment_for_another_customers_invoice_is_refused(invoiced_api: httpx.Client, customer: dict) -> None:
    invoice = invoice_for(invoiced_api, customer)
    other = create(invoiced_api, "/customers", name="Globex", currency="eur")
    response = invoiced_api.post("/payments", json={"customer": other["id"], "amount": 5, "applied_to": [
        {"type": "invoice", "invoice": invoice["id"], "amount": 5}]})
    assert (response.status_code, response.json()["param"]) == (400, "applied_to")


# --- balance ------------------------------------------------------------------------------------
def test_balance_sums_what_is_outstanding(invoiced_api: httpx.Client, customer: dict, manual_clock: ManualClock) -> None:
    empty = invoiced_api.get(f"/customers/{customer['id']}/balance").json()
    assert empty == {"currency": "eur", "total_outstanding": 0, "due_now": 0, "past_due": False,
                     "open_credit_notes": 0, "available_credits": 0, "history": []}
    first = invoice_for(invoiced_api, customer)
    invoice_for(invoiced_api, customer, draft=True)  # drafts owe nothing
    invoice_for(invoiced_api, customer, date=int(manual_clock.now) + DAY)  # dated tomorrow: not yet outstanding
    invoice_for(invoiced_api, customer, currency="usd")
    create(invoiced_api, "/payments", amount=50, applied_to=[{"type": "invoice", "invoice": first["id"], "amount": 50}])
    owed = invoiced_api.get(f"/customers/{customer['id']}/balance").json()
    assert (owed["currency"], owed["total_outstanding"], owed["due_now"], owed["past_due"]) == ("eur", 50.25, 50.25, False)
    in_usd = invoiced_api.get(f"/customers/{customer['id']}/balance", params={"currency": "USD"}).json()
    assert (in_usd["currency"], in_usd["total_outstanding"]) == ("usd", 100.25)
    assert invoiced_api.get("/customers/999/balance").status_code == 404


def test_a_voided_payment_is_kept_and_what_it_paid_goes_back_onto_its_invoices(
        invoiced_api: httpx.Client, customer: dict, manual_clock: ManualClock) -> None:
    """`DELETE /payments/{id}` voids (the official client's `Payment.delete()`; the server's VoidPaymentRoute): 200 and
    the payment, `voided`, its balance its amount; the invoices owe again; a `payment.deleted` event (issue 15: the
    emulator could not void a payment)."""
    first, second = invoice_for(invoiced_api, customer), invoice_for(invoiced_api, customer)  # 100.25 each
    payment = create(invoiced_api, "/payments", customer=customer["id"], amount=150,
                     applied_to=[{"type": "invoice", "invoice": first["id"], "amount": 100.25},
                                 {"type": "invoice", "invoice": second["id"], "amount": 40}])
    manual_clock.advance(60)

    response = invoiced_api.delete(f"/payments/{payment['id']}")

    assert response.status_code == 200
    voided = response.json()
    assert (voided["id"], voided["voided"], voided["amount"], voided["balance"], voided["applied_to"]) == (
        payment["id"], True, 150, 150, [])
    assert invoiced_api.get(f"/payments/{payment['id']}").json() == voided
    owing = [invoiced_api.get(f"/invoices/{i['id']}").json() for i in (first, second)]
    assert [(i["balance"], i["paid"], i["closed"], i["status"]) for i in owing] == [
        (100.25, False, False, "not_sent"), (100.25, False, False, "not_sent")]
    newest = invoiced_api.get("/events").json()[:3]
    assert [event["type"] for event in newest] == ["payment.deleted", "invoice.updated", "invoice.updated"]
    assert newest[0]["data"]["object"]["voided"] is True
    assert newest[0]["data"]["object"]["customer"]["id"] == customer["id"]
    assert [p["id"] for p in invoiced_api.get("/payments", params={"filter[voided]": 0}).json()] == []
    assert invoiced_api.get(f"/customers/{customer['id']}/balance").json()["total_outstanding"] == 200.5

    again = invoiced_api.delete(f"/payments/{payment['id']}")
    assert (again.status_code, again.json()["message"]) == (400, "This payment has already been voided.")


@pytest.mark.parametrize(("currency", "unit_cost", "amount"), [
    ("bhd", 1.2345, 1.235), ("jpy", 1000.4, 1000), ("usd", 10.125, 10.13), ("kwd", 0.0005, 0.001)])
def test_amounts_keep_their_currency_s_smallest_unit(invoiced_api: httpx.Client, customer: dict, currency: str,
                                                      unit_cost: float, amount: float) -> None:
    """Invoiced keeps each currency's precision (its Money is in "the lowest denominated unit for a given currency"):
    BHD 3 decimals, JPY none (issue 15: every currency was rounded to 2)."""
    invoice = invoice_for(invoiced_api, customer, currency=currency, items=[{"name": "Fee", "unit_cost": unit_cost}])
    assert (invoice["items"][0]["amount"], invoice["subtotal"], invoice["total"], invoice["balance"]) == (amount,) * 4
    balance = invoiced_api.get(f"/customers/{customer['id']}/balance", params={"currency": currency}).json()
    assert balance["total_outstanding"] == amount
