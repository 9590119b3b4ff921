"""Every v2 response the emulator gives validates against Keap's own OpenAPI 3.1 schemas.

The schemas are the extract in `keap_spec/schemas.json` (see its README). Besides the spec as written
(open objects), responses are checked against a closed copy, so a property the spec does not declare fails;
the one allowance is products' `description`, which SDK 2.0.26 models and the spec's update_mask name.
The request models of the custom field and tag operations are checked against the request schemas.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from pydantic import BaseModel

from invoiced_keap.emulators.keap import bodies
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
        # the custom fields FULL's records carry: id 1 on companies, id 2 on contacts
        for collection, field in (("companies", {"label": "Colour", "field_type": "TEXT"}), ("contacts", {"label": "Score", "field_type": "WHOLE_NUMBER"})):
            client.post(f"/v2/{collection}/model/customFields", json=field).raise_for_status()
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
        "custom_fields": [{"id": "1", "content": "blue"}],
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
        "custom_fields": [{"id": "2", "content": 12}],
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


def test_custom_field_models_match_the_spec(keap: httpx.Client) -> None:
    for collection, (get_model, create_field) in {
        "companies": ("retrieveCompanyCustomFieldModel", "createCompanyCustomField"),
        "contacts": ("retrieveContactModel", "createContactCustomField"),
    }.items():
        created = keap.post(f"/v2/{collection}/model/customFields", json={"label": "Tier", "field_type": "DROPDOWN", "options": [{"label": "Gold"}]})
        assert created.status_code == 201
        assert_valid(create_field, created)
        assert_valid(create_field, keap.post(f"/v2/{collection}/model/customFields", json={"label": "No type"}))
        model = keap.get(f"/v2/{collection}/model")
        assert len(model.json()["custom_fields"]) == 2
        assert_valid(get_model, model)


def test_tag_responses_match_the_spec(keap: httpx.Client) -> None:
    category = keap.post("/v2/tags/categories", json={"name": "Billing", "description": "AR"})
    assert_valid("createTagCategory", category)
    assert_valid("createTagCategory", keap.post("/v2/tags/categories", json={"name": "billing"}))
    assert_valid("listTagCategories", keap.get("/v2/tags/categories"))
    tag = keap.post("/v2/tags", json={"name": "Invoiced: past due", "description": "AR", "category": {"id": category.json()["id"]}})
    assert tag.status_code == 201
    assert_valid("createTag", tag)
    tag_id = tag.json()["id"]
    assert_valid("createTag", keap.post("/v2/tags", json={"description": "no name"}))
    assert_valid("getTag", keap.get(f"/v2/tags/{tag_id}"))
    assert_valid("getTag", keap.get("/v2/tags/999"))
    assert_valid("listTags", keap.get("/v2/tags", params={"filter": f"category_id=={category.json()['id']}"}))

    contact = keap.post("/v2/contacts", json=FULL["contacts"]).json()["id"]
    company = keap.post("/v2/companies", json=FULL["companies"]).json()["id"]
    applied = keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact, "999"]})
    assert applied.json()["results"] == {contact: "SUCCESS", "999": "CONTACT_NOT_FOUND"}
    assert_valid("applyTags", applied)
    assert_valid("applyTags", keap.post("/v2/tags/999/contacts:applyTags", json={"contact_ids": [contact]}))
    assert keap.post(f"/v2/companies/{company}/tags/{tag_id}").status_code == 204 and "204" in SPEC["operations"]["addTagToCompany"]
    assert_valid("addTagToCompany", keap.post(f"/v2/companies/999/tags/{tag_id}"))

    assert_valid("listContactsWithTagId", keap.get(f"/v2/tags/{tag_id}/contacts"))
    assert_valid("listCompaniesForTagId", keap.get(f"/v2/tags/{tag_id}/companies"))
    assert_valid("listTagsForContact", keap.get(f"/v2/contacts/{contact}/tags"))
    assert_valid("listTagsForCompany", keap.get(f"/v2/companies/{company}/tags"))
    assert_valid("getContact", keap.get(f"/v2/contacts/{contact}", params={"fields": "tag_ids,groups,custom_fields"}))
    assert_valid("getCompany", keap.get(f"/v2/companies/{company}", params={"fields": "groups,custom_fields"}))

    removed = keap.post(f"/v2/tags/{tag_id}/contacts:removeTags", json={"contact_ids": [contact]})
    assert removed.status_code == 204 and "204" in SPEC["operations"]["removeTags"]
    assert_valid("removeTags", keap.post(f"/v2/tags/{tag_id}/contacts:removeTags", json={}))
    assert keap.delete(f"/v2/companies/{company}/tags/{tag_id}").status_code == 204 and "204" in SPEC["operations"]["removeTagFromCompany"]
    assert_valid("removeTagFromCompany", keap.delete(f"/v2/companies/{company}/tags/999"))


REQUEST_MODELS = {
    "createCompanyCustomField": bodies.CreateCustomFieldRequest,
    "createContactCustomField": bodies.CreateCustomFieldRequest,
    "createTag": bodies.TagRequest,
    "createTagCategory": bodies.TagCategoryRequest,
    "applyTags": bodies.ApplyRemoveTagRequest,
    "removeTags": bodies.ApplyRemoveTagRequest,
}


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The body model inside `X | None` or `list[X] | None`, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in getattr(annotation, "__args__", ()) if (found := nested_model(arg))), None)


def schema_differences(model: type[BaseModel], schema_name: str) -> list[str]:
    """How a request model differs from its schema: properties either side lacks, required ones it leaves
    optional (it may require more); nested models against the schemas the properties reference."""
    schema = SPEC["components"]["schemas"][schema_name]
    declared, mine = schema.get("properties", {}), model.model_fields
    found = [f"{schema_name}: {name} only in the spec" for name in sorted(set(declared) - set(mine))]
    found += [f"{schema_name}: {name} not in the spec" for name in sorted(set(mine) - set(declared))]
    found += [f"{schema_name}: {name} is optional" for name in schema.get("required", []) if name in mine and not mine[name].is_required()]
    for name, field in mine.items():
        inner, target = nested_model(field.annotation), referenced(declared.get(name, {}))
        if inner is not None and target is not None:
            found += schema_differences(inner, target)
    return found


def referenced(node: Any) -> str | None:
    """The schema a property refers to, directly or through `items`."""
    if isinstance(node, dict):
        if "$ref" in node:
            return str(node["$ref"]).rsplit("/", 1)[1]
        return next((name for value in node.values() if (name := referenced(value))), None)
    return None


@pytest.mark.parametrize("operation", sorted(REQUEST_MODELS))
def test_request_models_take_the_spec_properties(operation: str) -> None:
    assert schema_differences(REQUEST_MODELS[operation], SPEC["operations"][operation]["request"]) == []


def test_field_types_are_the_spec_enum() -> None:
    declared = SPEC["components"]["schemas"]["CreateCustomFieldRequest"]["properties"]["field_type"]["enum"]
    assert list(get_args(bodies.FieldType)) == declared
    assert SPEC["components"]["schemas"]["CustomFieldMetaData"]["properties"]["field_type"]["enum"] == declared
