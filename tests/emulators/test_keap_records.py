"""Keap v2 companies, contacts and products over real HTTP: CRUD, listing, filters, validation, timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer

HEADERS = {"X-Keap-API-Key": "test"}
START = 1_745_000_000.0  # 2025-04-18T18:13:20.000Z


class ManualClock:
    """Epoch seconds that only move when a test says so, so timestamps are exact."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keap(clock: ManualClock) -> Iterator[httpx.Client]:
    emulator = KeapEmulator(api_key="test", random_seed=1, clock=clock)
    with BackgroundServer(emulator.asgi()) as server:
        # the manual clock never moves a rate-limit window on; these tests are about records, not quotas
        httpx.post(f"{server.url}/_emulator/faults", json={"rate_limit": None}).raise_for_status()
        with httpx.Client(base_url=server.url + "/crm/rest", headers=HEADERS) as client:
            yield client


def contact(email: str, **fields: Any) -> dict[str, Any]:
    return {"email_addresses": [{"email": email, "field": "EMAIL1"}], **fields}


def product(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "price": 1250, "short_description": name[:20], **fields}


def created(client: httpx.Client, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v2/{collection}", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "status", "details"}
    assert body["code"] == status and isinstance(body["status"], str) and isinstance(body["details"], list)
    for word in words:
        assert word in body["message"]


def ids(response: httpx.Response, collection: str) -> list[str]:
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()[collection]]


# --- create, get, patch, delete ------------------------------------------------------------------


def test_company_lifecycle_with_string_ids_and_millisecond_times(keap: httpx.Client, clock: ManualClock) -> None:
    company = created(keap, "companies", {"company_name": "Acme", "email_address": {"email": "hi@acme.example", "field": "EMAIL1"}})
    assert company["id"] == "1"
    assert company["create_time"] == company["update_time"] == "2025-04-18T18:13:20.000Z"
    assert company["email_address"] == {"email": "hi@acme.example", "field": "EMAIL1"}

    clock.now += 1.234
    patched = keap.patch(f"/v2/companies/{company['id']}", json={"company_name": "Acme Inc"})
    assert patched.status_code == 200
    assert patched.json()["company_name"] == "Acme Inc"
    assert patched.json()["email_address"]["email"] == "hi@acme.example"
    assert patched.json()["update_time"] == "2025-04-18T18:13:21.234Z"
    assert patched.json()["create_time"] == "2025-04-18T18:13:20.000Z"

    assert keap.get("/v2/companies/1").json()["company_name"] == "Acme Inc"
    deleted = keap.delete("/v2/companies/1")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(keap.get("/v2/companies/1"), 404, "not found")
    assert_error(keap.delete("/v2/companies/1"), 404)
    assert_error(keap.patch("/v2/companies/1", json={"company_name": "x"}), 404)


def test_update_time_moves_on_every_edit_even_without_change(keap: httpx.Client, clock: ManualClock) -> None:
    first = created(keap, "contacts", contact("a@x.example", given_name="Ann"))
    clock.now += 5
    same = keap.patch(f"/v2/contacts/{first['id']}", json={"given_name": "Ann"}).json()
    assert same["update_time"] > first["update_time"]


@pytest.mark.parametrize("mask_params", [[("update_mask", "given_name"), ("update_mask", "family_name")], [("update_mask", "given_name,family_name")]])
def test_update_mask_repeated_or_comma_form(keap: httpx.Client, mask_params: list[tuple[str, str]]) -> None:
    record = created(keap, "contacts", contact("m@x.example", given_name="Old", family_name="Name", middle_name="Q"))
    body = {"given_name": "New", "family_name": "Family", "middle_name": "Ignored"}
    patched = keap.patch(f"/v2/contacts/{record['id']}", params=mask_params, json=body).json()
    assert (patched["given_name"], patched["family_name"], patched["middle_name"]) == ("New", "Family", "Q")


def test_update_mask_clears_masked_fields_left_out_and_rejects_unknown(keap: httpx.Client) -> None:
    record = created(keap, "products", product("Widget", sku="W-1", description="long"))
    patched = keap.patch(f"/v2/products/{record['id']}", params={"update_mask": "sku"}, json={"name": "Not applied"}).json()
    assert "sku" not in patched and patched["name"] == "Widget"
    assert_error(keap.patch(f"/v2/products/{record['id']}", params={"update_mask": "bogus"}, json={}), 400, "bogus")


def test_contact_arrays_are_replaced_wholesale(keap: httpx.Client) -> None:
    record = created(keap, "contacts", {
        "email_addresses": [{"email": "one@x.example", "field": "EMAIL1"}, {"email": "two@x.example", "field": "EMAIL2"}],
        "phone_numbers": [{"number": "555-0100", "field": "PHONE1"}],
    })
    patched = keap.patch(
        f"/v2/contacts/{record['id']}",
        params={"update_mask": "email_addresses"},
        json={"email_addresses": [{"email": "three@x.example", "field": "EMAIL1"}]},
    ).json()
    assert patched["email_addresses"] == [{"email": "three@x.example", "field": "EMAIL1"}]
    assert patched["phone_numbers"] == [{"number": "555-0100", "field": "PHONE1"}]
    cleared = keap.patch(f"/v2/contacts/{record['id']}", json={"phone_numbers": []}).json()
    assert cleared["phone_numbers"] == []


def test_product_price_is_money_on_read(keap: httpx.Client) -> None:
    record = created(keap, "products", product("Ramen", price=123456))
    assert record["price"] == {"amount": 123456, "currency_code": "USD", "formatted_amount": "$1,234.56"}
    patched = keap.patch(f"/v2/products/{record['id']}", json={"price": 5}).json()
    assert patched["price"]["amount"] == 5 and patched["price"]["formatted_amount"] == "$0.05"


def test_contact_company_reference_is_checked_and_named(keap: httpx.Client) -> None:
    company = created(keap, "companies", {"company_name": "Globex"})
    record = created(keap, "contacts", contact("c@x.example", company={"id": company["id"]}))
    assert record["company"] == {"id": company["id"], "company_name": "Globex"}
    assert_error(keap.post("/v2/contacts", json=contact("d@x.example", company={"id": "999"})), 400, "999")


def test_duplicate_option_updates_the_match_with_200(keap: httpx.Client) -> None:
    first = created(keap, "contacts", contact("Dup@X.example", given_name="Ann", family_name="Lee"))
    same_email = keap.post("/v2/contacts", params={"duplicate_option": "Email"}, json=contact("dup@x.example", given_name="Anne"))
    assert same_email.status_code == 200
    assert same_email.json()["id"] == first["id"] and same_email.json()["given_name"] == "Anne"
    other_name = keap.post("/v2/contacts", params={"duplicate_option": "EmailAndName"}, json=contact("dup@x.example", given_name="Bob", family_name="Lee"))
    assert other_name.status_code == 201 and other_name.json()["id"] != first["id"]
    no_option = keap.post("/v2/contacts", json=contact("dup@x.example", given_name="Anne"))
    assert no_option.status_code == 201
    assert_error(keap.post("/v2/contacts", params={"duplicate_option": "Phone"}, json=contact("e@x.example")), 400, "duplicate_option")


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "body", "words"),
    [
        ("contacts", {"given_name": "Nobody"}, ["email address, phone number or address"]),
        ("contacts", contact("a@x.example", given_name="x" * 41), ["given_name", "40"]),
        ("contacts", contact("a@x.example", family_name="x" * 41), ["family_name", "40"]),
        ("contacts", contact("a" * 64 + "@" + "b" * 10 + ".example"), ["EMAIL1", "75"]),
        ("contacts", {"phone_numbers": [{"number": "1" * 41, "field": "PHONE1"}]}, ["PHONE1", "40"]),
        ("contacts", {"phone_numbers": [{"number": "1" * 21, "field": "PHONE4"}]}, ["PHONE4", "20"]),
        ("contacts", {"addresses": [{"field": "BILLING", "line1": "x" * 76}]}, ["BILLING line1", "75"]),
        ("contacts", {"addresses": [{"field": "BILLING", "country_code": "US"}]}, ["alpha-3"]),
        ("contacts", {"addresses": [{"field": "BILLING", "region": "Arizona"}]}, ["country_code is required"]),
        ("contacts", {"addresses": [{"field": "BILLING", "country_code": "USA", "region": "Atlantis"}]}, ["Region is invalid"]),
        ("contacts", contact("not-an-email"), ["email"]),
        ("contacts", contact("a@x.example", unknown_field=1), ["unknown_field"]),
        ("contacts", contact("a@x.example", social_accounts=[{"name": "a", "type": "Twitter"}]), ["social_accounts"]),
        ("companies", {"notes": "no name"}, ["company_name"]),
        ("products", {"name": "No price", "short_description": "s"}, ["price"]),
        ("products", {"name": "Float price", "price": 12.5, "short_description": "s"}, ["price"]),
        ("products", {"name": "Negative", "price": -1, "short_description": "s"}, ["price"]),
        ("products", {"name": "No short", "price": 1}, ["short_description"]),
        ("products", {"price": 1, "short_description": "s"}, ["name"]),
    ],
)
def test_invalid_bodies_get_keap_400(keap: httpx.Client, collection: str, body: dict[str, Any], words: list[str]) -> None:
    assert_error(keap.post(f"/v2/{collection}", json=body), 400, *words)


def test_limits_allow_the_documented_maximum(keap: httpx.Client) -> None:
    created(keap, "contacts", {
        "given_name": "x" * 40,
        "email_addresses": [{"email": "a" * 62 + "@x.example", "field": "EMAIL1"}, {"email": "b" * 88 + "@x.example", "field": "EMAIL2"}],
        "addresses": [{"field": "SHIPPING", "line1": "y" * 100, "postal_code": "z" * 20}],
    })


def test_regions_are_stored_as_keap_does(keap: httpx.Client) -> None:
    for given in ("AZ", "US-AZ", "arizona"):
        record = created(keap, "contacts", {"addresses": [{"field": "BILLING", "country_code": "USA", "region": given}]})
        address = record["addresses"][0]
        assert (address["region"], address["region_code"], address["country_code"]) == ("Arizona", "US-AZ", "USA")


def test_malformed_json_is_400(keap: httpx.Client) -> None:
    assert_error(keap.post("/v2/companies", content=b"{not json", headers={"content-type": "application/json"}), 400)


# --- listing -------------------------------------------------------------------------------------


def test_paging_with_tokens_and_page_size_limits(keap: httpx.Client) -> None:
    for number in range(7):
        created(keap, "companies", {"company_name": f"Company {number}"})
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": 3, **({"page_token": token} if token else {})}
        body = keap.get("/v2/companies", params=params).json()
        seen += [record["id"] for record in body["companies"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert seen == [str(n) for n in range(1, 8)] and pages == 3
    assert token == ""
    assert len(ids(keap.get("/v2/companies", params={"page_size": 1000}), "companies")) == 7
    assert len(ids(keap.get("/v2/companies", params={"page_size": 0}), "companies")) == 7
    assert_error(keap.get("/v2/companies", params={"page_size": 1001}), 400, "page_size")
    assert_error(keap.get("/v2/companies", params={"page_size": -1}), 400, "page_size")
    assert_error(keap.get("/v2/companies", params={"page_token": "garbage!"}), 400, "page_token")


def test_list_fields_hidden_unless_named(keap: httpx.Client) -> None:
    created(keap, "companies", {"company_name": "Acme", "notes": "secret", "email_address": {"email": "a@acme.example"}})
    default = keap.get("/v2/companies").json()["companies"][0]
    assert default == {"id": "1", "company_name": "Acme"}
    named = keap.get("/v2/companies", params={"fields": "company_name,email_address,update_time"}).json()["companies"][0]
    assert set(named) == {"id", "company_name", "email_address", "update_time"}
    single = keap.get("/v2/companies/1", params={"fields": "notes"}).json()
    assert single == {"id": "1", "notes": "secret"}
    assert "notes" in keap.get("/v2/companies/1").json()


def test_product_list_omits_inventory_count(keap: httpx.Client) -> None:
    created(keap, "products", product("Stocked", inventory={"inventory_count": 4, "inventory_limit": 1}))
    assert keap.get("/v2/products/1").json()["inventory"]["inventory_count"] == 4
    assert keap.get("/v2/products").json()["products"][0]["inventory"] == {"inventory_limit": 1}


def test_company_filters(keap: httpx.Client) -> None:
    created(keap, "companies", {"company_name": "Acme", "email_address": {"email": "a@acme.example"}, "address": {"locality": "Chandler", "country_code": "USA", "region": "AZ"}})
    created(keap, "companies", {"company_name": "Acme Widgets"})
    created(keap, "companies", {"company_name": "Globex"})
    listing = lambda text: ids(keap.get("/v2/companies", params={"filter": text}), "companies")  # noqa: E731
    assert listing("company_name==Acme") == ["1"]
    assert listing("company_name==acme") == ["1"]
    assert listing("name==Acme*") == ["1", "2"]
    assert listing("name==acme w*") == ["2"]
    assert listing("email==a@acme.example") == ["1"]
    assert listing("city==Chan*;state==Arizona") == ["1"]
    assert listing("company_id>1") == ["2", "3"]
    assert listing("company_id>=2;company_id<3") == ["2"]
    assert listing("company_id==3") == ["3"]
    assert listing("name==Acme*;company_id>1") == ["2"]
    assert_error(keap.get("/v2/companies", params={"filter": "colour==red"}), 400, "colour")
    assert_error(keap.get("/v2/companies", params={"filter": "company_name>Acme"}), 400, "==")
    assert_error(keap.get("/v2/companies", params={"filter": "no operator"}), 400)


def test_contact_filters(keap: httpx.Client) -> None:
    created(keap, "contacts", contact("mary@x.example", given_name="Mary", family_name="Smith"))
    created(keap, "contacts", contact("mark@y.example", given_name="Mark", family_name="Smithers"))
    created(keap, "contacts", {"phone_numbers": [{"number": "555", "field": "PHONE1"}], "given_name": "Zed"})
    listing = lambda text: ids(keap.get("/v2/contacts", params={"filter": text}), "contacts")  # noqa: E731
    assert listing("email==mary@x.example") == ["1"]
    assert listing("email==MAR*") == ["1", "2"]
    assert listing("given_name==Mar*;family_name==Smith") == ["1"]
    assert listing("family_name==Smi*") == ["1", "2"]
    assert listing("ids==1,3") == ["1", "3"]
    assert listing("contact_id<=2") == ["1", "2"]
    assert_error(keap.get("/v2/contacts", params={"filter": "since_time==2025-01-01T00:00:00.000Z"}), 400, "since_time")


def test_product_filters_and_ordering(keap: httpx.Client, clock: ManualClock) -> None:
    for name, sku in (("Banana", "SKU-2"), ("apple", "SKU-1"), ("Cherry", "X-3")):
        created(keap, "products", product(name, sku=sku))
        clock.now += 1
    keap.patch("/v2/products/1", json={"description": "edited last"})
    listing = lambda **params: ids(keap.get("/v2/products", params=params), "products")  # noqa: E731
    assert listing(filter="sku==SKU*") == ["1", "2"]
    assert listing(filter="sku==sku-1") == ["2"]
    assert listing(filter="name==Cherry") == ["3"]
    assert listing(filter="product_ids==2,3") == ["2", "3"]
    assert listing(filter="product_id>2") == ["3"]
    assert listing(order_by="name") == ["2", "1", "3"]
    assert listing(order_by="name desc") == ["3", "1", "2"]
    assert listing(order_by="sku asc") == ["2", "1", "3"]
    assert listing(order_by="last_updated_time desc") == ["1", "3", "2"]
    assert_error(keap.get("/v2/products", params={"order_by": "price"}), 400, "order_by")
    assert_error(keap.get("/v2/products", params={"order_by": "name sideways"}), 400, "direction")


def test_contact_and_company_ordering(keap: httpx.Client, clock: ManualClock) -> None:
    for email, name in (("b@x.example", "Beta"), ("a@x.example", "alpha"), ("c@x.example", "Gamma")):
        created(keap, "contacts", contact(email))
        created(keap, "companies", {"company_name": name, "email_address": {"email": email}})
        clock.now += 1
    keap.patch("/v2/contacts/2", json={"given_name": "Touched"})
    contacts = lambda order: ids(keap.get("/v2/contacts", params={"order_by": order}), "contacts")  # noqa: E731
    companies = lambda order: ids(keap.get("/v2/companies", params={"order_by": order}), "companies")  # noqa: E731
    assert contacts("update_time") == ["1", "3", "2"]
    assert contacts("email") == ["2", "1", "3"]
    assert contacts("id desc") == ["3", "2", "1"]
    assert contacts("create_time desc") == ["3", "2", "1"]
    assert companies("name") == ["2", "1", "3"]
    assert companies("email desc") == ["3", "1", "2"]


def test_time_filters_include_records_at_the_boundary(keap: httpx.Client, clock: ManualClock) -> None:
    stamps = []
    for number in range(3):
        stamps.append(created(keap, "companies", {"company_name": f"C{number}"})["update_time"])
        created(keap, "contacts", contact(f"p{number}@x.example"))
        clock.now += 0.001
    middle = stamps[1]
    companies = lambda text: ids(keap.get("/v2/companies", params={"filter": text}), "companies")  # noqa: E731
    contacts = lambda text: ids(keap.get("/v2/contacts", params={"filter": text}), "contacts")  # noqa: E731
    assert companies(f"since_time=={middle}") == ["2", "3"]
    assert companies(f"until_time=={middle}") == ["1", "2"]
    assert companies(f"since_time=={middle};until_time=={middle}") == ["2"]
    assert contacts(f"start_update_time=={middle}") == ["2", "3"]
    assert contacts(f"end_update_time=={middle}") == ["1", "2"]
    assert contacts("start_update_time==2025-04-18T20:13:20.001+02:00") == ["2", "3"]
    assert_error(keap.get("/v2/companies", params={"filter": "since_time==2025-04-18"}), 400, "ISO-8601")
    assert_error(keap.get("/v2/contacts", params={"filter": "start_update_time==yesterday"}), 400, "ISO-8601")


def test_edits_move_records_into_the_since_window(keap: httpx.Client, clock: ManualClock) -> None:
    created(keap, "companies", {"company_name": "Old"})
    created(keap, "companies", {"company_name": "Untouched"})
    clock.now += 60
    watermark = keap.patch("/v2/companies/1", json={"notes": "edited"}).json()["update_time"]
    assert ids(keap.get("/v2/companies", params={"filter": f"since_time=={watermark}"}), "companies") == ["1"]
