"""The flows as data: membership, profiles, configuration overrides and each rule's transforms."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM
from invoiced_keap.flows import CATALOGUE, FieldRule, build_flows, flow_of, profile_flows
from invoiced_keap.mapping import Mapped, Record


@pytest.mark.parametrize(("customer_type", "flow"), [
    ("company", "companies"), ("government", "companies"), ("non_profit", "companies"), (None, "companies"),
    ("person", "contacts"),
])
def test_a_customer_belongs_to_the_flow_of_its_type(customer_type: str | None, flow: str) -> None:
    customer = {"name": "X"} if customer_type is None else {"name": "X", "type": customer_type}
    assert flow_of(CUSTOMER, customer) == flow
    assert flow_of(CUSTOMER, customer, {"products": CATALOGUE["products"]}) is None


def test_items_belong_to_products() -> None:
    assert flow_of(ITEM, {"id": "x", "name": "Widget"}) == "products"


def to_keap(rule: FieldRule, invoiced: Record, keap: Record | None = None) -> Mapped:
    return rule.write("keap", rule.value("invoiced", invoiced), keap or {})


def to_invoiced(rule: FieldRule, keap: Record) -> Mapped:
    return rule.write("invoiced", rule.value("keap", keap), {})


def rule_names(profile: str, overrides: dict | None = None) -> dict[str, list[str]]:
    return {name: [rule.name for rule in flow.rules] for name, flow in build_flows(profile, overrides).items()}


PEOPLE_OF_COMPANIES = ["name", "email", "phone", "title", "address", "company"]


def test_profiles() -> None:
    assert rule_names("spec") == {"companies": ["name"], "contacts": [], "products": ["name", "description"],
                                  "company_contacts": PEOPLE_OF_COMPANIES}  # built if configured on; not run by default
    assert profile_flows("spec") == ["companies", "contacts", "products"]
    assert rule_names("default") == {"companies": ["name", "email", "phone", "address"],
                                     "contacts": ["name", "email", "phone", "address"],
                                     "products": ["name", "description"], "company_contacts": PEOPLE_OF_COMPANIES}
    assert profile_flows("default") == ["companies", "contacts", "products", "company_contacts"]


def test_configuration_adds_and_drops_rules() -> None:
    overrides = {"companies": {"drop": ["phone"], "add": [{"name": "website", "invoiced": "attention_to", "keap": "website"}]},
                 "contacts": {"add": ["email"]}}
    assert rule_names("spec", overrides) == {"companies": ["name", "website"], "contacts": ["email"],
                                             "products": ["name", "description"], "company_contacts": PEOPLE_OF_COMPANIES}
    website = build_flows("spec", overrides)["companies"].rule("website")
    assert to_keap(website, {"attention_to": " acme.example "}).fields == {"website": "acme.example"}


@pytest.mark.parametrize(("profile", "overrides", "message"), [
    ("fancy", None, "unknown profile"),
    ("default", {"invoices": {}}, "unknown flow"),
    ("default", {"companies": {"add": ["colour"]}}, "has no rule 'colour'"),
    ("default", {"companies": {"add": [{"name": "x", "keap": "x"}]}}, "lacks ['invoiced']"),
    ("default", {"companies": {"add": ["email"]}}, "duplicate rules"),
    # an added rule maps one free text field to one free text field no other rule maps
    ("default", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": "notes", "bogus": 1}]}},
     "flow.companies.add: unknown key 'bogus'"),
    ("default", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": "company_name"}]}},
     "flow.companies: rule 'x': keap = 'company_name' is already mapped by rule 'name'"),
    ("spec", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": "notes"},
                                    {"name": "y", "invoiced": "tax_id", "keap": "notes"}]}},
     "rule 'y': keap = 'notes' is already mapped by rule 'x'"),
    ("spec", {"contacts": {"add": [{"name": "x", "invoiced": "notes", "keap": "given_name"}]}},
     "rule 'x': keap = 'given_name' is already used by the create-only rule 'name'"),  # contacts' create-only name
    ("spec", {"products": {"drop": ["description"],
                           "add": [{"name": "x", "invoiced": "description", "keap": "short_description"}]}},
     "flow.products: rule 'x': keap = 'short_description' is already set on create (create-only)"),
    ("default", {"companies": {"add": [{"name": "x", "invoiced": "phone", "keap": "notes"}]}},
     "rule 'x': invoiced = 'phone' is already mapped by rule 'phone'"),
    ("spec", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": "notes"},
                                    {"name": "y", "invoiced": "notes", "keap": "website"}]}},
     "rule 'y': invoiced = 'notes' is already mapped by rule 'x'"),
    *[("spec", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": keap}]}},
       f"flow.companies.add: keap = {keap!r} is no free-text field of Keap companies")
      for keap in ("id", "update_time", "create_time", "address", "email_address", "custom_fields", "groups")],
    *[("spec", {"contacts": {"add": [{"name": "x", "invoiced": "notes", "keap": keap}]}},
       f"flow.contacts.add: keap = {keap!r} is no free-text field of Keap contacts")
      for keap in ("email_addresses", "addresses", "company", "tag_ids", "source_type")],
    *[("spec", {"companies": {"add": [{"name": "x", "invoiced": invoiced, "keap": "notes"}]}},
       f"flow.companies.add: invoiced = {invoiced!r} is no free-text field of an Invoiced customer")
      for invoiced in ("id", "metadata", "type", "updated_at", "created_at", "payment_source", "taxes", "email")],
    ("spec", {"products": {"add": [{"name": "x", "invoiced": "unit_cost", "keap": "top_html"}]}},
     "flow.products.add: invoiced = 'unit_cost' is no free-text field of an Invoiced item"),
    ("spec", {"companies": {"add": [{"name": "x", "invoiced": 3, "keap": "notes"}]}}, "invoiced = 3: expected a field name"),
])
def test_bad_configuration_is_refused(profile: str, overrides: dict | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_flows(profile, overrides)


def test_company_rules_fill_keap_objects() -> None:
    flow = CATALOGUE["companies"]
    customer = {"name": "Acme", "email": "a@acme.example", "phone": "+1 555 0100", "address1": "1 Main St",
                "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US"}
    keap: dict = {"email_address": {"email": "old@acme.example", "field": "EMAIL1", "is_opt_in": True}}
    for rule in flow.rules:
        keap.update(to_keap(rule, customer, keap).fields)
    assert keap["company_name"] == "Acme"
    assert keap["email_address"] == {"email": "a@acme.example", "field": "EMAIL1", "is_opt_in": True}
    assert keap["phone_number"] == {"number": "+1 555 0100", "field": "PHONE1"}
    assert keap["address"] == {"line1": "1 Main St", "line2": None, "locality": "Springfield", "region": "Illinois",
                               "region_code": "US-IL", "zip_code": "62701", "postal_code": None,
                               "country_code": "USA"}
    back: dict = {}
    for rule in flow.rules:
        back.update(to_invoiced(rule, keap).fields)
    assert back == {**customer, "address2": None}


def test_contact_rules_own_their_slots_only() -> None:
    flow = CATALOGUE["contacts"]
    keap = {"given_name": "J", "phone_numbers": [{"number": "1", "field": "PHONE2"}],
            "addresses": [{"line1": "Dock 4", "field": "SHIPPING"}]}
    customer = {"name": "Jane Cooper", "phone": "+1 555 0142", "city": "Austin", "country": "US"}
    assert to_keap(flow.rule("name"), customer).fields == {"given_name": "Jane", "family_name": "Cooper"}
    assert to_keap(flow.rule("phone"), customer, keap).fields == {
        "phone_numbers": [{"number": "1", "field": "PHONE2"}, {"number": "+1 555 0142", "field": "PHONE1"}]}
    addresses = to_keap(flow.rule("address"), customer, keap).fields["addresses"]
    assert addresses[0] == {"line1": "Dock 4", "field": "SHIPPING"}
    assert addresses[1]["field"] == "BILLING" and addresses[1]["locality"] == "Austin"
    assert to_keap(flow.rule("email"), {"email": None}, {"email_addresses": [{"email": "x@y", "field": "EMAIL1"}]}
                                      ).fields == {"email_addresses": []}


def test_product_create_fields() -> None:
    extras = CATALOGUE["products"].keap_create({"id": "setup-fee", "name": "Setup fee", "unit_cost": 499.5,
                                                "currency": "usd"})
    assert extras.fields == {"sku": "setup-fee", "price": 49950, "short_description": "Setup fee"}


def test_a_second_flow_on_a_keap_object_keeps_its_own_marks() -> None:
    people = replace(CATALOGUE["contacts"], name="company_contacts")
    marks = {flow.mark(stream) for flow in (CATALOGUE["contacts"], people) for stream in ("invoiced", "events", "keap")}
    assert len(marks) == 6
    assert people.keap == CATALOGUE["contacts"].keap and people.keap_fields == CATALOGUE["contacts"].keap_fields


def test_the_free_text_fields_an_added_rule_may_map_are_the_apis_own() -> None:
    """The declared text fields are writable strings of the APIs (as their emulators take them)."""
    from invoiced_keap.emulators.invoiced import customers, items
    from invoiced_keap.emulators.keap.bodies import CompanyRequest, ContactRequest, ProductFields

    assert set(customers._FREE_TEXT) - {"notes"} <= CUSTOMER.text_fields <= set(customers.NORMALISERS)
    assert ITEM.text_fields <= set(items.NORMALISERS)
    for keap_object, model in ((CATALOGUE["companies"].keap, CompanyRequest), (CATALOGUE["contacts"].keap, ContactRequest),
                               (CATALOGUE["products"].keap, ProductFields)):
        assert keap_object.text_properties <= keap_object.properties
        assert all(model.model_fields[name].annotation == (str | None) for name in keap_object.text_properties), keap_object.name


def test_an_added_rule_on_free_text_fields_of_both_sides_is_accepted() -> None:
    flows = build_flows("spec", {"contacts": {"add": [{"name": "title", "invoiced": "attention_to", "keap": "job_title"}]},
                                 "products": {"drop": ["description"],
                                              "add": [{"name": "html", "invoiced": "description", "keap": "top_html"}]}})
    assert [rule.name for rule in flows["contacts"].rules] == ["title"]
    assert "top_html" in flows["products"].keap_fields
