"""`relink` after the state database was lost, over HTTP: edits made while it was lost are carried, not frozen."""

from __future__ import annotations

from pathlib import Path

import pytest

from invoiced_keap import console
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.changes import ParentTwins
from invoiced_keap.engine.options import Breaker, FlowOptions, SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.state import Store
from invoiced_keap.verify import FlowCheck, check_flow, read_listings, repair, stored
from tests.engine.conftest import FAST_RETRIES, World
from tests.support import API_KEY


async def verify(world: World, name: str) -> FlowCheck:
    """`verify`'s check of one flow (a nested flow's records under its linked parents)."""
    flow = CATALOGUE[name]
    parents = {name: ParentTwins.load(world.store, flow.parent)} if flow.parent else {}
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        listings = await read_listings(invoiced, keap, [flow], parents=parents)
    with listings:
        return check_flow(flow, listings.invoiced_records(flow), listings.keap[name], stored(world.store, name))


@pytest.mark.parametrize("priority", ["invoiced", "keap"])
async def test_edits_made_while_the_state_was_lost_reach_the_other_side_after_relink(
        world: World, tmp_path: Path, priority: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An Invoiced rename and a Keap edit, each on a side the other did not touch since the last sync: `newest`
    takes the side updated later, whichever side has priority."""
    options = SyncOptions(per_flow={name: FlowOptions(priority=priority) for name in CATALOGUE})
    ids = world.invoiced.seed({"customers": [
        {"name": "Acme", "type": "company", "email": "ar@acme.example"},
        {"name": "Globex", "type": "company", "email": "ap@globex.example"},
        {"name": "Initech", "type": "company"},
        {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
    ], "items": [{"id": "widget", "name": "Widget", "description": "Blue", "unit_cost": 5, "currency": "usd"}]})["customers"]
    acme, globex, initech, jane = (str(customer_id) for customer_id in ids)
    ann = str(world.invoiced.create_contact(acme, {"name": "Ann Lee", "email": "ann@acme.example"})["id"])
    assert (await world.sync(options)).exit_code == 0
    keap_globex, keap_jane = world.link_of("companies", globex), world.link_of("contacts", jane)
    keap_ann, keap_widget = world.link_of("company_contacts", f"{acme}/{ann}"), world.link_of("products", "widget")
    world.store = Store(f"sqlite:///{tmp_path}/lost.db")  # the state database is lost: a new, empty one
    world.store.migrate()

    world.invoiced.update_customer(acme, {"name": "Acme Renamed"})  # while no state knows the pairs
    world.keap_edit("companies", keap_globex, {"company_name": "Globex Renamed"})
    world.keap_edit("contacts", keap_jane, {"family_name": "Cooper-Smith"})
    world.invoiced.update_contact(acme, ann, {"title": "CFO"})
    world.keap_edit("products", keap_widget, {"description": "Red"})
    world.clock.advance(10)
    relinked = await world.syncer_call("relink", options)
    assert relinked.exit_code == 0, relinked.flows
    assert relinked.flows["companies"].counts["linked"] == 3 and relinked.flows["contacts"].counts["linked"] == 1
    assert [relinked.flows[flow].counts["linked.differing"] for flow in CATALOGUE] == [2, 1, 1, 1]
    console.print_run_report(relinked, show_plan=False)  # what `relink` prints
    printed = capsys.readouterr().out
    assert "linked.differing" in printed and "conflicts" in printed
    await world.sync(options)

    assert world.keap_record("companies", world.link_of("companies", acme))["company_name"] == "Acme Renamed"
    assert world.invoiced.customers[int(globex)]["name"] == "Globex Renamed"
    assert world.invoiced.customers[int(jane)]["name"] == "Jane Cooper-Smith"
    assert world.invoiced.customers[int(initech)]["name"] == "Initech"
    assert world.keap_record("contacts", keap_ann)["job_title"] == "CFO"
    assert world.invoiced.items["widget"]["description"] == "Red"
    assert {(c.field_group, c.winner) for c in world.store.conflicts("companies")} == {("name", "invoiced"), ("name", "keap")}
    for flow in CATALOGUE:
        check = await verify(world, flow)
        assert check.agrees, (check.drifted, check.pending)
    world.reset_stats()
    assert (await world.sync(options)).exit_code == 0
    assert world.writes() == {}


async def test_pairs_that_differ_held_by_the_breaker_stay_linked_as_they_are_and_verify_repair_settles_them(
        world: World, tmp_path: Path) -> None:
    ids = world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(3)]})["customers"]
    await world.sync(flows=["companies"])
    world.store = Store(f"sqlite:///{tmp_path}/lost.db")
    world.store.migrate()
    for customer_id in ids:
        world.invoiced.update_customer(customer_id, {"name": f"Renamed {customer_id}"})
    world.clock.advance(10)
    world.reset_stats()

    held = await world.syncer_call("relink", SyncOptions(breaker=Breaker(max_update_share=0.1, min_updates=1)),
                                   flows=["companies"])

    assert held.exit_code == 1 and held.flows["companies"].counts["linked"] == 3
    assert "3 of the 3 relinked pairs differ" in held.flows["companies"].error
    assert "verify --repair --allow-mass-change" in held.flows["companies"].error
    assert world.writes() == {} and len(world.store.active_link_ids("companies")) == 3
    check = await verify(world, "companies")
    assert len(check.drifted) == 3
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        await repair(Syncer(world.store, invoiced, keap, SyncOptions(allow_mass_change=True)), [check])
    assert sorted(company["company_name"] for company in world.keap_records("companies")) == [
        f"Renamed {customer_id}" for customer_id in sorted(ids)]
