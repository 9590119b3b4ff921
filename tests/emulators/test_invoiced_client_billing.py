"""The official `invoiced` 3.0.0 client, unchanged, on contacts, invoices, payments and balances."""

from __future__ import annotations

import invoiced
import pytest
from invoiced import errors

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.serve import BackgroundServer

DAY = 86400


@pytest.fixture
def client(invoiced_server: BackgroundServer) -> invoiced.Client:
    api = invoiced.Client("test")
    api.api_url = invoiced_server.url  # 3.0.0 takes no base URL argument; it reads this attribute
    return api


def test_contacts_through_the_customer(client: invoiced.Client, invoiced_emulator: InvoicedEmulator) -> None:
    customer = client.Customer.create(name="Acme", country="GB")
    contacts = customer.contacts()
    nancy = contacts.create(name="Nancy Talty", email="nancy.talty@example.com", idempotency_key="contact-1")
    assert (nancy.id, nancy.customer, nancy.country, nancy.primary) == (1, customer.id, "GB", True)
    assert nancy.endpoint() == f"/customers/{customer.id}/contacts/{nancy.id}"
    for n in range(4):
        contacts.create(name=f"Extra {n}")

    page, listing = contacts.list(per_page=2, page=3)
    assert [c.name for c in page] == ["Extra 3"] and listing.total_count == 5
    assert "next" not in listing.links and "previous" in listing.links

    fetched = contacts.retrieve(nancy.id)
    fetched.title = "CFO"
    fetched.phone = "555 0100"
    assert fetched.save() is True
    assert (fetched.title, fetched.phone) == ("CFO", "555 0100")
    assert invoiced_emulator.contact(customer.id, nancy.id)["title"] == "CFO"
    assert fetched.delete() is True
    with pytest.raises(errors.InvalidRequestError) as missing:
        contacts.retrieve(nancy.id)
    assert (missing.value.status_code, missing.value.error["message"]) == (404, f"Contact was not found: {nancy.id}")

    with pytest.raises(errors.InvalidRequestError) as invalid:
        contacts.create(email="not-an-email", name="Bad")
    assert invalid.value.error == {"type": "invalid_request", "message": "Email must be a valid email address",
                                   "param": "email"}

    events, _ = client.Event.list(type="contact")
    assert [e.type for e in events] == ["contact.deleted", "contact.updated"] + ["contact.created"] * 5
    assert events[1].data["previous"] == {"title": None, "phone": None}
    assert events[1].data["object"]["customer"]["id"] == customer.id


def test_invoices_payments_and_the_balance(client: invoiced.Client) -> None:
    customer = client.Customer.create(name="Acme", payment_terms="NET 30")
    invoice = client.Invoice.create(customer=customer.id, items=[{"name": "Copy paper", "quantity": 2, "unit_cost": 45}],
                                    idempotency_key="invoice-1")
    assert (invoice.number, invoice.total, invoice.balance, invoice.status) == ("INV-0001", 90, 90, "not_sent")
    assert invoice.due_date == invoice.date + 30 * DAY
    other = client.Customer.create(name="Globex")
    client.Invoice.create(customer=other.id, items=[{"unit_cost": 5}])

    invoices, listing = client.Invoice.list(filter={"customer": customer.id})
    assert [i.id for i in invoices] == [invoice.id] and listing.total_count == 1
    since, _ = client.Invoice.list(updated_after=invoice.updated_at - 1, sort="id asc")
    assert len(since) == 2

    invoice["notes"] = "Thank you"  # `invoice.notes` is the client's notes() sub-resource
    invoice.purchase_order = "PO-7"
    assert invoice.save() is True
    assert (invoice["notes"], invoice.purchase_order) == ("Thank you", "PO-7")
    assert client.Invoice.retrieve(invoice.id)["notes"] == "Thank you"

    assert customer.balance() == {"currency": "usd", "total_outstanding": 90, "due_now": 90, "past_due": False,
                                  "open_credit_notes": 0, "available_credits": 0, "history": []}

    partial = client.Payment.create(customer=customer.id, amount=40, applied_to=[
        {"type": "invoice", "invoice": invoice.id, "amount": 40}])
    assert (partial.balance, partial.applied_to[0]["invoice"]) == (0, invoice.id)
    assert client.Invoice.retrieve(invoice.id).balance == 50
    full = client.Payment.create(customer=customer.id, amount=60, applied_to=[
        {"type": "invoice", "invoice": invoice.id, "amount": 50}])
    assert full.balance == 10
    paid = client.Invoice.retrieve(invoice.id)
    assert (paid.balance, paid.paid, paid.closed, paid.status) == (0, True, True, "paid")
    assert customer.balance()["total_outstanding"] == 0

    payments, listing = client.Payment.list()
    assert [p.id for p in payments] == [partial.id, full.id] and listing.total_count == 2
    assert client.Payment.retrieve(full.id).amount == 60

    events, _ = client.Event.list(related_to=f"invoice,{invoice.id}")
    assert [e.type for e in events] == ["invoice.paid", "payment.created", "invoice.updated", "payment.created",
                                        "invoice.updated", "invoice.created"]

    with pytest.raises(errors.InvalidRequestError) as unknown:
        client.Invoice.create(customer=999)
    assert unknown.value.error == {"type": "invalid_request", "message": "No such customer: 999", "param": "customer"}
    with pytest.raises(errors.InvalidRequestError) as locked:
        paid.delete()
    assert locked.value.error["param"] == "voided"


def test_past_due_follows_the_emulator_clock(client: invoiced.Client, invoiced_emulator: InvoicedEmulator) -> None:
    customer = client.Customer.create(name="Acme")
    invoice = client.Invoice.create(customer=customer.id, items=[{"unit_cost": 100}], payment_terms="NET 14")
    invoiced_emulator.advance_clock(14 * DAY + 1)
    assert client.Invoice.retrieve(invoice.id).status == "past_due"
    assert customer.balance()["past_due"] is True
    events, _ = client.Event.list(type="invoice")
    assert [(e.type, e.data.get("previous")) for e in events] == [("invoice.updated", {"status": "not_sent"}),
                                                                 ("invoice.created", None)]


def test_the_official_client_voids_a_payment(client: invoiced.Client) -> None:
    """`Payment.delete()` sends `DELETE /payments/{id}`; the answer (200, the payment voided) refreshes the object."""
    customer = client.Customer.create(name="Acme")
    invoice = client.Invoice.create(customer=customer.id, items=[{"unit_cost": 30}])
    payment = client.Payment.create(customer=customer.id, amount=30, applied_to=[
        {"type": "invoice", "invoice": invoice.id, "amount": 30}])
    assert client.Invoice.retrieve(invoice.id).paid is True

    assert payment.delete() is True

    assert (payment.voided, payment.balance) == (True, 30)
    assert client.Invoice.retrieve(invoice.id).balance == 30 and customer.balance()["total_outstanding"] == 30
    with pytest.raises(errors.InvalidRequestError) as twice:
        client.Payment.retrieve(payment.id).delete()
    assert twice.value.error["message"] == "This payment has already been voided."
