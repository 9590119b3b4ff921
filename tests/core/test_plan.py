"""Planning a pair: examples of each rule, then a model of two systems edited at random."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoiced_keap import mapping
from invoiced_keap.engine.plan import (
    LinkShadows,
    Policy,
    disagreements,
    plan_create,
    plan_pair,
    shadow_of,
)
from invoiced_keap.flows import SIDES, Flow, build_flows

FLOWS = build_flows()
COMPANIES, CONTACTS, PRODUCTS = FLOWS["companies"], FLOWS["contacts"], FLOWS["products"]
LONG_NAME = "Bartholomew Maximilian Fitzgerald-Worthington the Third of Greater Upper Sussex"


def keap_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def linked(flow: Flow, invoiced: dict[str, Any], keap: dict[str, Any]) -> LinkShadows:
    return LinkShadows(shadow_of(flow, "invoiced", invoiced), shadow_of(flow, "keap", keap))


ACME = {"id": 1, "name": "Acme", "email": "billing@acme.example", "country": "US", "state": "AZ", "updated_at": 100}
ACME_KEAP = {"id": "7", "company_name": "Acme", "email_address": {"email": "billing@acme.example", "field": "EMAIL1"},
             "address": {"region": "Arizona", "country_code": "USA"}, "update_time": keap_time(100)}


def test_a_pair_in_sync_plans_nothing_even_when_spelled_differently() -> None:
    plan = plan_pair(COMPANIES, None, ACME, ACME_KEAP)
    assert (plan.invoiced_writes, plan.keap_writes, plan.conflicts) == ({}, {}, ())
    assert plan.shadows == linked(COMPANIES, ACME, ACME_KEAP)


def test_an_edit_on_one_side_is_written_to_the_other_only() -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    edited = {**ACME_KEAP, "email_address": {"email": "new@acme.example", "field": "EMAIL1", "is_opt_in": True}}
    plan = plan_pair(COMPANIES, shadows, ACME, edited)
    assert plan.invoiced_writes == {"email": "new@acme.example"}
    assert plan.keap_writes == {} and plan.keap_update_mask == []
    assert plan.shadows.invoiced.values["email"] == "new@acme.example"


def test_keap_writes_carry_only_changed_top_level_fields_and_their_mask() -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    plan = plan_pair(COMPANIES, shadows, {**ACME, "name": "Acme Corp", "city": "Phoenix"}, ACME_KEAP)
    assert plan.keap_update_mask == ["address", "company_name"]
    assert plan.keap_writes["company_name"] == "Acme Corp"
    assert plan.keap_writes["address"]["locality"] == "Phoenix"
    assert plan.invoiced_writes == {}


@pytest.mark.parametrize(("policy", "winner", "reason"), [
    (Policy(), "keap", "newest: keap was updated later"),
    (Policy(winner="invoiced"), "invoiced", "policy: invoiced wins"),
    (Policy(groups={"name": "invoiced"}), "invoiced", "policy: invoiced wins"),
])
def test_both_sides_edited_is_a_conflict_settled_by_policy(policy: Policy, winner: str, reason: str) -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    invoiced = {**ACME, "name": "Acme Invoiced", "updated_at": 200}
    keap = {**ACME_KEAP, "company_name": "Acme Keap", "update_time": keap_time(300)}
    plan = plan_pair(COMPANIES, shadows, invoiced, keap, policy)
    (conflict,) = plan.conflicts
    assert (conflict.group, conflict.invoiced_value, conflict.keap_value) == ("name", "Acme Invoiced", "Acme Keap")
    assert (conflict.winner, conflict.reason) == (winner, reason)
    loser_writes = plan.writes("invoiced" if winner == "keap" else "keap")
    assert list(loser_writes.values()) == [f"Acme {winner.capitalize()}"]
    assert plan.writes(winner) == {}


def test_a_tie_goes_to_the_priority_side() -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    invoiced = {**ACME, "name": "Acme I", "updated_at": 300}
    keap = {**ACME_KEAP, "company_name": "Acme K", "update_time": keap_time(300)}
    assert plan_pair(COMPANIES, shadows, invoiced, keap).conflicts[0].winner == "invoiced"
    assert plan_pair(COMPANIES, shadows, invoiced, keap, Policy(priority="keap")).conflicts[0].winner == "keap"


@given(st.integers(0, 2_000_000_000), st.integers(0, 999), st.sampled_from(["invoiced", "keap"]))
def test_newest_compares_whole_seconds_so_the_same_second_is_a_tie(second: int, keap_millis: int, priority: str) -> None:
    """Invoiced's `updated_at` has whole seconds, Keap's `update_time` milliseconds: an Invoiced edit in the same
    second as a Keap one may be the later, so neither is taken as newer and `priority` settles it."""
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    invoiced = {**ACME, "name": "Acme I", "updated_at": second}
    keap_at = datetime.fromtimestamp(second, timezone.utc).replace(microsecond=keap_millis * 1000).isoformat()
    keap = {**ACME_KEAP, "company_name": "Acme K", "update_time": keap_at}
    [conflict] = plan_pair(COMPANIES, shadows, invoiced, keap, Policy(priority=priority)).conflicts  # type: ignore[arg-type]
    assert conflict.winner == priority
    [later] = plan_pair(COMPANIES, shadows, {**invoiced, "updated_at": second + 1}, keap, Policy(priority="keap")).conflicts
    assert later.winner == "invoiced"


def test_first_link_merges_empty_never_wins_and_invoiced_wins_otherwise() -> None:
    invoiced = {"id": 2, "name": "Globex Ltd", "country": "GB", "updated_at": 100}
    keap = {"id": "8", "company_name": "GLOBEX LTD.", "update_time": keap_time(900),
            "email_address": {"email": "hello@globex.example", "field": "EMAIL1"},
            "address": {"line1": "1 High St", "locality": "London", "country_code": "GBR"}}
    plan = plan_pair(COMPANIES, None, invoiced, keap)
    assert plan.invoiced_writes == {"email": "hello@globex.example", "address1": "1 High St", "city": "London"}
    assert plan.keap_writes == {"company_name": "Globex Ltd"}
    assert [(c.group, c.winner) for c in plan.conflicts] == [("name", "invoiced")]


def test_a_deliberate_clear_propagates_once_linked() -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    plan = plan_pair(COMPANIES, shadows, {**ACME, "email": None}, ACME_KEAP)
    assert plan.keap_writes == {"email_address": None}


def test_a_cleared_required_name_is_reported_not_written() -> None:
    shadows = linked(COMPANIES, ACME, ACME_KEAP)
    plan = plan_pair(COMPANIES, shadows, ACME, {**ACME_KEAP, "company_name": ""})
    assert plan.invoiced_writes == {} and plan.keap_writes == {}
    assert [(note.side, note.rule, note.source, note.sent) for note in plan.lossy] == [("invoiced", "name", None, "Acme")]
    assert "cleared in keap" in plan.lossy[0].reason
    assert plan_pair(COMPANIES, plan.shadows, ACME, {**ACME_KEAP, "company_name": ""}).lossy == ()


def test_contact_slots_and_truncation() -> None:
    person = {"id": 3, "name": LONG_NAME, "email": "bart@example.co.uk", "country": "GB", "updated_at": 100}
    keap = {"id": "9", "given_name": "Bart", "email_addresses": [{"email": "b@home.example", "field": "EMAIL2"}]}
    plan = plan_pair(CONTACTS, linked(CONTACTS, {"id": 3, "name": "Bart"}, keap), person, keap)
    assert len(plan.keap_writes["given_name"]) == 40 and plan.keap_writes["family_name"] == "Sussex"
    assert plan.keap_writes["email_addresses"] == [{"email": "b@home.example", "field": "EMAIL2"},
                                                  {"email": "bart@example.co.uk", "field": "EMAIL1"}]
    assert [(note.side, note.field, note.rule) for note in plan.lossy] == [("keap", "given_name", "name")]
    after = {**keap, **plan.keap_writes}
    assert plan_pair(CONTACTS, plan.shadows, person, after).write_count == 0
    assert disagreements(CONTACTS, person, after) == []


def test_a_rule_added_by_configuration_is_merged_without_touching_the_others() -> None:
    with_website = build_flows(overrides={"companies": {"add": [{"name": "website", "invoiced": "attention_to",
                                                                   "keap": "website"}]}})["companies"]
    old_shadows = linked(COMPANIES, ACME, ACME_KEAP)
    plan = plan_pair(with_website, old_shadows, ACME, {**ACME_KEAP, "website": "acme.example"})
    assert plan.invoiced_writes == {"attention_to": "acme.example"} and plan.keap_writes == {}


def test_create_a_product_in_keap() -> None:
    ramen = {"id": "ramen", "name": "Ramen bowl", "description": "ラーメン丼", "unit_cost": 12, "currency": "eur"}
    created = plan_create(build_flows(keap_currency="EUR")["products"], "invoiced", ramen)
    assert created.target == "keap"
    assert created.fields == {"name": "Ramen bowl", "description": "ラーメン丼", "sku": "ramen", "price": 1200,
                              "short_description": "Ramen bowl"}
    assert created.shadows.keap.values == created.shadows.invoiced.values


def test_create_an_invoiced_twin_of_a_keap_record() -> None:
    product = {"id": "5", "name": "Gift card", "price": {"amount": 2500, "currency_code": "USD"}}
    assert plan_create(PRODUCTS, "keap", product).fields == {"name": "Gift card", "unit_cost": 25.0, "currency": "usd"}
    contact = {"id": "6", "given_name": "Peter", "family_name": "Parker",
               "email_addresses": [{"email": "peter@example.com", "field": "EMAIL1"}]}
    assert plan_create(CONTACTS, "keap", contact).fields == {"name": "Peter Parker", "email": "peter@example.com",
                                                             "type": "person"}


def test_create_a_contact_drops_empty_fields() -> None:
    body = plan_create(CONTACTS, "invoiced", {"id": 4, "name": "Marcus Lee", "city": "Austin", "state": "TX",
                                              "country": "US"}).fields
    assert body == {"given_name": "Marcus", "family_name": "Lee",
                    "addresses": [{"locality": "Austin", "region": "Texas", "region_code": "US-TX",
                                   "country_code": "USA", "field": "BILLING"}]}


# --- the model: two systems, random edits on both, random sync points ---------------------------------

INVOICED_EDITS: dict[str, dict[str, list[Any]]] = {
    "customer": {
        "name": ["Jane Cooper", "Dr. Anne-Marie O'Neil Jr.", LONG_NAME, "Acme"],
        "email": [None, "a@x.example", "B@y.example"],
        "phone": [None, "+1 555 0100"],
        "address1": [None, "1 Main St", "x" * 80],
        "city": [None, "Phoenix"],
        "state": [None, "AZ", "Arizona", "ON"],
        "postal_code": [None, "85001"],
        "country": ["US", "CA"],
    },
    "item": {"name": ["Widget", "Gadget", LONG_NAME], "description": [None, "Blue", "Red"]},
}
INVOICED_EDITS["contact"] = {  # a company customer's person: its customer's Keap company is fixed for its life
    **INVOICED_EDITS["customer"],
    "title": [None, "CFO", "Accounts payable"], "keap_company_id": ["5"],
}

KEAP_EDITS: dict[str, dict[tuple[str, ...], list[Any]]] = {
    "company": {
        ("company_name",): [None, "Acme", "Initech"],
        ("email_address", "email"): [None, "k@x.example"],
        ("phone_number", "number"): [None, "+44 20 7946 0000"],
        ("address", "line1"): [None, "9 Elm St"],
        ("address", "locality"): [None, "Tucson"],
        ("address", "region"): [None, "AZ", "Arizona", "Texas"],
        ("address", "country_code"): ["USA", "CAN"],
    },
    "contact": {
        ("given_name",): [None, "Jane", "Mary Ann"],
        ("family_name",): [None, "Cooper", "van Gogh"],
        ("email_addresses", "EMAIL1", "email"): [None, "k@x.example"],
        ("email_addresses", "EMAIL2", "email"): [None, "other@x.example"],
        ("phone_numbers", "PHONE1", "number"): [None, "+44 20 7946 0000"],
        ("addresses", "BILLING", "region"): [None, "AZ", "Arizona"],
        ("addresses", "BILLING", "country_code"): ["USA", "CAN"],
        ("addresses", "SHIPPING", "line1"): [None, "Dock 4"],
        ("job_title",): [None, "CFO", "Owner"],
        ("company",): [None, {"id": "5"}, {"id": "7"}],  # a Keap user detaches or moves a company's person
    },
    "product": {("name",): ["Widget", "Thing"], ("description",): [None, "Green"]},
}


def keap_set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """A user's edit in Keap's UI: a top-level field, a key of a sub-object, or a key of an array slot."""
    if len(path) == 1:
        record[path[0]] = value
    elif len(path) == 2:
        record[path[0]] = {**(record.get(path[0]) or {}), path[1]: value}
    else:
        key, slot, sub = path
        entries = list(record.get(key) or [])
        entry = next((e for e in entries if e["field"] == slot), {"field": slot})
        record[key] = [e for e in entries if e["field"] != slot] + [{**entry, sub: value}]


def keap_stores(record: dict[str, Any]) -> None:
    """What Keap does to what it is sent: it spells a US region out and keeps no `region_code`; a region that is
    no subdivision of the country it never stores ("Region is invalid")."""
    for address in [record.get("address"), *(record.get("addresses") or [])]:
        if address:
            address.pop("region_code", None)
            if address.get("country_code") == "USA" and address.get("region") in ("AZ", "US-AZ"):
                address["region"] = "Arizona"
            alpha2 = mapping.country_alpha2(address.get("country_code"))
            if address.get("region") and not (mapping.region_key(address["region"], alpha2) or "").startswith(f"{alpha2}-"):
                address["region"] = None


class Systems:
    """One Invoiced record and one Keap record, a clock, and the link's shadows."""

    def __init__(self, flow: Flow, policy: Policy) -> None:
        self.flow, self.policy, self.clock = flow, policy, 1000
        self.invoiced: dict[str, Any] = {"id": "i1", "name": "Acme", "currency": "usd", "updated_at": self.clock}
        self.keap: dict[str, Any] = {"id": "k1", "update_time": keap_time(self.clock)}
        self.shadows: LinkShadows | None = None
        self.edited: set[str] = set()

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def edit_invoiced(self, field: str, value: Any) -> None:
        self.invoiced.update({field: value, "updated_at": self.tick()})
        self.edited.add("invoiced")

    def edit_keap(self, path: tuple[str, ...], value: Any) -> None:
        keap_set(self.keap, path, value)
        keap_stores(self.keap)
        self.keap["update_time"] = keap_time(self.tick())
        self.edited.add("keap")

    def held(self, side: str) -> dict[tuple[str, str], Any]:
        """The parts (`FieldRule.parts`) that hold a value on `side`."""
        record = self.invoiced if side == "invoiced" else self.keap
        return {(rule.name, part): value for rule in self.flow.rules
                for part, value in rule.parts(rule.value(side, record)).items() if value is not None}

    def sync(self) -> None:
        plan = plan_pair(self.flow, self.shadows, self.invoiced, self.keap, self.policy)
        only = next(iter(self.edited)) if self.shadows is not None and len(self.edited) == 1 else None
        held = self.held(only) if only else {}
        if plan.invoiced_writes:
            self.invoiced.update({**plan.invoiced_writes, "updated_at": self.tick()})
        if plan.keap_writes:
            self.keap.update(plan.keap_writes)
            keap_stores(self.keap)
            self.keap["update_time"] = keap_time(self.tick())
        self.shadows, self.edited = plan.shadows, set()
        if only:  # the side edited alone is written only where it held nothing: a region it could not hold before
            now = self.held(only)
            assert {part: now.get(part) for part in held} == held, f"wrote back to {only}, the only side edited"

        again = plan_pair(self.flow, self.shadows, self.invoiced, self.keap, self.policy)
        assert again.write_count == 0 and again.conflicts == (), "a synced pair is not at rest"
        assert set(disagreements(self.flow, self.invoiced, self.keap)) <= self.uncleared_required()

    def uncleared_required(self) -> set[str]:
        """Groups left apart on purpose (reported, not written): required ones cleared on one side, and one-way ones
        (a company's person moved or detached in Keap)."""
        return {rule.name for rule in self.flow.rules
                if rule.one_way or (rule.required and any(rule.blank(rule.value(side, record))
                                                          for side, record in (("invoiced", self.invoiced), ("keap", self.keap))))}


def edits(flow: Flow) -> st.SearchStrategy[tuple[str, Any, Any]]:
    invoiced_edits, keap_edits = INVOICED_EDITS[flow.invoiced.name], KEAP_EDITS[flow.keap.hook_object]
    return st.one_of(
        st.sampled_from(sorted(invoiced_edits)).flatmap(
            lambda f: st.sampled_from(invoiced_edits[f]).map(lambda v: ("invoiced", f, v))),
        st.sampled_from(sorted(keap_edits)).flatmap(
            lambda p: st.sampled_from(keap_edits[p]).map(lambda v: ("keap", p, v))),
    )


@st.composite
def histories(draw: st.DrawFn, flow: Flow) -> list[tuple[str, Any, Any]]:
    """Both records filled at random (the first sync links them), then edits with sync points between."""
    invoiced_start = [("invoiced", f, draw(st.sampled_from(values)))
                      for f, values in INVOICED_EDITS[flow.invoiced.name].items()]
    keap_start = [("keap", p, draw(st.sampled_from(values))) for p, values in KEAP_EDITS[flow.keap.hook_object].items()]
    later = draw(st.lists(st.one_of(st.just(("sync", None, None)), edits(flow)), max_size=25))
    return [*invoiced_start, *keap_start, *later]


policies = st.builds(Policy, winner=st.sampled_from(["newest", "invoiced", "keap"]),
                     priority=st.sampled_from(["invoiced", "keap"]))


@pytest.mark.parametrize("flow_name", ["companies", "contacts", "products", "company_contacts"])
@settings(max_examples=150, deadline=None)
@given(data=st.data(), policy=policies)
def test_random_edits_converge_without_echoes(flow_name: str, data: st.DataObject, policy: Policy) -> None:
    flow = FLOWS[flow_name]
    systems = Systems(flow, policy)
    for action, target, value in data.draw(histories(flow)):
        if action == "invoiced":
            systems.edit_invoiced(target, value)
        elif action == "keap":
            systems.edit_keap(target, value)
        else:
            systems.sync()
    systems.sync()
    slots_untouched = [e for e in systems.keap.get("email_addresses") or [] if e["field"] == "EMAIL2"]
    assert all(entry.get("email") in (None, "other@x.example") for entry in slots_untouched)
