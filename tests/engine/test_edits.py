"""Linked pairs stay in sync whichever side is edited; a steady state writes nothing; conflicts follow the policy."""

from __future__ import annotations

from collections import Counter

import pytest

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import ONE_OF_EACH, World


async def linked_world(world: World) -> dict[str, str]:
    """One company, one contact (with an EMAIL2 we do not own) and one item, synced and settled."""
    world.invoiced.seed(ONE_OF_EACH)
    await world.sync()
    await world.sync()
    ids = {"company": world.link_of("companies", 1), "contact": world.link_of("contacts", 2), "product": world.link_of("products", "widget")}
    contact = world.keap_record("contacts", ids["contact"])
    world.keap_edit("contacts", ids["contact"], {"email_addresses": [*contact["email_addresses"], {"email": "jane@home.example", "field": "EMAIL2"}]})
    await world.sync()
    world.reset_stats()
    return ids


async def test_edits_on_either_side_reach_the_other_then_nothing_is_written(world: World) -> None:
    ids = await linked_world(world)
    world.invoiced.update_customer(2, {"email": "jane.cooper@example.com", "name": "Jane Q. Cooper"})
    world.keap_edit("companies", ids["company"], {"company_name": "Acme Holdings"})
    world.keap_edit("products", ids["product"], {"description": "Navy blue"})

    report = await world.sync()

    assert world.invoiced.customer(1)["name"] == "Acme Holdings"
    assert world.invoiced.item("widget")["description"] == "Navy blue"
    contact = world.keap_record("contacts", ids["contact"])
    assert (contact["given_name"], contact["family_name"]) == ("Jane Q.", "Cooper")
    assert {e["field"]: e["email"] for e in contact["email_addresses"]} == {
        "EMAIL1": "jane.cooper@example.com", "EMAIL2": "jane@home.example"}  # the slot we do not own is kept
    assert world.writes() == Counter({"PATCH /customers/{id}": 1, "PATCH /items/{id}": 1, "PATCH /crm/rest/v2/contacts/{contact_id}": 1})
    assert report.exit_code == 0
    world.reset_stats()
    await world.sync()
    assert world.writes() == Counter()
    assert [entry.operation for entry in world.store.audit_entries(record_id=ids["contact"], side="keap", limit=1)] == ["update"]


@pytest.mark.parametrize(("winner", "expected"), [("newest", "Acme Keap"), ("invoiced", "Acme Invoiced"), ("keap", "Acme Keap")])
async def test_both_sides_edited_settle_by_policy_and_the_conflict_is_recorded(world: World, winner: str, expected: str) -> None:
    ids = await linked_world(world)
    world.invoiced.update_customer(1, {"name": "Acme Invoiced"})
    world.clock.advance(5)
    world.keap_edit("companies", ids["company"], {"company_name": "Acme Keap"})
    options = SyncOptions(per_flow={"companies": FlowOptions(conflicts=winner)})  # type: ignore[arg-type]

    planned = await world.sync(options, dry_run=True)
    report = await world.sync(options)

    [action] = [a for a in report.flows["companies"].actions if a.verb == "conflict"]
    assert (action.side, action.record_id, action.fields["keap_id"]) == ("invoiced", "1", ids["company"])  # the pair, rightly named
    assert [a.line() for a in planned.flows["companies"].actions] == [a.line() for a in report.flows["companies"].actions]
    assert world.invoiced.customer(1)["name"] == world.keap_record("companies", ids["company"])["company_name"] == expected
    [conflict] = world.store.conflicts("companies")
    assert (conflict.field_group, conflict.invoiced_value, conflict.keap_value) == ("name", "Acme Invoiced", "Acme Keap")
    assert conflict.winner == ("invoiced" if expected == "Acme Invoiced" else "keap")
    world.reset_stats()
    await world.sync(options)
    assert world.writes() == Counter()


async def test_a_person_who_becomes_a_company_moves_from_contacts_to_companies(world: World) -> None:
    ids = await linked_world(world)
    world.invoiced.update_customer(2, {"type": "company", "name": "Cooper Consulting"})

    await world.sync()

    assert "2" not in world.store.active_link_ids("contacts")
    company = world.keap_record("companies", world.link_of("companies", 2))
    assert company["company_name"] == "Cooper Consulting"
    assert world.keap_record("contacts", ids["contact"])["given_name"] == "Jane"  # the old twin is left alone
    assert world.invoiced.customer(2)["metadata"]["keap_company_id"] == company["id"]
