"""One rule for an address that is only a country (or region): it is empty on both sides.

Invoiced fills in the account's country on every customer, so a country alone says nothing: a create
or a first link never sends it, and `verify` (`disagreements`) counts it as agreeing with no address.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap.engine.plan import disagreements, plan_create, plan_pair
from invoiced_keap.flows import build_flows

FLOWS = build_flows()
COUNTRIES = st.sampled_from(["US", "GB", "DE", "FR", "CA", None])
REGIONS = st.sampled_from(["AZ", "Bavaria", "", None])


@st.composite
def country_only_customers(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    customer = {"id": 5, "name": "Jane Cooper", "type": kind, "country": draw(COUNTRIES), "updated_at": 100}
    if draw(st.booleans()):
        customer["state"] = draw(REGIONS)
    return customer


@st.composite
def keap_without_street(draw: st.DrawFn, flow: str) -> dict[str, Any]:
    address = draw(st.sampled_from([None, {}, {"country_code": "USA"}, {"country_code": "DEU", "region": "Bavaria"}]))
    if flow == "companies":
        record = {"id": "7", "company_name": "Jane Cooper"}
        if address is not None:
            record["address"] = address
        return record
    record = {"id": "7", "given_name": "Jane", "family_name": "Cooper"}
    if address is not None:
        record["addresses"] = [{"field": "BILLING", **address}]
    return record


@given(data=st.data(), flow=st.sampled_from(["companies", "contacts"]))
def test_a_country_alone_is_never_sent_and_verify_agrees(data: st.DataObject, flow: str) -> None:
    customer = data.draw(country_only_customers("company" if flow == "companies" else "person"))
    keap = data.draw(keap_without_street(flow))
    plan = plan_pair(FLOWS[flow], None, customer, keap)
    assert "address" not in plan.keap_writes and "addresses" not in plan.keap_writes
    assert not {"country", "state"} & set(plan.invoiced_writes)
    assert "address" not in disagreements(FLOWS[flow], customer, keap)
    created = plan_create(FLOWS[flow], "invoiced", customer).fields
    assert "address" not in created and "addresses" not in created


def test_a_street_address_still_counts_against_a_country_alone() -> None:
    customer = {"id": 5, "name": "Acme", "type": "company", "country": "US", "address1": "1 Main St", "updated_at": 100}
    keap = {"id": "7", "company_name": "Acme", "address": {"country_code": "USA"}}
    assert disagreements(FLOWS["companies"], customer, keap) == ["address"]
    assert plan_pair(FLOWS["companies"], None, customer, keap).keap_writes["address"]["line1"] == "1 Main St"
