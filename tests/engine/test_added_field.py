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


def keap_company(world: World, name: str) -> dict:
    return next(c for c in world.keap_records("companies") if c["company_name"] == name)


async def test_a_rule_added_after_pairs_are_linked_settles_every_pair_as_a_first_link_would(world: World) -> None:
    """Break-it B, finding 3: the pass after the rule is added reads the pairs their shadows know nothing of (once)
    and merges the new field as a first link does: an empty value never wins; two values: the priority's, recorded.
    Before, nothing was read and every such pair stayed apart ('drift'); a pair read for another edit was merged
    against its stored record, which held no value of the new field: Keap's notes went over Invoiced's."""
    world.invoiced.seed({"customers": [
        {"name": "Inv Notes", "type": "company", "notes": "invoiced notes"},
        {"name": "Keap Notes", "type": "company"},
        {"name": "Both Notes", "type": "company", "notes": "invoiced both"},
        {"name": "Same Notes", "type": "company", "notes": "same"},
        {"name": "No Notes", "type": "company"},
    ]})
    assert (await world.sync()).exit_code == 0
    assert (await world.sync()).exit_code == 0  # the id stamps read back
    for name, notes in (("Keap Notes", "keap notes"), ("Both Notes", "keap both"), ("Same Notes", "same")):
        world.keap_edit("companies", keap_company(world, name)["id"], {"notes": notes})
    assert (await world.sync()).exit_code == 0  # read while no rule maps notes: nothing to carry
    both = keap_company(world, "Both Notes")["id"]
    world.keap_edit("companies", both, {"company_name": "Both Notes Co"})  # read by the next pass for its name

    world.reset_stats()
    report = await world.sync(OPTIONS)

    assert report.exit_code == 0
    assert keap_company(world, "Inv Notes").get("notes") == "invoiced notes"
    assert customer(world, "Keap Notes")["notes"] == "keap notes"
    assert customer(world, "Both Notes Co")["notes"] == "invoiced both"  # priority invoiced: a first link's merge
    assert keap_company(world, "Both Notes Co")["notes"] == "invoiced both"
    assert keap_company(world, "No Notes").get("notes") in (None, "") and customer(world, "No Notes")["notes"] is None
    [conflict] = world.store.conflicts("companies")
    assert (conflict.field_group, conflict.invoiced_value, conflict.keap_value, conflict.winner) == (
        "notes", "invoiced both", "keap both", "invoiced") and "merge on link" in conflict.reason
    assert world.writes() == {"PATCH /customers/{id}": 2, "PATCH /crm/rest/v2/companies/{company_id}": 2}
    # a side: the idle reads, one listing of the pairs, the re-read before the writes (`engine.reread`), 2 writes
    assert report.api_calls == {"invoiced": 3 + 1 + 1 + 2, "keap": 3 + 1 + 1 + 2}

    world.reset_stats()
    idle = await world.sync(OPTIONS)
    assert world.writes() == {} and idle.api_calls == {"invoiced": 3, "keap": 3}  # settled: never read again for it


async def test_a_dropped_rule_wipes_nothing_and_added_back_settles_the_pairs_read_meanwhile(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Kept", "type": "company", "notes": "kept"},
                                       {"name": "Edited", "type": "company", "notes": "before"}]})
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert (await world.sync(OPTIONS)).exit_code == 0
    assert [keap_company(world, name)["notes"] for name in ("Kept", "Edited")] == ["kept", "before"]

    world.reset_stats()
    dropped = await world.sync()
    assert world.writes() == {} and dropped.api_calls == {"invoiced": 3, "keap": 3}  # a rule removed reads nothing
    world.keap_edit("companies", keap_company(world, "Edited")["id"], {"notes": "edited while not synced"})
    assert (await world.sync()).exit_code == 0
    assert world.writes() == {}
    assert [customer(world, name)["notes"] for name in ("Kept", "Edited")] == ["kept", "before"]

    world.reset_stats()
    added = await world.sync(OPTIONS)
    assert added.exit_code == 0
    # Invoiced: one GET for the one pair read meanwhile (Keap's side came with the pass's own read); Keap: the re-read
    # before the write, the write
    assert added.api_calls == {"invoiced": 3 + 1, "keap": 3 + 1 + 1}
    # "Edited" was read while the rule was off (its shadow no longer holds notes): merged as on a first link
    assert keap_company(world, "Edited")["notes"] == "before" and customer(world, "Edited")["notes"] == "before"
    [conflict] = world.store.conflicts("companies")
    assert (conflict.field_group, conflict.keap_value, conflict.winner) == ("notes", "edited while not synced", "invoiced")
    # "Kept" was never read meanwhile (its shadow still holds notes): neither read again nor written
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": 1}
    world.reset_stats()
    await world.sync(OPTIONS)
    assert world.writes() == {}


async def test_a_rule_added_to_a_companys_people_reads_them_by_their_customers_and_settles_them(world: World) -> None:
    """A nested flow's records are listed per customer: the pass after the rule is added lists the people of the
    customers whose pairs it knows nothing of, once."""
    dept = SyncOptions(per_flow={"company_contacts": FlowOptions(
        add=({"name": "dept", "invoiced": "department", "keap": "preferred_name"},))})
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    dana = world.invoiced.create_contact(acme["id"], {"name": "Dana Dept", "email": "dana@acme.example",
                                                      "department": "Sales"})
    eve = world.invoiced.create_contact(acme["id"], {"name": "Eve Dept", "email": "eve@acme.example"})
    assert (await world.sync()).exit_code == 0
    assert (await world.sync()).exit_code == 0
    eve_keap = world.link_of("company_contacts", f"{acme['id']}/{eve['id']}")
    world.keap_edit("contacts", eve_keap, {"preferred_name": "Evie"})
    assert (await world.sync()).exit_code == 0

    assert (await world.sync(dept)).exit_code == 0

    dana_keap = world.link_of("company_contacts", f"{acme['id']}/{dana['id']}")
    assert world.keap_record("contacts", dana_keap).get("preferred_name") == "Sales"
    assert world.invoiced.contact(acme["id"], eve["id"])["department"] == "Evie"
    world.reset_stats()
    await world.sync(dept)  # the contact.updated event of our own write: its customer's people listed, nothing written
    assert world.writes() == {}
    idle = await world.sync(dept)
    assert world.writes() == {} and idle.api_calls == {"invoiced": 3, "keap": 3}
