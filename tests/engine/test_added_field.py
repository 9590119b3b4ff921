"""A field rule added by configuration syncs both ways over HTTP and is never wiped by edits of other fields."""

from __future__ import annotations

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.flows import build_flows
from tests.engine.conftest import World

NOTES = {"name": "notes", "invoiced": "notes", "keap": "notes"}
OPTIONS = SyncOptions(per_flow={"companies": FlowOptions(add=(NOTES,))})


def customer(world: World, name: str) -> dict:
    return next(c for c in world.invoiced.customers.values() if c["name"] == name)


async def test_an_added_text_field_round_trips_and_survives_edits_of_other_fields(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company", "notes": "Pays by wire"}]})
    assert (await world.sync(OPTIONS)).exit_code == 0
    acme = customer(world, "Acme")
    keap_id = world.link_of("companies", acme["id"])
    assert world.keap_record("companies", keap_id)["notes"] == "Pays by wire"

    world.keap_edit("companies", keap_id, {"company_name": "Acme Corp"})  # another field, in Keap
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert customer(world, "Acme Corp")["notes"] == "Pays by wire"
    assert world.keap_record("companies", keap_id)["notes"] == "Pays by wire"

    world.keap_edit("companies", keap_id, {"notes": "Pays by card"})  # the added field, in Keap
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert customer(world, "Acme Corp")["notes"] == "Pays by card"

    world.invoiced.update_customer(acme["id"], {"phone": "+1 555 0100"})  # another field, in Invoiced
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert world.keap_record("companies", keap_id)["notes"] == "Pays by card"
    assert customer(world, "Acme Corp")["notes"] == "Pays by card"

    world.invoiced.update_customer(acme["id"], {"notes": "Net 30"})  # the added field, in Invoiced
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert world.keap_record("companies", keap_id)["notes"] == "Net 30"
    world.reset_stats()
    await world.sync(OPTIONS)
    assert world.writes() == {}


def test_every_keap_field_a_rule_or_key_uses_is_read() -> None:
    for profile in ("default", "spec"):
        flows = build_flows(profile, {"companies": {"add": [NOTES, {"name": "site", "invoiced": "attention_to", "keap": "website"}]}})
        for flow in flows.values():
            used = {name for rule in flow.rules for name in rule.keap_fields}
            used |= {name for key in (*flow.match_keys, *flow.adoption_keys) for name in key.keap_fields}
            assert used <= set(flow.keap_fields), flow.name
        assert {"notes", "website", "email_address"} <= set(flows["companies"].keap_fields)  # email: the adoption key


def test_a_rule_naming_a_field_keap_does_not_have_is_refused_when_flows_are_built() -> None:
    try:
        build_flows("default", {"companies": {"add": [{"name": "x", "invoiced": "notes", "keap": "nots"}]}})
    except ValueError as error:
        assert "'nots'" in str(error) and "companies" in str(error)
    else:
        raise AssertionError("an unknown Keap field was accepted")


async def test_an_added_value_longer_than_keap_holds_is_cut_with_a_note_and_the_person_still_goes(world: World) -> None:
    """An added rule takes Keap's limit of its field (the v2 contact request's maxLength), as the catalogue's do."""
    department = "D" * 150
    options = SyncOptions(per_flow={"company_contacts": FlowOptions(
        add=({"name": "dept", "invoiced": "department", "keap": "preferred_name"},))})
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    person = world.invoiced.create_contact(acme["id"], {"name": "Dana Dept", "email": "dana@acme.example",
                                                        "department": department})
    report = await world.sync(options)

    assert report.exit_code == 0
    keap_id = world.link_of("company_contacts", f"{acme['id']}/{person['id']}")
    assert world.keap_record("contacts", keap_id)["preferred_name"] == "D" * 100
    [note] = [note for note in world.store.lossy_carries("company_contacts") if note.field == "preferred_name"]
    assert (note.source_value, note.sent_value) == (department, "D" * 100) and "100 characters" in note.reason

    world.reset_stats()
    await world.sync(options)
    assert world.writes() == {}  # the cut value is never written back over the Invoiced department


def test_drop_never_takes_the_rule_that_makes_the_flow() -> None:
    try:
        build_flows("default", {"company_contacts": {"drop": ["company"]}})
    except ValueError as error:
        assert "flow.company_contacts.drop: 'company' cannot be dropped" in str(error)
    else:
        raise AssertionError("drop = ['company'] was accepted")
    assert "title" not in {rule.name for rule in build_flows("default", {"company_contacts": {"drop": ["title"]}})[
        "company_contacts"].rules}
