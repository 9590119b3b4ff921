"""Invoiced emulator over HTTP: auth, list mechanics, customer and item rules."""

from __future__ import annotations


import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from tests.support import ManualClock



def create(invoiced_api: httpx.Client, path: str, **body: object) -> dict:
    response = invoiced_api.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- auth ---------------------------------------------------------------------------------------
def test_missing_and_wrong_keys_get_the_exact_401_bodies(invoiced_api: httpx.Client) -> None:
    missing = httpx.get(f"{invoiced_api.base_url}/customers")
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "invalid_request",
        "message": "Missing API key! HINT: You can pass in your API key as the username parameter using HTTP Basic Auth.",
    }
    assert missing.headers["www-authenticate"] == 'Basic realm="Invoiced"'
    wrong = httpx.get(f"{invoiced_api.base_url}/customers", auth=("INVALID", ""))
    assert wrong.json() == {"type": "invalid_request", "message": "We could not authenticate you with the API Key: INV*LID"}
    short = httpx.get(f"{invoiced_api.base_url}/customers", auth=("abc", ""))
    assert short.json()["message"] == "We could not authenticate you with the API Key: abc"


# --- lists --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/customers", "/items", "/catalog_items", "/events", "/webhooks"])
def test_every_list_sends_link_and_total_count(invoiced_api: httpx.Client, path: str) -> None:
    response = invoiced_api.get(path)
    assert response.status_code == 200 and response.json() == []
    assert response.headers["x-total-count"] == "0"
    base = f"{invoiced_api.base_url}{path}"
    assert response.headers["link"] == (
        f'<{base}?page=1>; rel="self", <{base}?page=1>; rel="first", <{base}?page=1>; rel="last"'
    )


def test_link_rels_on_a_middle_page_keep_the_query(invoiced_api: httpx.Client) -> None:
    for n in range(5):
        create(invoiced_api, "/customers", name=f"C{n}")
    response = invoiced_api.get("/customers", params={"page": 2, "per_page": 2, "sort": "name desc"})
    assert [c["name"] for c in response.json()] == ["C2", "C1"]
    links = dict(reversed(part.split("; ")) for part in response.headers["link"].split(", "))
    base = f"{invoiced_api.base_url}/customers?sort=name+desc"
    assert links == {
        'rel="self"': f"<{base}&page=2&per_page=2>",
        'rel="first"': f"<{base}&page=1&per_page=2>",
        'rel="previous"': f"<{base}&page=1&per_page=2>",
        'rel="next"': f"<{base}&page=3&per_page=2>",
        'rel="last"': f"<{base}&page=3&per_page=2>",
    }


def test_per_page_is_clamped_to_100(invoiced_api: httpx.Client, clocked_invoiced: InvoicedEmulator) -> None:
    clocked_invoiced.seed({"customers": [{"name": f"C{n}"} for n in range(101)]})
    response = invoiced_api.get("/customers", params={"per_page": 500})
    assert len(response.json()) == 100
    assert response.headers["x-total-count"] == "101"
    assert 'page=2>; rel="next"' in response.headers["link"]
    assert len(invoiced_api.get("/customers", params={"per_page": 0}).json()) == 1


def test_sort_filter_and_metadata_filter(invoiced_api: httpx.Client) -> None:
    create(invoiced_api, "/customers", name="Beta", country="US", metadata={"tier": "gold"})
    create(invoiced_api, "/customers", name="alpha", country="DE")
    create(invoiced_api, "/customers", name="Gamma", country="US", metadata={"tier": "silver"})
    names = lambda **params: [c["name"] for c in invoiced_api.get("/customers", params=params).json()]  # noqa: E731
    assert names() == ["Beta", "alpha", "Gamma"]
    assert names(sort="name asc") == ["alpha", "Beta", "Gamma"]
    assert names(sort="country asc,name desc") == ["alpha", "Gamma", "Beta"]
    assert names(sort="nonsense!! asc") == ["Beta", "alpha", "Gamma"]
    assert names(**{"filter[country]": "US"}) == ["Beta", "Gamma"]
    assert names(**{"metadata[tier]": "gold"}) == ["Beta"]
    refused = invoiced_api.get("/customers", params={"filter[notes]": "x"})
    assert refused.status_code == 400
    assert refused.json() == {"type": "invalid_request", "message": "Invalid filter parameter: notes", "param": "filter"}


def test_updated_after_and_before_are_strict(invoiced_api: httpx.Client, manual_clock: ManualClock) -> None:
    first = create(invoiced_api, "/customers", name="First")
    second = create(invoiced_api, "/customers", name="Same second")
    manual_clock.advance(1)
    third = create(invoiced_api, "/customers", name="Later")
    ids = lambda **params: [c["id"] for c in invoiced_api.get("/customers", params=params).json()]  # noqa: E731
    assert first["updated_at"] == second["updated_at"] == third["updated_at"] - 1
    assert ids(updated_after=first["updated_at"]) == [third["id"]]
    assert ids(updated_after=first["updated_at"] - 1) == [first["id"], second["id"], third["id"]]
    assert ids(updated_before=third["updated_at"]) == [first["id"], second["id"]]


# --- customers ----------------------------------------------------------------------------------
def test_number_is_generated_and_unique(invoiced_api: httpx.Client) -> None:
    create(invoiced_api, "/customers", name="Takes 2", number="CUST-0002")
    assert create(invoiced_api, "/customers", name="Auto")["number"] == "CUST-0001"
    assert create(invoiced_api, "/customers", name="Auto again")["number"] == "CUST-0003"
    clash = invoiced_api.post("/customers", json={"name": "Clash", "number": "CUST-0001"})
    assert clash.status_code == 400
    assert clash.json() == {
        "type": "invalid_request",
        "message": "The given customer number has already been taken: CUST-0001",
        "param": "number",
    }
    renumber = invoiced_api.patch("/customers/3", json={"number": "CUST-0002"})
    assert renumber.json()["message"] == "The given customer number has already been taken: CUST-0002"


def test_type_defaults_to_company_and_is_an_enum(invoiced_api: httpx.Client) -> None:
    assert create(invoiced_api, "/customers", name="Org")["type"] == "company"
    assert create(invoiced_api, "/customers", name="Charity", type="non_profit")["type"] == "non_profit"
    wrong = invoiced_api.post("/customers", json={"name": "X", "type": "alien"})
    assert wrong.status_code == 400
    assert wrong.json() == {"type": "invalid_request", "message": "Type must be one of the allowed values", "param": "type"}


def test_country_is_upper_cased_and_checked(invoiced_api: httpx.Client) -> None:
    assert create(invoiced_api, "/customers", name="Lower", country="de")["country"] == "DE"
    assert create(invoiced_api, "/customers", name="Default")["country"] == "US"
    for bad in ("XX", "DEU", "Germany"):
        refused = invoiced_api.post("/customers", json={"name": "Bad", "country": bad})
        assert (refused.status_code, refused.json()["param"]) == (400, "country")


def test_email_is_validated(invoiced_api: httpx.Client) -> None:
    assert create(invoiced_api, "/customers", name="Ok", email="a.b@example.com")["email"] == "a.b@example.com"
    refused = invoiced_api.post("/customers", json={"name": "Bad", "email": "not-an-email"})
    assert refused.json() == {"type": "invalid_request", "message": "Email must be a valid email address", "param": "email"}


def test_metadata_limits(invoiced_api: httpx.Client) -> None:
    eleven = {f"k{n}": "v" for n in range(11)}
    cases = {
        "There can only be up to 10 metadata values. 11 values were provided.": eleven,
        f"The `{'k' * 41}` metadata key exceeds the 40 character limit.": {"k" * 41: "v"},
        "The provided value for metadata.long exceeds the 255 character limit.": {"long": "v" * 256},
        "The provided value for metadata.nested exceeds the 255 character limit.": {"nested": {"a": "v" * 250}},
    }
    for message, metadata in cases.items():
        refused = invoiced_api.post("/customers", json={"name": "M", "metadata": metadata})
        assert refused.json() == {"type": "invalid_request", "message": message, "param": "metadata"}
    assert create(invoiced_api, "/customers", name="Ten", metadata=dict(list(eleven.items())[:10]))["metadata"]["k9"] == "v"


def test_metadata_patch_replaces_the_whole_map(invoiced_api: httpx.Client) -> None:
    customer = create(invoiced_api, "/customers", name="M", metadata={"a": "1", "b": "2"})
    patched = invoiced_api.patch(f"/customers/{customer['id']}", json={"metadata": {"c": "3"}}).json()
    assert patched["metadata"] == {"c": "3"}


def test_read_only_fields_are_mass_assignment_errors(invoiced_api: httpx.Client) -> None:
    for field in ("created_at", "updated_at", "object", "statement_pdf_url", "sign_up_url", "credit_balance"):
        refused = invoiced_api.post("/customers", json={"name": "R", field: 1})
        assert refused.status_code == 400
        assert refused.json()["message"] == f"Mass assignment of {field} on Customer is not allowed"
    customer = create(invoiced_api, "/customers", name="R", unknown_field="ignored")
    assert "unknown_field" not in customer
    assert invoiced_api.patch(f"/customers/{customer['id']}", json={"created_at": 5}).status_code == 400


def test_create_201_get_patch_200_delete_204(invoiced_api: httpx.Client, manual_clock: ManualClock) -> None:
    customer = create(invoiced_api, "/customers", name="Life")
    assert invoiced_api.get(f"/customers/{customer['id']}").json() == customer
    manual_clock.advance(10)
    patched = invoiced_api.patch(f"/customers/{customer['id']}", json={"phone": "555"})
    assert patched.status_code == 200
    assert patched.json()["updated_at"] == customer["updated_at"] + 10
    assert patched.json()["created_at"] == customer["created_at"]
    deleted = invoiced_api.delete(f"/customers/{customer['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert invoiced_api.get(f"/customers/{customer['id']}").status_code == 404


# --- items --------------------------------------------------------------------------------------
def test_item_ids_follow_the_real_pattern(invoiced_api: httpx.Client) -> None:
    assert create(invoiced_api, "/items", id="Setup:fee_2-b", name="Setup")["id"] == "Setup:fee_2-b"
    generated = create(invoiced_api, "/items", name="No id")["id"]
    assert len(generated) == 6 and generated.isalnum()
    for bad in ("x", "has space", "slash/no"):
        refused = invoiced_api.post("/items", json={"id": bad, "name": "Bad"})
        assert refused.json() == {"type": "invalid_request", "message": "ID is invalid", "param": "id"}
    duplicate = invoiced_api.post("/items", json={"id": "Setup:fee_2-b", "name": "Again"})
    assert duplicate.json()["message"] == "An item already exists with ID: Setup:fee_2-b"
    unknown = invoiced_api.post("/items", json={"name": "U", "colour": "red"})
    assert unknown.json()["param"] == "request"
    assert unknown.json()["message"].startswith('The option "colour" does not exist. Defined options are: "id", "name"')
    assert invoiced_api.post("/items", json={"id": "nm"}).json()["message"] == "Name is missing"


def test_item_patch_ignores_create_only_fields(invoiced_api: httpx.Client) -> None:
    create(invoiced_api, "/items", id="widget", name="Widget", unit_cost=5, currency="eur")
    patched = invoiced_api.patch(
        "/items/widget", json={"name": "Blue widget", "unit_cost": 99, "currency": "usd", "taxable": False, "id": "z"}
    ).json()
    assert (patched["id"], patched["name"], patched["unit_cost"], patched["currency"], patched["taxable"]) == (
        "widget", "Blue widget", 5, "eur", True,
    )


def test_item_delete_archives_and_frees_the_id(invoiced_api: httpx.Client) -> None:
    create(invoiced_api, "/items", id="old-sku", name="Old")
    create(invoiced_api, "/catalog_items", id="kept", name="Kept")
    assert invoiced_api.delete("/items/old-sku").status_code == 204
    assert [i["id"] for i in invoiced_api.get("/items").json()] == ["kept"]
    archived = invoiced_api.get("/items", params={"archived": 1}).json()
    assert [i["id"] for i in archived] == ["old-sku"] and "archived" not in archived[0]
    assert invoiced_api.get("/items/old-sku").status_code == 200  # the latest version, archived included
    assert create(invoiced_api, "/items", id="old-sku", name="Reborn")["name"] == "Reborn"
    assert sorted(i["id"] for i in invoiced_api.get("/items").json()) == ["kept", "old-sku"]
    assert invoiced_api.get("/events").json() == []
