"""Invoiced emulator: customer contacts (`/customers/{id}/contacts`) over HTTP, their events, and the Python helpers."""

from __future__ import annotations

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from tests.support import ManualClock


def create(invoiced_api: httpx.Client, path: str, **body: object) -> dict:
    response = invoiced_api.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def customer(invoiced_api: httpx.Client) -> dict:
    return create(invoiced_api, "/customers", name="Acme", country="GB")


def events(invoiced_api: httpx.Client, **params: object) -> list[dict]:
    return invoiced_api.get("/events", params=params).json()


def test_create_answers_201_with_the_full_contact(invoiced_api: httpx.Client, customer: dict,
                                                  manual_clock: ManualClock) -> None:
    contact = create(invoiced_api, f"/customers/{customer['id']}/contacts", name="Nancy Talty",
                     email="nancy.talty@example.com", phone=5550100, sms_enabled=1, customer=999)
    now = int(manual_clock.now)
    assert contact == {
        "id": 1, "object": "contact", "customer": customer["id"], "customer_id": customer["id"],
        "name": "Nancy Talty", "title": None, "email": "nancy.talty@example.com", "phone": "5550100",
        "primary": True, "sms_enabled": True, "department": None, "address1": None, "address2": None, "city": None,
        "state": None, "postal_code": None, "country": "GB", "send_new_invoices": False, "role": None,
        "role_id": None, "created_at": now, "updated_at": now,
    }  # the customer comes from the path, the country from the customer
    assert invoiced_api.get(f"/customers/{customer['id']}/contacts/1").json() == contact


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"email": "a@example.com"}, 400, {"type": "invalid_request", "message": "Name is missing", "param": "name"}),
        ({"name": ""}, 400, {"type": "invalid_request", "message": "Name is missing", "param": "name"}),
        ({"name": "N" * 256}, 400, {"type": "invalid_request",
                                    "message": "Name must be a string between 1 and 255 characters.", "param": "name"}),
        ({"name": "Bad", "email": "not-an-email"}, 400,
         {"type": "invalid_request", "message": "Email must be a valid email address", "param": "email"}),
        ({"name": "Bad", "country": "XX"}, 400,
         {"type": "invalid_request", "message": "Country is invalid", "param": "country"}),
        ({"name": "Bad", "primary": "maybe"}, 400,
         {"type": "invalid_request", "message": "Primary must be yes or no", "param": "primary"}),
    ],
)
def test_create_refuses_invalid_bodies(invoiced_api: httpx.Client, customer: dict, body: dict, status: int,
                                       error: dict) -> None:
    response = invoiced_api.post(f"/customers/{customer['id']}/contacts", json=body)
    assert (response.status_code, response.json()) == (status, error)
    assert invoiced_api.get(f"/customers/{customer['id']}/contacts").json() == []


def test_an_unknown_customer_is_a_404_except_for_its_empty_listing(invoiced_api: httpx.Client, customer: dict) -> None:
    response = invoiced_api.post("/customers/999/contacts", json={"name": "Nobody"})
    assert (response.status_code, response.json()) == (404, {"type": "invalid_request",
                                                             "message": "Customer was not found: 999"})
    # the server's ListContactsRoute filters by the path's customer without looking it up
    listing = invoiced_api.get("/customers/999/contacts")
    assert (listing.status_code, listing.json(), listing.headers["x-total-count"]) == (200, [], "0")


def test_a_contact_is_found_only_under_its_own_customer(invoiced_api: httpx.Client, customer: dict) -> None:
    other = create(invoiced_api, "/customers", name="Globex")
    contact = create(invoiced_api, f"/customers/{customer['id']}/contacts", name="Nancy")
    for method in ("GET", "PATCH", "DELETE"):
        response = invoiced_api.request(method, f"/customers/{other['id']}/contacts/{contact['id']}",
                                        json={"name": "Moved"} if method == "PATCH" else None)
        assert (response.status_code, response.json()["message"]) == (404, f"Contact was not found: {contact['id']}")
    assert invoiced_api.get(f"/customers/{customer['id']}/contacts/{contact['id']}").json()["name"] == "Nancy"


def test_listing_pages_with_link_and_total_count(invoiced_api: httpx.Client, customer: dict) -> None:
    path = f"/customers/{customer['id']}/contacts"
    for name in ("Carol", "alice", "Bob"):
        create(invoiced_api, path, name=name)
    create(invoiced_api, f"/customers/{create(invoiced_api, '/customers', name='Other')['id']}/contacts", name="Zed")
    page = invoiced_api.get(path, params={"per_page": 2, "page": 2})
    assert [c["name"] for c in page.json()] == ["Bob"]
    assert page.headers["x-total-count"] == "3"
    base = f"{invoiced_api.base_url}{path}"
    assert page.headers["link"] == (f'<{base}?page=2&per_page=2>; rel="self", <{base}?page=1&per_page=2>; rel="first", '
                                    f'<{base}?page=1&per_page=2>; rel="previous", <{base}?page=2&per_page=2>; rel="last"')
    assert [c["name"] for c in invoiced_api.get(path, params={"sort": "name asc"}).json()] == ["alice", "Bob", "Carol"]
    assert len(invoiced_api.get(path, params={"filter[customer_id]": customer["id"]}).json()) == 3
    refused = invoiced_api.get(path, params={"filter[name]": "Bob"})
    assert (refused.status_code, refused.json()["message"]) == (400, "Invalid filter parameter: name")


def test_patch_changes_fields_and_a_no_op_changes_nothing(invoiced_api: httpx.Client, customer: dict,
                                                          manual_clock: ManualClock) -> None:
    contact = create(invoiced_api, f"/customers/{customer['id']}/contacts", name="Nancy", email="n@example.com")
    manual_clock.advance(10)
    path = f"/customers/{customer['id']}/contacts/{contact['id']}"
    changed = invoiced_api.patch(path, json={"title": "CFO", "primary": False, "country": "", "email": "nancy@example.com"})
    assert changed.status_code == 200
    body = changed.json()
    assert (body["title"], body["primary"], body["country"], body["email"]) == ("CFO", False, None, "nancy@example.com")
    assert body["updated_at"] == contact["updated_at"] + 10
    manual_clock.advance(10)
    same = invoiced_api.patch(path, json={"title": "CFO"}).json()
    assert same["updated_at"] == body["updated_at"]
    bad = invoiced_api.patch(path, json={"email": "nope"})
    assert (bad.status_code, bad.json()["param"]) == (400, "email")


def test_events_carry_the_customer_and_relate_to_it(invoiced_api: httpx.Client, customer: dict) -> None:
    path = f"/customers/{customer['id']}/contacts"
    contact = create(invoiced_api, path, name="Nancy", email="n@example.com")
    invoiced_api.patch(f"{path}/{contact['id']}", json={"name": "Nancy Talty", "phone": "555"})
    invoiced_api.patch(f"{path}/{contact['id']}", json={"name": "Nancy Talty"})  # no-op: no event
    assert invoiced_api.delete(f"{path}/{contact['id']}").status_code == 204
    assert invoiced_api.get(f"{path}/{contact['id']}").status_code == 404

    deleted, updated, created = events(invoiced_api, type="contact")
    assert [e["type"] for e in (deleted, updated, created)] == ["contact.deleted", "contact.updated", "contact.created"]
    assert "previous" not in created["data"]
    assert updated["data"]["previous"] == {"name": "Nancy", "phone": None}
    for event in (deleted, updated, created):
        obj = event["data"]["object"]
        assert (obj["object"], obj["id"], obj["customer_id"]) == ("contact", contact["id"], customer["id"])
        assert obj["customer"] == invoiced_api.get(f"/customers/{customer['id']}").json()  # embedded, as the server does
    assert deleted["data"]["object"]["name"] == "Nancy Talty"  # the snapshot before deletion
    related = [e["type"] for e in events(invoiced_api, related_to=f"customer,{customer['id']}")]
    assert related == ["contact.deleted", "contact.updated", "contact.created", "customer.created"]
    assert [e["type"] for e in events(invoiced_api, related_to=f"contact,{contact['id']}")] == related[:3]


def test_deleting_a_customer_takes_its_contacts_without_contact_events(invoiced_api: httpx.Client, customer: dict,
                                                                       clocked_invoiced: InvoicedEmulator) -> None:
    kept = create(invoiced_api, "/customers", name="Globex")
    create(invoiced_api, f"/customers/{customer['id']}/contacts", name="Nancy")
    create(invoiced_api, f"/customers/{customer['id']}/contacts", name="Bob")
    other = create(invoiced_api, f"/customers/{kept['id']}/contacts", name="Kept")
    assert invoiced_api.delete(f"/customers/{customer['id']}").status_code == 204
    assert list(clocked_invoiced.contacts) == [other["id"]]
    assert invoiced_api.get(f"/customers/{customer['id']}/contacts").json() == []
    assert invoiced_api.get(f"/customers/{customer['id']}/contacts/1").status_code == 404
    assert [e["type"] for e in events(invoiced_api)][:1] == ["customer.deleted"]
    assert [e["type"] for e in events(invoiced_api, type="contact")] == ["contact.created"] * 3


def test_merging_hands_the_contacts_to_the_survivor(invoiced_api: httpx.Client, customer: dict) -> None:
    merged = create(invoiced_api, "/customers", name="Acme Duplicate")
    contact = create(invoiced_api, f"/customers/{merged['id']}/contacts", name="Nancy")
    invoiced_api.post(f"/customers/{customer['id']}/merge", json={"customer": merged["id"]})
    moved = invoiced_api.get(f"/customers/{customer['id']}/contacts").json()
    assert [(c["id"], c["customer"], c["customer_id"]) for c in moved] == [(contact["id"], customer["id"], customer["id"])]
    assert moved[0]["updated_at"] == contact["updated_at"]
    assert "contact.created" in [e["type"] for e in events(invoiced_api, related_to=f"customer,{customer['id']}")]


def test_at_most_100_contacts_a_customer(invoiced_api: httpx.Client, customer: dict,
                                         clocked_invoiced: InvoicedEmulator) -> None:
    for n in range(100):
        clocked_invoiced.create_contact(customer["id"], {"name": f"C{n}"})
    refused = invoiced_api.post(f"/customers/{customer['id']}/contacts", json={"name": "One too many"})
    assert refused.json() == {"type": "invalid_request",
                              "message": "The maximum number of contacts (100) per customer has been reached."}
    other = create(invoiced_api, "/customers", name="Other")
    assert invoiced_api.post(f"/customers/{other['id']}/contacts", json={"name": "Fine"}).status_code == 201


def test_python_helpers_are_the_same_operations(invoiced_api: httpx.Client, customer: dict,
                                                clocked_invoiced: InvoicedEmulator) -> None:
    emulator = clocked_invoiced
    contact = emulator.create_contact(customer["id"], {"name": "Nancy", "email": "n@example.com"})
    assert emulator.update_contact(customer["id"], contact["id"], {"title": "CFO"})["title"] == "CFO"
    assert emulator.contact(customer["id"], contact["id"]) == invoiced_api.get(
        f"/customers/{customer['id']}/contacts/{contact['id']}").json()
    assert [c["id"] for c in emulator.customer_contacts(customer["id"])] == [contact["id"]]
    emulator.delete_contact(customer["id"], contact["id"])
    assert emulator.customer_contacts(customer["id"]) == []
    assert [e["type"] for e in emulator.events] == ["customer.created", "contact.created", "contact.updated",
                                                    "contact.deleted"]


def test_listing_one_customers_contacts_passes_over_those_only(clocked_invoiced: InvoicedEmulator) -> None:
    emulator = clocked_invoiced
    customers = [emulator.create_customer({"name": f"Customer {n}"})["id"] for n in range(2_000)]
    for customer_id in customers:
        for n in range(3):
            emulator.create_contact(customer_id, {"name": f"Contact {n}"})
    assert len(emulator.contacts) == 6_000
    before = emulator.contacts.passes
    listings = [emulator.customer_contacts(customer_id) for customer_id in customers]
    assert all(len(listing) == 3 for listing in listings)
    assert {c["customer"] for listing in listings[:5] for c in listing} == set(customers[:5])
    assert emulator.contacts.passes == before  # no listing went over all 6,000
