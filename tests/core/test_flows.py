"""The flows as data: membership, profiles, configuration overrides and each rule's transforms."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM
from invoiced_keap.flows import CATALOGUE, FieldRule, build_flows, flow_of
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


def test_profiles() -> None:
    assert rule_names("spec") == {"companies": ["name"], "contacts": [], "products": ["name", "description"]}
    assert rule_names("default") == {"companies": ["name", "email", "phone", "address"],
                                     "contacts": ["name", "email", "phone", "address"],
                                     "products": ["name", "description"]}


def test_configuration_adds_and_drops_rules() -> None:
    overrides = {"companies": {"drop": ["phone"], "add": [{"name": "website", "invoiced": "website", "keap": "website"}]},
                 "contacts": {"add": ["email"]}}
    assert rule_names("spec", overrides) == {"companies": ["name", "website"], "contacts": ["email"],
                                             "products": ["name", "description"]}
    website = build_flows("spec", overrides)["companies"].rule("website")
    assert to_keap(website, {"website": " acme.example "}).fields == {"website": "acme.example"}


@pytest.mark.parametrize(("profile", "overrides", "message"), [
    ("fancy", None, "unknown profile"),
    ("default", {"invoices": {}}, "unknown flow"),
    ("default", {"companies": {"add": ["colour"]}}, "has no rule 'colour'"),
    ("default", {"companies": {"add": [{"name": "x", "keap": "x"}]}}, "lacks ['invoiced']"),
    ("default", {"companies": {"add": ["email"]}}, "duplicate rules"),
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
    marks = {flow.mark(stream) for flow in (CATALOGUE["contacts"], people) for stream in ("invoiced", "removals", "keap")}
    assert len(marks) == 6
    assert people.keap == CATALOGUE["contacts"].keap and people.keap_fields == CATALOGUE["contacts"].keap_fields
