"""Every v2 record response the emulator gives validates against Keap's own OpenAPI 3.1 schemas.

The schemas are the extract in `keap_spec/schemas.json` (see its README). Besides the spec as written
(open objects), responses are checked against a closed copy, so a property the spec does not declare fails;
the one allowance is products' `description`, which SDK 2.0.26 models and the spec's update_mask name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator

from invoiced_keap.emulators.serve import BackgroundServer

SPEC = json.loads((Path(__file__).parent / "keap_spec" / "schemas.json").read_text(encoding="utf-8"))
UNDECLARED_BUT_SENT = {"RestV2Product_Detail": {"description"}, "RestV2Product_List": {"description"}}


def closed(schemas: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(schemas)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(result)
    for name, extra in UNDECLARED_BUT_SENT.items():
        result[name]["properties"].update({prop: {"type": "string"} for prop in extra})
    return result


SCHEMA_SETS = {"as published": SPEC["components"]["schemas"], "closed": closed(SPEC["components"]["schemas"])}


def assert_valid(operation: str, response: httpx.Response) -> None:
    schema_name = SPEC["operations"][operation].get(str(response.status_code))
    assert schema_name, f"{operation} does not declare status {response.status_code}: {response.text}"
    for label, schemas in SCHEMA_SETS.items():
        validator = OAS31Validator({"$ref": f"#/components/schemas/{schema_name}", "components": {"schemas": schemas}})
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())]
        assert not errors, f"{operation} {response.status_code} vs {schema_name} ({label}): {errors}"


@pytest.fixture
def keap(keap_server: BackgroundServer) -> Iterator[httpx.Client]:
    httpx.post(f"{keap_server.url}/_emulator/faults", json={"rate_limit": None}).raise_for_status()
    with httpx.Client(base_url=keap_server.url + "/crm/rest", headers={"X-Keap-API-Key": "test"}) as client:
        yield client


ADDRESS = {"line1": "1 Main St", "line2": "Suite 2", "locality": "Phoenix", "region": "AZ", "country_code": "USA", "postal_code": "85001", "zip_four": "1234"}
FULL = {
    "companies": {
        "company_name": "Acme",
        "address": ADDRESS,
        "email_address": {"email": "hi@acme.example", "field": "EMAIL1", "opt_in_reason": "asked"},
        "phone_number": {"number": "555-0100", "extension": "7", "type": "Work", "field": "PHONE1"},
        "fax_number": {"number": "555-0101", "type": "Work", "field": "FAX1"},
        "notes": "a note",
        "website": "https://acme.example",
        "custom_fields": [{"id": "3", "content": "blue"}],
    },
    "contacts": {
        "given_name": "Ann",
        "family_name": "Lee",
        "middle_name": "Q",
        "job_title": "CEO",
        "email_addresses": [{"email": "ann@x.example", "field": "EMAIL1"}, {"email": "ann2@x.example", "field": "EMAIL2"}],
        "phone_numbers": [{"number": "555-0102", "field": "PHONE1", "type": "Mobile"}],
        "fax_numbers": [{"number": "555-0103", "field": "FAX1"}],
        "addresses": [{**ADDRESS, "field": "BILLING"}, {**ADDRESS, "field": "SHIPPING"}],
        "social_accounts": [{"name": "ann", "type": "TWITTER"}],
        "custom_fields": [{"id": "4", "content": 12}],
    },
    "products": {
        "name": "Widget",
        "price": 1250,
        "short_description": "A widget",
        "description": "A long description",
        "sku": "W-1",
        "active": True,
        "shippable": True,
        "weight": 1.5,
        "taxable": False,
        "inventory": {"inventory_count": 3, "inventory_limit": 1, "out_of_stock_enabled": True},
    },
}
UPDATES = {
    "companies": ({"company_name": "Acme Inc", "address": {**ADDRESS, "region": "Texas"}}, "company_name,address"),
    "contacts": ({"given_name": "Anne", "phone_numbers": []}, "given_name,phone_numbers"),
    "products": ({"price": 99, "inventory_limit": 2, "name": "Widget 2"}, "price,inventory_limit,name"),
}
OPERATION_NAMES = {"companies": "Company", "contacts": "Contact", "products": "Product"}


@pytest.mark.parametrize("collection", ["companies", "contacts", "products"])
def test_responses_match_the_spec(keap: httpx.Client, collection: str) -> None:
    noun = OPERATION_NAMES[collection]
    plural = "Companies" if collection == "companies" else noun + "s"
    created = keap.post(f"/v2/{collection}", json=FULL[collection])
    assert created.status_code == 201
    assert_valid(f"create{noun}", created)
    record_id = created.json()["id"]
    keap.post(f"/v2/{collection}", json=FULL[collection]).raise_for_status()

    assert_valid(f"get{noun}", keap.get(f"/v2/{collection}/{record_id}"))
    body, mask = UPDATES[collection]
    assert_valid(f"update{noun}", keap.patch(f"/v2/{collection}/{record_id}", params={"update_mask": mask}, json=body))
    assert_valid(f"update{noun}", keap.patch(f"/v2/{collection}/{record_id}", json=body))

    first_page = keap.get(f"/v2/{collection}", params={"page_size": 1})
    assert first_page.json()["next_page_token"]
    assert_valid(f"list{plural}", first_page)
    assert_valid(f"list{plural}", keap.get(f"/v2/{collection}", params={"page_size": 1, "page_token": first_page.json()["next_page_token"]}))
    if collection != "products":
        everything = ",".join(sorted(set(FULL[collection]) | {"create_time", "update_time"}))
        assert_valid(f"list{plural}", keap.get(f"/v2/{collection}", params={"fields": everything}))

    assert_valid(f"list{plural}", keap.get(f"/v2/{collection}", params={"filter": "nonsense==1"}))
    assert_valid(f"get{noun}", keap.get(f"/v2/{collection}/424242"))
    assert_valid(f"create{noun}", keap.post(f"/v2/{collection}", json={"bogus": True}))
    deleted = keap.delete(f"/v2/{collection}/{record_id}")
    assert deleted.status_code == 204 and "204" in SPEC["operations"][f"delete{noun}"]
    assert_valid(f"delete{noun}", keap.delete(f"/v2/{collection}/{record_id}"))


def test_duplicate_option_update_matches_the_spec(keap: httpx.Client) -> None:
    keap.post("/v2/contacts", json=FULL["contacts"]).raise_for_status()
    again = keap.post("/v2/contacts", params={"duplicate_option": "Email"}, json=FULL["contacts"])
    assert again.status_code == 200
    assert_valid("createContact", again)
