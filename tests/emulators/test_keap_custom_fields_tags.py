"""Keap custom fields and tags over HTTP: validation errors, what each field type takes, edits (update time and
REST hooks), the tag listings' filters, and the gateway's credentials and rate limits on the new routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.emulators.test_keap_hooks import Receiver, receiver, subscribe, wait_until  # noqa: F401 (receiver: fixture)
from tests.emulators.test_keap_records import assert_error, created
from tests.support import API_KEY, ManualClock

HEADERS = {"X-Keap-API-Key": API_KEY}


@pytest.fixture
def emulator(manual_clock: ManualClock) -> KeapEmulator:
    emulator = KeapEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock, hook_batch_delay=0.1, hook_retry_delays=(0.05,))
    emulator.faults.update({"rate_limit": None})  # the manual clock never moves a window on
    return emulator


@pytest.fixture
def server(emulator: KeapEmulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(emulator.asgi()) as server:
        yield server


@pytest.fixture
def keap(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/crm/rest", headers=HEADERS) as client:
        yield client


def field(keap: httpx.Client, collection: str, label: str, field_type: str, **extra: Any) -> str:
    response = keap.post(f"/v2/{collection}/model/customFields", json={"label": label, "field_type": field_type, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def contact_body(email: str, **fields: Any) -> dict[str, Any]:
    return {"given_name": email.split("@")[0].title(), "email_addresses": [{"email": email, "field": "EMAIL1"}], **fields}


def tag(keap: httpx.Client, name: str, **fields: Any) -> str:
    response = keap.post("/v2/tags", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --- custom field models -------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({"field_type": "TEXT"}, ["label", "required"]),
    ({"label": "Balance"}, ["field_type", "required"]),
    ({"label": "Balance", "field_type": "Currency"}, ["field_type", "CURRENCY", "WHOLE_NUMBER"]),  # v1's spelling
    ({"label": "Balance", "field_type": "MONEY"}, ["field_type"]),
    ({"label": "   ", "field_type": "TEXT"}, ["label", "blank"]),
    ({"label": "Balance", "field_type": "CURRENCY", "options": [{"label": "x"}]}, ["options", "DROPDOWN"]),
    ({"label": "Balance", "field_type": "CURRENCY", "group_id": "77"}, ["group", "77"]),
    ({"label": "Balance", "field_type": "CURRENCY", "default_value": "0"}, ["default_value"]),
    ({"label": 5, "field_type": "TEXT"}, ["label"]),
    (["Balance"], ["JSON object"]),
], ids=["no-label", "no-type", "v1-type", "bad-type", "blank-label", "options-on-currency", "unknown-group", "unknown-property", "label-not-text", "not-object"])
def test_custom_field_create_errors(keap: httpx.Client, body: Any, words: list[str]) -> None:
    for collection in ("companies", "contacts"):
        assert_error(keap.post(f"/v2/{collection}/model/customFields", json=body), 400, *words)
        assert keap.get(f"/v2/{collection}/model").json()["custom_fields"] == []


def test_custom_field_model_keeps_each_objects_fields(keap: httpx.Client) -> None:
    assert field(keap, "companies", "Balance", "CURRENCY") == "1"
    assert field(keap, "contacts", "Balance", "CURRENCY", group_id="1", user_group_id="9") == "2"
    assert_error(keap.post("/v2/companies/model/customFields", json={"label": "BALANCE", "field_type": "TEXT"}), 400, "already exists")
    assert field(keap, "companies", "Balance!", "TEXT") == "3"  # another label, the same letters: a numbered name

    model = keap.get("/v2/companies/model").json()
    assert [(f["id"], f["field_name"], f["group_id"], f["record_type"]) for f in model["custom_fields"]] == [
        ("1", "Balance", "2", "COMPANY"), ("3", "Balance0", "2", "COMPANY"),
    ]
    assert set(model["optional_properties"]) >= {"custom_fields", "groups"}
    contact_field = keap.get("/v2/contacts/model").json()["custom_fields"]
    assert contact_field == [{
        "id": "2", "label": "Balance", "record_type": "CONTACT", "field_type": "CURRENCY",
        "group_id": "1", "group_name": "Custom Fields", "field_name": "Balance",
    }]
    assert keap.get("/v2/products/model").status_code == 404  # products have no custom field model here


# --- custom field values -------------------------------------------------------------------------

GOOD_AND_BAD: dict[str, tuple[list[Any], list[Any]]] = {
    "TEXT": (["", "x" * 65535], [5, "x" * 65536, ["a"]]),
    "EMAIL": (["ar@acme.example"], ["not an email", 5]),
    "CURRENCY": ([0, 12.5, -3], ["12.50", True]),
    "DECIMAL_NUMBER": ([1.25], ["1.25"]),
    "WHOLE_NUMBER": ([0, 31], [1.5, "31", False]),
    "YEAR": ([2025], ["2025"]),
    "MONTH": ([1, 12], [0, 13]),
    "DAY_OF_WEEK": ([1, 7], [0, 8]),
    "DATE": (["2025-04-01"], ["2025-13-01", "2025-04-01T00:00:00Z", "04/01/2025", 20250401]),
    "DATE_TIME": (["2025-04-01T12:00:00.000Z"], ["2025-04-01", "2025-04-01T12:00:00"]),
    "YES_NO": ([True, False], ["yes", 1]),
    "DROPDOWN": (["Past due"], ["Paid", ["Past due"]]),
    "LIST_BOX": ([["Current", "Past due"], []], ["Current", ["Paid"]]),
    "USER": ([7, "7"], ["Ann"]),
}
OPTIONS = [{"label": "Current"}, {"label": "Past due"}]


@pytest.mark.parametrize("field_type", sorted(GOOD_AND_BAD))
def test_content_must_fit_the_field_type(keap: httpx.Client, field_type: str) -> None:
    extra = {"options": OPTIONS} if field_type in ("DROPDOWN", "LIST_BOX") else {}
    field_id = field(keap, "contacts", "Value", field_type, **extra)
    contact = created(keap, "contacts", contact_body("ann@x.example"))
    good, bad = GOOD_AND_BAD[field_type]
    for content in good:
        response = keap.patch(f"/v2/contacts/{contact['id']}", json={"custom_fields": [{"id": field_id, "content": content}]})
        assert response.status_code == 200, (content, response.text)
        assert response.json()["custom_fields"] == [{"id": field_id, "content": content}]
    for content in bad:
        refused = keap.patch(f"/v2/contacts/{contact['id']}", json={"custom_fields": [{"id": field_id, "content": content}]})
        assert_error(refused, 400, "custom_fields.0.content", field_type)
    fetched = keap.get(f"/v2/contacts/{contact['id']}", params={"fields": "custom_fields"}).json()
    assert fetched["custom_fields"] == [{"id": field_id, "content": good[-1]}]  # the refused ones changed nothing


@pytest.mark.parametrize("values, words", [
    ([{"id": "99", "content": 1}], ["custom_fields.0.id", "no Company custom field has id 99"]),
    ([{"id": "1", "content": 1}, {"id": "1", "content": 2}], ["custom_fields.1.id", "more than once"]),
    ([{"content": 1}], ["custom_fields.0.id", "required"]),
    ([{"id": 1, "content": 1}], ["custom_fields.0.id"]),
    ([{"id": "1", "content": 1, "label": "Balance"}], ["custom_fields.0.label"]),
    ({"id": "1", "content": 1}, ["custom_fields"]),
], ids=["unknown-id", "repeated-id", "no-id", "numeric-id", "unknown-property", "not-a-list"])
def test_custom_field_values_refused_on_create_and_update(keap: httpx.Client, values: Any, words: list[str]) -> None:
    field(keap, "companies", "Balance", "CURRENCY")
    assert_error(keap.post("/v2/companies", json={"company_name": "Acme", "custom_fields": values}), 400, *words)
    assert keap.get("/v2/companies").json()["companies"] == []
    acme = created(keap, "companies", {"company_name": "Acme"})
    assert_error(keap.patch(f"/v2/companies/{acme['id']}", json={"custom_fields": values}), 400, *words)


def test_a_contacts_field_id_is_unknown_on_companies(keap: httpx.Client) -> None:
    contact_field = field(keap, "contacts", "Balance", "CURRENCY")
    assert_error(keap.post("/v2/companies", json={"company_name": "Acme", "custom_fields": [{"id": contact_field, "content": 1}]}), 400, "no Company custom field")
    assert created(keap, "contacts", contact_body("a@x.example", custom_fields=[{"id": contact_field, "content": 1}]))["custom_fields"] == [{"id": contact_field, "content": 1}]


def test_custom_field_edit_moves_update_time_and_null_clears(keap: httpx.Client, manual_clock: ManualClock) -> None:
    balance, days = field(keap, "companies", "Balance", "CURRENCY"), field(keap, "companies", "Days", "WHOLE_NUMBER")
    acme = created(keap, "companies", {"company_name": "Acme", "custom_fields": [{"id": days, "content": 3}, {"id": balance, "content": 10}]})
    assert acme["custom_fields"] == [{"id": balance, "content": 10}, {"id": days, "content": 3}]  # in field id order
    created(keap, "companies", {"company_name": "Globex"})

    manual_clock.advance(5)
    patched = keap.patch(f"/v2/companies/{acme['id']}", params={"update_mask": "custom_fields"}, json={"custom_fields": [{"id": balance, "content": 12}, {"id": days, "content": None}]})
    assert patched.status_code == 200
    assert patched.json()["update_time"] == "2025-06-04T01:06:05.000Z" != acme["update_time"]
    assert patched.json()["custom_fields"] == [{"id": balance, "content": 12}]
    since = keap.get("/v2/companies", params={"filter": "since_time==2025-06-04T01:06:05.000Z", "fields": "custom_fields"}).json()["companies"]
    assert since == [{"id": acme["id"], "custom_fields": [{"id": balance, "content": 12}]}]
    # a mask without custom_fields leaves them; a mask with them and no values clears them
    keap.patch(f"/v2/companies/{acme['id']}", params={"update_mask": "company_name"}, json={"company_name": "Acme Inc", "custom_fields": []})
    assert keap.get(f"/v2/companies/{acme['id']}").json()["custom_fields"] == [{"id": balance, "content": 12}]
    keap.patch(f"/v2/companies/{acme['id']}", params={"update_mask": "custom_fields"}, json={})
    assert "custom_fields" not in keap.get(f"/v2/companies/{acme['id']}").json()


def test_custom_fields_are_named_in_fields_for_lists(keap: httpx.Client) -> None:
    score = field(keap, "contacts", "Score", "WHOLE_NUMBER")
    created(keap, "contacts", contact_body("a@x.example", custom_fields=[{"id": score, "content": 1}]))
    assert "custom_fields" not in keap.get("/v2/contacts").json()["contacts"][0]
    assert keap.get("/v2/contacts", params={"fields": "custom_fields"}).json()["contacts"] == [{"id": "1", "custom_fields": [{"id": score, "content": 1}]}]
    assert keap.get("/v2/contacts/1", params={"fields": "given_name"}).json() == {"id": "1", "given_name": "A"}


# --- tags ------------------------------------------------------------------------------------------


def test_tag_create_errors_and_limits(keap: httpx.Client) -> None:
    assert_error(keap.post("/v2/tags", json={"description": "no name"}), 400, "name is required")
    assert_error(keap.post("/v2/tags", json={"name": "  "}), 400, "name is required")
    assert_error(keap.post("/v2/tags", json={"name": "x", "category": {"id": "5"}}), 400, "Tag category with id 5 not found")
    assert_error(keap.post("/v2/tags", json={"name": "x", "category": {}}), 400, "category.id")
    assert_error(keap.post("/v2/tags", json={"name": "x", "colour": "red"}), 400, "colour")
    assert_error(keap.post("/v2/tags/categories", json={}), 400, "name is required")
    keap.post("/v2/tags/categories", json={"name": "AR"}).raise_for_status()
    assert_error(keap.post("/v2/tags/categories", json={"name": "ar"}), 400, "already exists")
    assert keap.get("/v2/tags").json() == {"tags": [], "next_page_token": ""}

    long_name = "n" * 300
    assert keap.post("/v2/tags", json={"name": long_name}).json()["name"] == long_name[:255]
    assert tag(keap, "Twin") != tag(keap, "Twin")  # tag names need not be unique
    assert_error(keap.get("/v2/tags/99"), 404, "Tag with id 99 not found")


def test_tag_listing_filters_and_orders(keap: httpx.Client, manual_clock: ManualClock) -> None:
    category = keap.post("/v2/tags/categories", json={"name": "AR"}).json()["id"]
    first = tag(keap, "Invoiced: past due", category={"id": category}, description="late")
    manual_clock.advance(60)
    second = tag(keap, "alpha")

    def listed(**params: str) -> list[str]:
        response = keap.get("/v2/tags", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["tags"]]

    assert listed() == [first, second]
    assert listed(filter="name==invoiced: PAST DUE") == [first]
    assert listed(filter="description==NONE") == [second]
    assert listed(filter=f"category_id=={category}") == [first]
    assert listed(filter=f"tag_ids=={second},77") == [second]
    assert listed(filter="since_create_time==2025-06-04T01:07:00.000Z") == [second]
    assert listed(filter="until_update_time==2025-06-04T01:06:59.999Z") == [first]
    assert listed(order_by="name") == [second, first]
    assert listed(order_by="create_time desc") == [second, first]
    assert_error(keap.get("/v2/tags", params={"filter": "colour==red"}), 400, "Invalid filter field")
    assert_error(keap.get("/v2/tags", params={"order_by": "id"}), 400, "Invalid order_by")
    assert_error(keap.get("/v2/tags", params={"page_size": "1001"}), 400, "page_size")
    assert keap.get("/v2/tags/categories", params={"filter": "name==ar"}).json()["tag_categories"][0]["id"] == category


@pytest.mark.parametrize("body, words", [
    ({}, ["contact_ids", "required"]),
    ({"contact_ids": "1"}, ["contact_ids"]),
    ({"contact_ids": [1]}, ["contact_ids.0"]),
    ({"contact_ids": ["1", "1"]}, ["only once"]),
], ids=["missing", "not-a-list", "numbers", "repeated"])
def test_apply_and_remove_bodies_are_checked(keap: httpx.Client, body: dict[str, Any], words: list[str]) -> None:
    tag_id = tag(keap, "T")
    created(keap, "contacts", contact_body("a@x.example"))
    for action in ("applyTags", "removeTags"):
        assert_error(keap.post(f"/v2/tags/{tag_id}/contacts:{action}", json=body), 400, *words)
    assert keap.get(f"/v2/tags/{tag_id}/contacts").json()["contacts"] == []


def test_unknown_tags_and_records_are_404(keap: httpx.Client) -> None:
    tag_id = tag(keap, "T")
    company = created(keap, "companies", {"company_name": "Acme"})["id"]
    for response in (
        keap.post("/v2/tags/99/contacts:applyTags", json={"contact_ids": []}),
        keap.post("/v2/tags/99/contacts:removeTags", json={"contact_ids": []}),
        keap.get("/v2/tags/99/contacts"),
        keap.get("/v2/tags/99/companies"),
        keap.post(f"/v2/companies/{company}/tags/99"),
        keap.delete(f"/v2/companies/{company}/tags/99"),
    ):
        assert_error(response, 404, "Tag with id 99 not found")
    assert_error(keap.post(f"/v2/companies/99/tags/{tag_id}"), 404, "Company with id 99 not found")
    assert_error(keap.get("/v2/companies/99/tags"), 404, "Company with id 99 not found")
    assert_error(keap.get("/v2/contacts/99/tags"), 404, "Contact with id 99 not found")


def test_a_deleted_tag_comes_off_every_record_and_is_gone(keap: httpx.Client, emulator: KeapEmulator) -> None:
    """`DELETE /v2/tags/{tag_id}` (deleteTag: 204), as a Keap user may do it: the sync must find it gone."""
    kept, deleted = tag(keap, "Kept"), tag(keap, "Invoiced: past due")
    company = created(keap, "companies", {"company_name": "Acme"})["id"]
    contact = created(keap, "contacts", contact_body("jane@example.com"))["id"]
    for tag_id in (kept, deleted):
        keap.post(f"/v2/companies/{company}/tags/{tag_id}").raise_for_status()
        keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact]}).raise_for_status()
    before = keap.get(f"/v2/companies/{company}", params={"fields": "update_time"}).json()["update_time"]

    response = keap.delete(f"/v2/tags/{deleted}")

    assert response.status_code == 204 and response.content == b""
    assert_error(keap.get(f"/v2/tags/{deleted}"), 404, f"Tag with id {deleted} not found")
    assert_error(keap.delete(f"/v2/tags/{deleted}"), 404, f"Tag with id {deleted} not found")
    assert [item["id"] for item in keap.get("/v2/tags").json()["tags"]] == [kept]
    assert keap.get(f"/v2/companies/{company}", params={"fields": "groups,update_time"}).json() == {
        "id": company, "groups": kept, "update_time": before}
    assert keap.get(f"/v2/contacts/{contact}", params={"fields": "tag_ids"}).json()["tag_ids"] == [kept]


def test_a_deleted_custom_field_takes_its_values_with_it(keap: httpx.Client) -> None:
    """`DELETE /v2/{companies,contacts}/model/customFields/{custom_field_id}` (204); 404 for another object's field."""
    balance, notes = field(keap, "companies", "Invoiced balance", "CURRENCY"), field(keap, "companies", "Notes", "TEXT")
    nickname = field(keap, "contacts", "Nickname", "TEXT")
    company = created(keap, "companies", {"company_name": "Acme", "custom_fields": [
        {"id": balance, "content": 70}, {"id": notes, "content": "VIP"}]})["id"]

    assert_error(keap.delete(f"/v2/companies/model/customFields/{nickname}"), 404,
                 f"Company custom field with id {nickname} not found")
    response = keap.delete(f"/v2/companies/model/customFields/{balance}")

    assert response.status_code == 204
    assert [item["id"] for item in keap.get("/v2/companies/model").json()["custom_fields"]] == [notes]
    assert keap.get(f"/v2/companies/{company}", params={"fields": "custom_fields"}).json()["custom_fields"] == [
        {"id": notes, "content": "VIP"}]
    assert_error(keap.patch(f"/v2/companies/{company}", params={"update_mask": "custom_fields"},
                            json={"custom_fields": [{"id": balance, "content": 1}]}), 400, f"no Company custom field has id {balance}")
    assert keap.delete(f"/v2/contacts/model/customFields/{nickname}").status_code == 204


def test_tagging_is_an_edit_of_the_record(keap: httpx.Client, manual_clock: ManualClock) -> None:
    tag_id = tag(keap, "Invoiced: past due")
    contact = created(keap, "contacts", contact_body("a@x.example"))
    company = created(keap, "companies", {"company_name": "Acme"})

    def update_time(collection: str, record_id: str) -> str:
        return str(keap.get(f"/v2/{collection}/{record_id}", params={"fields": "update_time"}).json()["update_time"])

    manual_clock.advance(1)
    keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact["id"]]}).raise_for_status()
    assert keap.post(f"/v2/companies/{company['id']}/tags/{tag_id}").status_code == 204
    applied_at = "2025-06-04T01:06:01.000Z"
    assert update_time("contacts", contact["id"]) == update_time("companies", company["id"]) == applied_at
    assert keap.get(f"/v2/contacts/{contact['id']}/tags").json()["tags"][0]["applied_time"] == applied_at

    manual_clock.advance(1)  # again: nothing changes, not even the applied time
    assert keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact["id"]]}).json() == {"results": {contact["id"]: "DUPLICATE"}}
    assert keap.post(f"/v2/companies/{company['id']}/tags/{tag_id}").status_code == 204
    assert update_time("contacts", contact["id"]) == update_time("companies", company["id"]) == applied_at
    assert keap.get(f"/v2/tags/{tag_id}/companies").json()["tagged_companies"][0]["applied_time"] == applied_at

    manual_clock.advance(1)
    assert keap.post(f"/v2/tags/{tag_id}/contacts:removeTags", json={"contact_ids": [contact["id"], "99"]}).status_code == 204
    assert keap.delete(f"/v2/companies/{company['id']}/tags/{tag_id}").status_code == 204
    assert update_time("contacts", contact["id"]) == update_time("companies", company["id"]) == "2025-06-04T01:06:03.000Z"
    changed = keap.get("/v2/contacts", params={"filter": "start_update_time==2025-06-04T01:06:03.000Z"}).json()["contacts"]
    assert [item["id"] for item in changed] == [contact["id"]]

    manual_clock.advance(1)  # removing what is not there changes nothing
    assert keap.delete(f"/v2/companies/{company['id']}/tags/{tag_id}").status_code == 204
    assert update_time("companies", company["id"]) == "2025-06-04T01:06:03.000Z"


def test_tag_properties_are_shown_when_named(keap: httpx.Client) -> None:
    tags = [tag(keap, name) for name in ("a", "b", "c")]
    contact = created(keap, "contacts", contact_body("a@x.example"))["id"]
    for tag_id in (tags[2], tags[0]):
        keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact]}).raise_for_status()
    assert "tag_ids" not in keap.get(f"/v2/contacts/{contact}").json()
    assert keap.get(f"/v2/contacts/{contact}", params={"fields": "tag_ids,groups"}).json() == {"id": contact, "tag_ids": [tags[0], tags[2]], "groups": f"{tags[0]},{tags[2]}"}
    assert keap.get("/v2/contacts", params={"fields": "tag_ids"}).json()["contacts"] == [{"id": contact, "tag_ids": [tags[0], tags[2]]}]
    patched = keap.patch(f"/v2/contacts/{contact}", params={"fields": "tag_ids"}, json={"given_name": "Ann"})
    assert patched.json() == {"id": contact, "tag_ids": [tags[0], tags[2]]}
    company = keap.post("/v2/companies", params={"fields": "groups,company_name"}, json={"company_name": "Acme"})
    assert company.json() == {"id": "1", "company_name": "Acme"}  # no tags: no groups


def test_tags_are_not_written_by_a_record_update(keap: httpx.Client) -> None:
    """`UpdateCompanyRequest` and `CreateUpdateContactRequest` have no `groups` or `tag_ids` property (the
    `update_mask` enums list them among read-only names such as `id`): a tag goes on by the tag calls only, so a
    record's custom values and its tag are two writes."""
    tag_id = tag(keap, "T")
    company = created(keap, "companies", {"company_name": "Acme"})["id"]
    contact = created(keap, "contacts", contact_body("a@x.example"))["id"]
    assert_error(keap.patch(f"/v2/companies/{company}", params={"update_mask": "groups"}, json={"groups": tag_id}), 400, "groups")
    assert_error(keap.patch(f"/v2/contacts/{contact}", params={"update_mask": "tag_ids"}, json={"tag_ids": [tag_id]}), 400, "tag_ids")
    masked = keap.patch(f"/v2/companies/{company}", params={"update_mask": ["groups", "notes"], "fields": "groups,notes"},
                        json={"notes": "n"})
    assert masked.json() == {"id": company, "notes": "n"}  # a read-only name in the mask changes nothing


def test_tagged_listings_filter_and_forget_deleted_records(keap: httpx.Client, manual_clock: ManualClock) -> None:
    tag_id = tag(keap, "T")
    ann = created(keap, "contacts", contact_body("ann@x.example", family_name="Lee"))["id"]
    bob = created(keap, "contacts", {"given_name": "Bob", "phone_numbers": [{"number": "555-0100", "field": "PHONE1"}]})["id"]
    keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [ann]}).raise_for_status()
    manual_clock.advance(10)
    keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [bob]}).raise_for_status()

    def tagged(**params: str) -> list[str]:
        response = keap.get(f"/v2/tags/{tag_id}/contacts", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["contacts"]]

    assert tagged(filter="email==NONE") == [bob]
    assert tagged(filter="family_name==lee") == [ann]
    assert tagged(filter="since_applied_time==2025-06-04T01:06:10.000Z") == [bob]
    assert tagged(order_by="applied_time desc") == [bob, ann]
    assert tagged(page_size="1", page_token=keap.get(f"/v2/tags/{tag_id}/contacts", params={"page_size": 1}).json()["next_page_token"]) == [bob]
    assert_error(keap.get(f"/v2/tags/{tag_id}/contacts", params={"order_by": "id"}), 400, "Invalid order_by")
    assert keap.get(f"/v2/tags/{tag_id}/contacts", params={"filter": "email==ann@x.example"}).json()["contacts"] == [
        {"id": ann, "given_name": "Ann", "family_name": "Lee", "email": "ann@x.example", "applied_time": "2025-06-04T01:06:00.000Z"}
    ]

    assert keap.delete(f"/v2/contacts/{ann}").status_code == 204
    assert tagged() == [bob]
    company = created(keap, "companies", {"company_name": "Acme", "email_address": {"email": "hi@acme.example", "field": "EMAIL1"}})["id"]
    keap.post(f"/v2/companies/{company}/tags/{tag_id}").raise_for_status()
    entries = keap.get(f"/v2/tags/{tag_id}/companies", params={"filter": "email==hi@acme.example"}).json()["tagged_companies"]
    assert [entry["company"] for entry in entries] == [{"id": company, "company_name": "Acme"}]  # as lists show companies
    assert keap.get(f"/v2/tags/{tag_id}/companies", params={"filter": "email==NONE"}).json()["tagged_companies"] == []
    assert keap.delete(f"/v2/companies/{company}").status_code == 204
    assert keap.get(f"/v2/tags/{tag_id}/companies").json()["tagged_companies"] == []


# --- hooks, credentials, rate limits -------------------------------------------------------------------


def test_custom_field_and_tag_edits_fire_rest_hooks(keap: httpx.Client, receiver: Receiver) -> None:  # noqa: F811
    for event_key in ("company.edit", "contact.edit"):
        subscribe(keap, receiver, event_key)
    balance = field(keap, "companies", "Balance", "CURRENCY")
    tag_id = tag(keap, "Invoiced: past due")
    company = created(keap, "companies", {"company_name": "Acme"})["id"]
    contact = created(keap, "contacts", contact_body("a@x.example"))["id"]

    keap.patch(f"/v2/companies/{company}", json={"custom_fields": [{"id": balance, "content": 5}]}).raise_for_status()
    keap.post(f"/v2/companies/{company}/tags/{tag_id}").raise_for_status()
    keap.post(f"/v2/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [contact]}).raise_for_status()
    keap.post(f"/v2/tags/{tag_id}/contacts:removeTags", json={"contact_ids": [contact]}).raise_for_status()

    wait_until(lambda: sum(len(payload["object_keys"]) for payload in receiver.deliveries) == 4)
    keys = {(payload["event_key"], key["id"]) for payload in receiver.deliveries for key in payload["object_keys"]}
    assert keys == {("company.edit", int(company)), ("contact.edit", int(contact))}
    assert sorted(payload["event_key"] for payload in receiver.deliveries for _ in payload["object_keys"]) == ["company.edit"] * 2 + ["contact.edit"] * 2


NEW_ROUTES = [
    ("GET", "/v2/companies/model", None),
    ("POST", "/v2/contacts/model/customFields", {"label": "x", "field_type": "TEXT"}),
    ("GET", "/v2/tags", None),
    ("POST", "/v2/tags", {"name": "x"}),
    ("POST", "/v2/tags/1/contacts:applyTags", {"contact_ids": []}),
    ("GET", "/v2/tags/1/companies", None),
    ("DELETE", "/v2/tags/1", None),
]


@pytest.mark.parametrize("method, path, body", NEW_ROUTES, ids=[f"{m} {p}" for m, p, _ in NEW_ROUTES])
def test_new_routes_need_credentials_and_count_against_the_limits(server: BackgroundServer, method: str, path: str, body: Any) -> None:
    url = f"{server.url}/crm/rest{path}"
    refused = httpx.request(method, url, json=body)
    assert refused.status_code == 401
    assert refused.json()["fault"]["detail"]["errorcode"] == "keymanagement.service.invalid_access_token"

    httpx.post(f"{server.url}/_emulator/faults", json={"rate_limit": {"per_minute": 2}}).raise_for_status()
    httpx.post(f"{server.url}/crm/rest/v2/tags", headers=HEADERS, json={"name": "T"}).raise_for_status()  # call 1
    allowed = httpx.request(method, url, headers=HEADERS, json=body)  # call 2
    assert allowed.status_code < 300, allowed.text
    assert allowed.headers["x-keap-product-throttle-used"] == "2"
    throttled = httpx.request(method, url, headers=HEADERS, json=body)
    assert throttled.status_code == 429
    assert throttled.json()["message"] == "Quota Exceeded"


# --- the emulator's helpers for tests ------------------------------------------------------------------


def test_python_helpers_set_up_fields_and_tags_as_a_user_would(emulator: KeapEmulator, keap: httpx.Client) -> None:
    balance = emulator.create_custom_field("companies", "Balance", "CURRENCY")
    assert balance["id"] == "1" and emulator.custom_fields("companies") == [balance]
    with pytest.raises(Exception, match="field_type"):
        emulator.create_custom_field("companies", "Bad", "Currency")
    past_due = emulator.create_tag("Invoiced: past due", description="late")
    company = created(keap, "companies", {"company_name": "Acme", "custom_fields": [{"id": balance["id"], "content": 7}]})["id"]
    assert emulator.custom_values("companies", company) == {"Balance": 7}

    assert emulator.apply_tag("companies", company, past_due["id"]) is True
    assert emulator.apply_tag("companies", company, past_due["id"]) is False
    assert emulator.tag_ids("companies", company) == [past_due["id"]] and emulator.tagged_ids("companies", past_due["id"]) == [company]
    assert keap.get(f"/v2/companies/{company}", params={"fields": "groups"}).json()["groups"] == past_due["id"]
    assert emulator.apply_tag("companies", company, past_due["id"], applied=False) is True
    assert emulator.tagged_ids("companies", past_due["id"]) == []

    emulator.reset()
    assert emulator.custom_fields("companies") == [] and keap.get("/v2/tags").json()["tags"] == []
    assert emulator.create_tag("again")["id"] == "1"
