"""No silent data change, over HTTP: what Keap cannot hold is carried with a note and never flows back; one bad field
does not keep a record out; verify tells lossy, pending and drift apart; a dismissed failure stops counting."""

from __future__ import annotations

from invoiced_keap import console
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.state.views import RecordRef, record_history, status_view
from invoiced_keap.verify import FlowCheck, check_flow, read_listings, repair, stored
from tests.engine.conftest import FAST_RETRIES, World
from tests.support import API_KEY

GIVEN = "Alexandrina Maximiliana Theodora Wilhelmina"  # 43 characters: Keap holds 40


def customer(world: World, customer_id: int) -> dict:
    return world.invoiced.customers[customer_id]


async def verify(world: World, flow: str) -> FlowCheck:
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        listings = await read_listings(invoiced, keap, [CATALOGUE[flow]])
    with listings:
        return check_flow(CATALOGUE[flow], listings.invoiced_records(CATALOGUE[flow]), listings.keap[flow], stored(world.store, flow))


async def test_a_cut_given_name_is_noted_and_never_written_back_after_a_family_name_edit(world: World, capsys) -> None:
    [person_id] = world.invoiced.seed({"customers": [{"name": f"{GIVEN} Smith", "type": "person",
                                                       "email": "queen@example.com"}]})["customers"]
    first = await world.sync()
    keap_id = world.link_of("contacts", person_id)
    assert world.keap_record("contacts", keap_id)["given_name"] == GIVEN[:40]

    console.print_run_report(first, show_plan=False)  # what `sync` prints
    assert f"lossy    keap:{keap_id}" in capsys.readouterr().out
    history = record_history(world.store, RecordRef("invoiced", "customer", str(person_id)))
    assert [(n.side, n.field, n.source_value, n.sent_value) for n in history.lossy] == [
        ("keap", "given_name", GIVEN, GIVEN[:40])]
    check = await verify(world, "contacts")
    assert check.agrees and [(d.rule, d.invoiced_value) for d in check.lossy] == [("name", f"{GIVEN} Smith")]
    assert status_view(world.store, ["contacts"]).flows[0].lossy_carries == 1

    world.keap_edit("contacts", keap_id, {"family_name": "Jones"})
    await world.sync()
    assert customer(world, person_id)["name"] == f"{GIVEN} Jones"  # the given name kept from Invoiced, not the cut
    assert world.keap_record("contacts", keap_id)["given_name"] == GIVEN[:40]

    world.keap_edit("contacts", keap_id, {"given_name": "Alexandra"})  # the given name itself, edited in Keap
    await world.sync()
    assert customer(world, person_id)["name"] == "Alexandra Jones"
    assert record_history(world.store, RecordRef("invoiced", "customer", str(person_id))).lossy == []  # carried exactly now: the note is gone
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}


async def test_a_foreign_currency_item_is_never_priced_as_dollars(world: World) -> None:
    world.invoiced.seed({"items": [
        {"id": "ramen", "name": "Ramen", "unit_cost": 1200, "currency": "jpy"},
        {"id": "pen", "name": "Pen", "unit_cost": 12.5, "currency": "usd"}]})["items"]

    report = await world.sync(SyncOptions(keap_currency="USD"), flows=["products"])

    prices = {p["sku"]: world.keap_record("products", p["id"])["price"]["amount"] for p in world.keap_records("products")}
    assert prices == {"ramen": 0, "pen": 1250}
    [note] = [a for a in report.flows["products"].actions if a.verb == "lossy"]
    assert note.fields["source"] == "1200 JPY" and "USD" in note.fields["reason"] and "JPY" in note.fields["reason"]
    assert report.exit_code == 0


async def test_an_address_with_an_invalid_region_still_creates_the_contact(world: World) -> None:
    [person_id] = world.invoiced.seed({"customers": [{
        "name": "Dana Scully", "type": "person", "email": "dana@example.com", "address1": "1 Lake Shore Dr",
        "city": "Chicago", "state": "Cook County", "country": "US"}]})["customers"]

    report = await world.sync()

    twin = world.keap_record("contacts", world.link_of("contacts", person_id))
    assert (twin["given_name"], twin["email_addresses"][0]["email"]) == ("Dana", "dana@example.com")
    [billing] = twin["addresses"]
    assert billing["locality"] == "Chicago" and billing.get("region") is None
    assert [(n.field, n.source_value) for n in world.store.lossy_carries("contacts")] == [("addresses[BILLING].region", "Cook County")]
    assert report.exit_code == 0 and customer(world, person_id)["state"] == "Cook County"  # Invoiced keeps its own
    world.keap_edit("contacts", twin["id"], {"given_name": "Dana K."})
    await world.sync()
    assert customer(world, person_id)["state"] == "Cook County" and customer(world, person_id)["name"] == "Dana K. Scully"


async def test_verify_repair_after_a_keap_edit_keeps_the_keap_edit_on_both_sides(world: World) -> None:
    [company_id] = world.invoiced.seed({"customers": [{"name": "Acme", "type": "company"}]})["customers"]
    await world.sync()
    keap_id = world.link_of("companies", company_id)
    world.keap_edit("companies", keap_id, {"company_name": "Acme Corporation"})

    check = await verify(world, "companies")
    assert [(d.rule, d.keap_value) for d in check.pending] == [("name", "Acme Corporation")] and check.drifted == []
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        await repair(Syncer(world.store, invoiced, keap), [check])

    assert customer(world, company_id)["name"] == "Acme Corporation"
    assert world.keap_record("companies", keap_id)["company_name"] == "Acme Corporation"
    assert (await verify(world, "companies")).agrees


async def test_a_dismissed_failure_stops_counting_until_its_source_changes(world: World) -> None:
    [walk_in] = world.invoiced.seed({"customers": [{"name": "Walk In", "type": "person"}]})["customers"]
    planned = await world.sync(dry_run=True)
    assert [a.verb for a in planned.flows["contacts"].actions] == ["refuse"]  # flagged before anything is sent
    assert (await world.sync()).exit_code == 2
    [failure] = world.store.failures("contacts")

    world.store.dismiss_failure(failure.id, "a walk-in, never in the CRM")
    world.store.retry_failures_now()
    world.reset_stats()
    again = await world.syncer_call("retry")
    assert again.exit_code == 0 and world.store.failures("contacts")[0].attempts == 1 and world.writes() == {}
    assert status_view(world.store, ["contacts"]).needs_attention is False

    world.store.undismiss_failure(failure.id)
    assert (await world.sync()).exit_code == 2
    world.store.dismiss_failure(failure.id)
    world.invoiced.update_customer(walk_in, {"phone": "+1 555 0100"})  # the source changes: synced, resolved
    assert (await world.sync()).exit_code == 0
    assert world.store.failures("contacts") == [] and world.link_of("contacts", walk_in)


async def test_a_name_conflict_never_writes_a_cut_part_over_the_part_nobody_edited(world: World) -> None:
    family = "Wolfeschlegelsteinhausenbergerdorff-Smithson"  # 45 characters: Keap holds 40
    [person_id] = world.invoiced.seed({"customers": [{
        "name": f"Bartholomew-Maximilian-Christopher-Alexander {family}", "type": "person",
        "email": "barty@example.com"}]})["customers"]
    await world.sync()
    keap_id = world.link_of("contacts", person_id)
    assert world.keap_record("contacts", keap_id)["family_name"] == family[:40]

    world.invoiced.update_customer(person_id, {"name": f"Barty {family}"})
    world.clock.advance(5)
    world.keap_edit("contacts", keap_id, {"given_name": "Bartholomew"})  # later: Keap wins the given name
    report = await world.sync()

    assert [a.fields["winner"] for a in report.flows["contacts"].actions if a.verb == "conflict"] == ["keap"]
    assert customer(world, person_id)["name"] == f"Bartholomew {family}"  # the family name kept whole
    assert world.keap_record("contacts", keap_id)["family_name"] == family[:40]
    assert [(n.side, n.field) for n in record_history(world.store, RecordRef("invoiced", "customer", str(person_id))).lossy] == [("keap", "family_name")]


async def test_a_value_invoiced_holds_cut_is_lossy_in_verify_and_repair_never_writes_it_back(world: World) -> None:
    given = " ".join(["Alexandrina"] * 19) + " Maximiliana"  # 239 characters: Keap holds 40, Invoiced the whole
    family = "Fitzgerald-Montgomery-Ashworth-Smythe"
    [person_id] = world.invoiced.seed({"customers": [{"name": f"{given} Smith", "type": "person",
                                                       "email": "long@example.com"}]})["customers"]
    await world.sync()
    keap_id = world.link_of("contacts", person_id)
    world.keap_edit("contacts", keap_id, {"family_name": family})
    await world.sync()
    assert customer(world, person_id)["name"] == f"{given} {family}"[:255]  # Invoiced's 255: the family name cut
    assert ("invoiced", "name") in {(n.side, n.field) for n in record_history(world.store, RecordRef("invoiced", "customer", str(person_id))).lossy}

    check = await verify(world, "contacts")
    assert check.agrees and check.drifted == [] and check.pending == []
    assert [d.rule for d in check.lossy] == ["name"] and check.lossy[0].notes
    assert (check.agreeing["name"], check.lossy_by_rule["name"]) == (0, 1)  # lossy is not counted as agreeing

    options = SyncOptions(per_flow={"contacts": FlowOptions(conflicts="invoiced")})
    world.reset_stats()
    await world.syncer_call("sync_ids", options, flow="contacts", invoiced_ids=[str(person_id)], keap_ids=[keap_id], repair=True)
    assert world.writes() == {}
    assert world.keap_record("contacts", keap_id)["family_name"] == family


async def test_verify_lists_the_price_notes_of_products(world: World) -> None:
    world.invoiced.seed({"items": [{"id": "ramen", "name": "Ramen", "unit_cost": 1200, "currency": "jpy"},
                                   {"id": "pen", "name": "Pen", "unit_cost": 12.5, "currency": "usd"}]})
    await world.sync(flows=["products"])

    check = await verify(world, "products")

    assert check.agrees
    assert [(d.invoiced_id, d.rule, d.invoiced_value, d.keap_value) for d in check.lossy] == [("ramen", "price", "1200 JPY", 0)]
    assert "JPY" in check.lossy[0].notes[0] and check.agreeing == {"name": 2, "description": 2}


async def test_verify_lists_a_dismissed_failure_as_dismissed_and_does_not_count_it(world: World) -> None:
    [walk_in] = world.invoiced.seed({"customers": [{"name": "Walk In", "type": "person"}]})["customers"]
    await world.sync()
    assert (await verify(world, "contacts")).without_twin == [str(walk_in)]
    [failure] = world.store.failures("contacts")
    world.store.dismiss_failure(failure.id, "a walk-in")

    check = await verify(world, "contacts")

    assert check.agrees and check.without_twin == [] and check.dismissed == {str(walk_in): "a walk-in"}


async def test_a_keap_street_added_to_an_address_keap_never_held_keeps_the_invoiced_region(world: World) -> None:
    """Found by break-it: the address was left out (no street), a Keap user then typed one with a country but no
    region; the region Keap never held was taken for a cleared one and wiped in Invoiced."""
    [company_id, person_id] = world.invoiced.seed({"customers": [
        {"name": "Arizona NoStreet", "type": "company", "state": "Arizona", "country": "US"},
        {"name": "Olivia Ont", "type": "person", "email": "olivia@example.com", "state": "Ontario", "country": "CA"}]})["customers"]
    await world.sync()
    company_twin, person_twin = world.link_of("companies", company_id), world.link_of("contacts", person_id)

    world.keap_edit("companies", company_twin, {"address": {"line1": "5 Main", "locality": "Tempe", "country_code": "USA"}})
    world.keap_edit("contacts", person_twin, {"addresses": [
        {"field": "BILLING", "line1": "1 Bay St", "locality": "Toronto", "country_code": "CAN"}]})
    await world.sync()

    company, person = customer(world, company_id), customer(world, person_id)
    assert (company["address1"], company["city"], company["state"], company["country"]) == ("5 Main", "Tempe", "Arizona", "US")
    assert (person["address1"], person["city"], person["state"], person["country"]) == ("1 Bay St", "Toronto", "Ontario", "CA")
    assert world.keap_record("companies", company_twin)["address"].get("region") == "Arizona"  # the merged address, whole
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}
