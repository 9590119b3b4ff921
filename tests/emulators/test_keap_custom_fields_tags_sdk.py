"""The official Keap SDK (keap-core-v2-sdk 2.0.26, unchanged) drives custom fields and tags on the emulator.

What an accounts receivable flow does: define custom fields on companies and contacts, write a customer's
figures into them and read them back; find or create the tag "Invoiced: past due", apply it, list who has it,
remove it, on contacts and on companies.
"""

from __future__ import annotations

import pytest
from keap_core_v2_client import (
    ApiClient,
    ApplyRemoveTagRequest,
    CategoryReference,
    CompanyApi,
    ContactApi,
    CreateCompanyRequest,
    CreateCustomFieldOptionRequest,
    CreateCustomFieldRequest,
    CreateUpdateContactRequest,
    CreateUpdateTagCategoryRequest,
    CreateUpdateTagRequest,
    CustomFieldValue,
    EmailAddressRequest,
    TagsApi,
    UpdateCompanyRequest,
)
from keap_core_v2_client.exceptions import BadRequestException, NotFoundException

from invoiced_keap.emulators.keap import KeapEmulator
from tests.emulators.test_keap_records_sdk import sdk  # noqa: F401 (the fixture: the SDK's client on the emulator)

PAST_DUE = "Invoiced: past due"


def new_contact(api: ContactApi, given_name: str, email: str, **fields: object) -> str:
    request = CreateUpdateContactRequest(given_name=given_name, email_addresses=[EmailAddressRequest(email=email, field="EMAIL1")], **fields)
    return str(api.create_contact(request).id)


def test_custom_field_models_through_the_sdk(sdk: ApiClient) -> None:  # noqa: F811
    companies, contacts = CompanyApi(sdk), ContactApi(sdk)
    balance = companies.create_company_custom_field(CreateCustomFieldRequest(label="Invoiced balance", field_type="CURRENCY"))
    assert (balance.id, balance.label, balance.record_type, balance.field_type) == ("1", "Invoiced balance", "COMPANY", "CURRENCY")
    assert (balance.group_name, balance.field_name) == ("Custom Fields", "InvoicedBalance")
    status = companies.create_company_custom_field(CreateCustomFieldRequest(
        label="AR status", field_type="DROPDOWN", options=[CreateCustomFieldOptionRequest(label="Current"), CreateCustomFieldOptionRequest(label="Past due")],
    ))
    assert [option.label for option in status.options] == ["Current", "Past due"]
    assert len({option.id for option in status.options}) == 2
    # the same label on the other object is another field, with its own id
    contact_balance = contacts.create_contact_custom_field(CreateCustomFieldRequest(label="Invoiced balance", field_type="CURRENCY"))
    assert (contact_balance.id, contact_balance.record_type) == ("3", "CONTACT")

    company_model = companies.retrieve_company_custom_field_model()
    assert [(field.id, field.label) for field in company_model.custom_fields] == [("1", "Invoiced balance"), ("2", "AR status")]
    assert "custom_fields" in company_model.optional_properties
    contact_model = contacts.retrieve_contact_model()
    assert [field.id for field in contact_model.custom_fields] == ["3"]
    assert {"custom_fields", "tag_ids"} <= set(contact_model.optional_properties)

    with pytest.raises(BadRequestException) as refused:
        companies.create_company_custom_field(CreateCustomFieldRequest(label="invoiced BALANCE", field_type="TEXT"))
    assert "already exists" in str(refused.value.body)


def test_custom_field_values_through_the_sdk(sdk: ApiClient, keap_emulator: KeapEmulator) -> None:  # noqa: F811
    companies, contacts = CompanyApi(sdk), ContactApi(sdk)
    field = {name: companies.create_company_custom_field(CreateCustomFieldRequest(label=name, field_type=kind)).id for name, kind in (
        ("Balance", "CURRENCY"), ("Past due", "CURRENCY"), ("Oldest past due days", "WHOLE_NUMBER"),
        ("Open invoices", "WHOLE_NUMBER"), ("Last payment", "DATE"),
    )}  # fmt: skip
    created = companies.create_company(CreateCompanyRequest(company_name="Acme", custom_fields=[CustomFieldValue(id=field["Balance"], content=1250.5)]))
    assert [(value.id, value.content) for value in created.custom_fields] == [(field["Balance"], 1250.5)]

    figures = {"Balance": 99.95, "Past due": 40, "Oldest past due days": 31, "Open invoices": 2, "Last payment": "2025-04-01"}
    updated = companies.update_company(
        created.id,
        UpdateCompanyRequest(company_name="ignored", custom_fields=[CustomFieldValue(id=field[name], content=value) for name, value in figures.items()]),
        update_mask=["custom_fields"],
    )
    assert updated.company_name == "Acme"
    fetched = companies.get_company(created.id, fields=["custom_fields"])
    assert {value.id: value.content for value in fetched.custom_fields} == {field[name]: value for name, value in figures.items()}
    assert keap_emulator.custom_values("companies", created.id) == figures

    listed = companies.list_companies(fields=["company_name", "custom_fields"]).companies
    assert [len(company.custom_fields) for company in listed] == [5]
    assert companies.list_companies().companies[0].custom_fields is None  # lists leave them out unless named

    # custom_fields replaces the record's values wholesale: the ones not sent are gone
    companies.update_company(created.id, UpdateCompanyRequest(custom_fields=[CustomFieldValue(id=field["Balance"], content=0)]))
    assert keap_emulator.custom_values("companies", created.id) == {"Balance": 0}

    with pytest.raises(BadRequestException) as wrong_type:
        companies.update_company(created.id, UpdateCompanyRequest(custom_fields=[CustomFieldValue(id=field["Open invoices"], content="2")]))
    assert "needs a whole number" in str(wrong_type.value.body)

    score = contacts.create_contact_custom_field(CreateCustomFieldRequest(label="Open invoices", field_type="WHOLE_NUMBER")).id
    contact_id = new_contact(contacts, "Ann", "ann@x.example", custom_fields=[CustomFieldValue(id=score, content=3)])
    assert contacts.get_contact(contact_id, fields=["custom_fields"]).custom_fields[0].content == 3
    contacts.update_contact(contact_id, CreateUpdateContactRequest(custom_fields=[CustomFieldValue(id=score, content=4)]), update_mask=["custom_fields"])
    assert keap_emulator.custom_values("contacts", contact_id) == {"Open invoices": 4}
    with pytest.raises(BadRequestException) as foreign:  # a company's field is no contact's
        contacts.update_contact(contact_id, CreateUpdateContactRequest(custom_fields=[CustomFieldValue(id=field["Balance"], content=1)]))
    assert f"no Contact custom field has id {field['Balance']}" in str(foreign.value.body)


def test_tags_on_contacts_through_the_sdk(sdk: ApiClient, keap_emulator: KeapEmulator) -> None:  # noqa: F811
    tags, contacts = TagsApi(sdk), ContactApi(sdk)
    category = tags.create_tag_category(CreateUpdateTagCategoryRequest(name="Accounts receivable"))
    past_due = tags.create_tag(CreateUpdateTagRequest(name=PAST_DUE, description="Set by invoiced-keap", category=CategoryReference(id=category.id)))
    vip = tags.create_tag(CreateUpdateTagRequest(name="VIP"))
    assert (past_due.id, past_due.category.id, vip.id) == ("1", category.id, "2")
    assert past_due.create_time is not None and past_due.update_time == past_due.create_time
    assert tags.get_tag(past_due.id).description == "Set by invoiced-keap"
    assert [tag.id for tag in tags.list_tags(filter=f"name=={PAST_DUE}").tags] == [past_due.id]
    assert [tag.id for tag in tags.list_tags(filter="category_id==NONE").tags] == [vip.id]
    first = tags.list_tags(page_size=1, order_by="name desc")
    assert [tag.name for tag in first.tags] == ["VIP"] and first.next_page_token
    rest = tags.list_tags(page_size=1, order_by="name desc", page_token=first.next_page_token)
    assert [tag.name for tag in rest.tags] == [PAST_DUE] and not rest.next_page_token

    ids = [new_contact(contacts, name, f"{name.lower()}@x.example") for name in ("Ann", "Bob", "Cy")]
    applied = tags.apply_tags(past_due.id, ApplyRemoveTagRequest(contact_ids=[ids[0], ids[1], "99"]))
    assert applied.results == {ids[0]: "SUCCESS", ids[1]: "SUCCESS", "99": "CONTACT_NOT_FOUND"}
    assert tags.apply_tags(past_due.id, ApplyRemoveTagRequest(contact_ids=[ids[0]])).results == {ids[0]: "DUPLICATE"}
    tagged = tags.list_contacts_with_tag_id(past_due.id, order_by="email desc").contacts
    assert [(contact.id, contact.given_name, contact.email) for contact in tagged] == [(ids[1], "Bob", "bob@x.example"), (ids[0], "Ann", "ann@x.example")]
    assert all(contact.applied_time is not None for contact in tagged)
    assert [contact.id for contact in tags.list_contacts_with_tag_id(past_due.id, filter="given_name==ann").contacts] == [ids[0]]

    assert contacts.get_contact(ids[0], fields=["given_name", "tag_ids"]).tag_ids == [past_due.id]
    assert contacts.get_contact(ids[2], fields=["tag_ids"]).tag_ids == []
    [on_ann] = contacts.list_tags_for_contact(ids[0]).tags
    assert (on_ann.tag.id, on_ann.tag.name) == (past_due.id, PAST_DUE) and on_ann.applied_time
    assert keap_emulator.tagged_ids("contacts", past_due.id) == ids[:2]

    tags.remove_tags(past_due.id, ApplyRemoveTagRequest(contact_ids=[ids[0], ids[2]]))
    assert [contact.id for contact in tags.list_contacts_with_tag_id(past_due.id).contacts] == [ids[1]]
    assert contacts.get_contact(ids[0], fields=["tag_ids"]).tag_ids == []
    assert keap_emulator.tag_ids("contacts", ids[1]) == [past_due.id]
    with pytest.raises(NotFoundException):
        tags.apply_tags("99", ApplyRemoveTagRequest(contact_ids=[ids[0]]))


def test_tags_on_companies_through_the_sdk(sdk: ApiClient, keap_emulator: KeapEmulator) -> None:  # noqa: F811
    tags, companies = TagsApi(sdk), CompanyApi(sdk)
    past_due = tags.create_tag(CreateUpdateTagRequest(name=PAST_DUE))
    acme = companies.create_company(CreateCompanyRequest(company_name="Acme"))
    globex = companies.create_company(CreateCompanyRequest(company_name="Globex"))

    companies.add_tag_to_company(acme.id, past_due.id)
    companies.add_tag_to_company(acme.id, past_due.id)  # again: still one application
    companies.add_tag_to_company(globex.id, past_due.id)
    tagged = tags.list_companies_for_tag_id(past_due.id, order_by="company_name desc").tagged_companies
    assert [(entry.company.id, entry.company.company_name) for entry in tagged] == [(globex.id, "Globex"), (acme.id, "Acme")]
    assert all(entry.applied_time is not None for entry in tagged)
    assert companies.get_company(acme.id, fields=["groups"]).groups == past_due.id
    [on_acme] = companies.list_tags_for_company(acme.id).tags
    assert on_acme.tag.name == PAST_DUE

    companies.remove_tag_from_company(acme.id, past_due.id)
    assert [entry.company.id for entry in tags.list_companies_for_tag_id(past_due.id).tagged_companies] == [globex.id]
    assert companies.list_tags_for_company(acme.id).tags == []
    assert keap_emulator.tag_ids("companies", acme.id) == []
    with pytest.raises(NotFoundException):
        companies.add_tag_to_company("99", past_due.id)
    with pytest.raises(NotFoundException):
        companies.remove_tag_from_company(acme.id, "99")
