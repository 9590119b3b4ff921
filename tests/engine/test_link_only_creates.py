"""A link-only profile still creates twins Keap accepts: a create carries what Keap needs (create-only rules)."""

from __future__ import annotations

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import World

SPEC = SyncOptions(profile="spec")


async def test_spec_profile_creates_contacts_with_name_email_and_phone_then_syncs_no_field(world: World) -> None:
    world.invoiced.seed({"customers": [
        {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
        {"name": "Bob Phone", "type": "person", "phone": "+1 555 0199"},
    ]})
    report = await world.sync(SPEC, flows=["contacts"])
    assert report.exit_code == 0, report.flows["contacts"].actions
    jane = next(c for c in world.invoiced.customers.values() if c["name"] == "Jane Cooper")
    keap_jane = world.keap_record("contacts", world.link_of("contacts", jane["id"]))
    assert (keap_jane["given_name"], keap_jane["family_name"]) == ("Jane", "Cooper")
    assert [e["email"] for e in keap_jane["email_addresses"] if e["field"] == "EMAIL1"] == ["jane@example.com"]
    bob = next(c for c in world.invoiced.customers.values() if c["name"] == "Bob Phone")
    keap_bob = world.keap_record("contacts", world.link_of("contacts", bob["id"]))
    assert [p["number"] for p in keap_bob["phone_numbers"] if p["field"] == "PHONE1"] == ["+1 555 0199"]

    world.invoiced.update_customer(jane["id"], {"name": "Jane Doe"})  # link only: the name is create-only
    world.reset_stats()
    assert (await world.sync(SPEC, flows=["contacts"])).exit_code == 0
    assert world.writes() == {}
    assert world.keap_record("contacts", keap_jane["id"])["family_name"] == "Cooper"


async def test_spec_profile_creates_a_company_named_even_when_its_name_rule_is_dropped(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company", "notes": "n"}]})
    options = SyncOptions(profile="spec", per_flow={"companies": FlowOptions(
        drop=("name",), add=({"name": "notes", "invoiced": "notes", "keap": "notes"},))})
    assert (await world.sync(options, flows=["companies"])).exit_code == 0
    acme = next(iter(world.invoiced.customers.values()))
    assert world.keap_record("companies", world.link_of("companies", acme["id"]))["company_name"] == "Acme"
